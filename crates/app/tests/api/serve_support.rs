//! Helpers to drive the webhook router over the testkit's in-memory ports
//! (`MemorySegment`, `MemorySource`, `MemoryStateStore`), which keep the ports'
//! documented rules.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use segment_sync::privacy::{Deletions, Regulator};
use segment_sync::serve::{
    install_metrics, router_with_timeout, OidcConfig, ServeDeps, SnsCertHosts, WebhookToken,
};
use segment_sync::service::SyncService;
use segment_sync_domain::UserIdStrategy;
use segment_sync_ports::RegulationType;
pub use segment_sync_testkit::customers::{customer, customer_created, customer_json};
pub use segment_sync_testkit::memory::{
    Gate, MemoryRegulations, MemorySegment, MemorySource, MemoryStateStore, SegmentBehaviour,
};
use segment_sync_testkit::sender_auth::{FakeSnsCertHost, SnsSigner};
pub use segment_sync_testkit::DEADLINE;
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// The token the test apps require.
pub const TOKEN: &str = "test-webhook-token";

/// Logs go to the test output only when `TEST_LOG` is set.
pub fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "debug".into()),
                )
                .with_test_writer()
                .init();
        }
    });
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body ({e}), got {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A webhook router over fresh in-memory ports.
pub struct TestApp {
    /// The router under test.
    pub router: Router,
    /// The Segment it sends to.
    pub segment: Arc<MemorySegment>,
    /// The customers it can read.
    pub source: Arc<MemorySource>,
    /// What it remembers.
    pub state: Arc<MemoryStateStore>,
    /// Customer deletions (not reaching Segment unless made with
    /// [`TestApp::deleting`]).
    pub deletions: Arc<Deletions>,
    /// Segment's Public API, for [`TestApp::deleting`].
    pub regulations: MemoryRegulations,
}

impl TestApp {
    /// Requires [`TOKEN`], identifies by email.
    pub fn new() -> Self {
        Self::with(Some(TOKEN), Duration::from_secs(10))
    }

    /// With this token (or none) and request timeout.
    pub fn with(token: Option<&str>, request_timeout: Duration) -> Self {
        Self::with_deps(token, request_timeout, |_| {})
    }

    /// With this token (or none) and Pub/Sub push tokens of `oidc` accepted.
    pub fn with_oidc(token: Option<&str>, oidc: OidcConfig) -> Self {
        Self::with_deps(token, Duration::from_secs(10), |deps| {
            deps.oidc = Some(oidc);
        })
    }

    /// With `SEGMENT_DELETION` on as `kind`: deletions reach [`TestApp::regulations`]
    /// when [`Deletions::send_queued`] runs.
    pub fn deleting(kind: RegulationType) -> Self {
        let regulations = MemoryRegulations::new();
        let client = Arc::new(regulations.clone());
        let mut app = Self::with_deps(Some(TOKEN), Duration::from_secs(10), |deps| {
            let regulator = Regulator { client, kind };
            deps.deletions = Arc::new(Deletions::new(Arc::clone(&deps.state), Some(regulator)));
        });
        app.regulations = regulations;
        app
    }

    /// With this token (or none) and request timeout, its ports changed by `change`.
    pub fn with_deps(
        token: Option<&str>,
        request_timeout: Duration,
        change: impl FnOnce(&mut ServeDeps),
    ) -> Self {
        init_logs();
        let segment = Arc::new(MemorySegment::new());
        let source = Arc::new(MemorySource::new());
        let state = Arc::new(MemoryStateStore::new());
        let mut deps = deps(&segment, &source, &state, token);
        change(&mut deps);
        let deletions = Arc::clone(&deps.deletions);
        let router = router_with_timeout(deps, install_metrics(), request_timeout);
        Self {
            router,
            segment,
            source,
            state,
            deletions,
            regulations: MemoryRegulations::new(),
        }
    }

    /// Sends a request as is.
    pub async fn request(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        TestResponse { status, body }
    }

    /// Posts a body to the webhook with the right bearer token.
    pub async fn post(&self, body: impl Into<Body>) -> TestResponse {
        self.request(webhook_request(body, Some(TOKEN))).await
    }

    /// Posts a JSON value to the webhook with the right bearer token.
    pub async fn post_json(&self, body: &Value) -> TestResponse {
        self.post(body.to_string()).await
    }

    /// `GET path`, no token.
    pub async fn get(&self, path: &str) -> TestResponse {
        let request = Request::get(path)
            .body(Body::empty())
            .expect("a valid request");
        self.request(request).await
    }
}

/// The ports wired to these in-memory ones.
pub fn deps(
    segment: &Arc<MemorySegment>,
    source: &Arc<MemorySource>,
    state: &Arc<MemoryStateStore>,
    token: Option<&str>,
) -> ServeDeps {
    ServeDeps {
        service: SyncService::new(segment.clone(), state.clone(), UserIdStrategy::Email.into()),
        segment: segment.clone(),
        source: source.clone(),
        state: state.clone(),
        token: token.map(|t| WebhookToken::parse(t).expect("a valid token")),
        deletions: Arc::new(Deletions::new(state.clone(), None)),
        oidc: None,
        // The signing certificate of [`sns`] messages is on a local host.
        sns_cert_hosts: SnsCertHosts::parse(&FakeSnsCertHost::shared().host())
            .expect("a host pattern"),
    }
}

/// `POST /webhooks/commercetools` with an optional bearer token.
pub fn webhook_request(body: impl Into<Body>, bearer: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post("/webhooks/commercetools").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(body.into()).expect("a valid request")
}

/// A Platform-format message of another type about a resource.
pub fn message(message_type: &str, type_id: &str, id: &str) -> Value {
    json!({
        "notificationType": "Message",
        "projectKey": "the-shop",
        "id": "5f1a0b2c-0000-4000-8000-000000000002",
        "version": 1,
        "sequenceNumber": 4,
        "resource": {"typeId": type_id, "id": id},
        "resourceVersion": 4,
        "type": message_type,
        "createdAt": "2024-05-02T10:00:00.000Z",
        "lastModifiedAt": "2024-05-02T10:00:00.000Z"
    })
}

/// A Platform-format change notification (`ResourceCreated`, `ResourceUpdated`, `ResourceDeleted`).
pub fn change(notification_type: &str, type_id: &str, id: &str) -> Value {
    json!({
        "notificationType": notification_type,
        "projectKey": "the-shop",
        "resource": {"typeId": type_id, "id": id},
        "resourceUserProvidedIdentifiers": {},
        "version": 4,
        "oldVersion": 3,
        "modifiedAt": "2024-05-02T10:00:00.000Z"
    })
}

/// The message commercetools sends when a Subscription is created.
pub fn subscription_test_message() -> Value {
    json!({
        "notificationType": "ResourceCreated",
        "projectKey": "the-shop",
        "resource": {"typeId": "subscription", "id": "0c7e8a4b-0000-4000-8000-000000000009"},
        "version": 1,
        "modifiedAt": "2024-05-02T10:00:00.000Z"
    })
}

/// A Google Pub/Sub push envelope around a payload.
pub fn pubsub(payload: &Value) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
    json!({
        "message": {
            "attributes": {"contentType": "application/json"},
            "data": data,
            "messageId": "2070443601311540",
            "publishTime": "2024-05-01T10:00:01.000Z"
        },
        "subscription": "projects/the-shop/subscriptions/segment-sync"
    })
}

/// A CloudEvents JSON event around a payload.
pub fn cloudevent(payload: &Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": "5f1a0b2c-0000-4000-8000-000000000001",
        "type": "com.commercetools.customer.message.CustomerCreated",
        "source": "/the-shop/customers",
        "subject": payload["resource"]["id"],
        "time": "2024-05-01T10:00:00.000Z",
        "dataref": "/the-shop/messages/5f1a0b2c-0000-4000-8000-000000000001",
        "sequence": "1",
        "sequencetype": "Integer",
        "data": payload
    })
}

/// An AWS SNS `Notification` around a payload, signed like AWS with the test
/// key, its certificate on the test binary's shared certificate host.
pub fn sns(payload: &Value) -> Value {
    SnsSigner::default().notification(&payload.to_string(), &FakeSnsCertHost::shared().cert_url())
}

/// The SubscribeURL of [`sns_subscription_confirmation`].
pub const SUBSCRIBE_URL: &str = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:123456789012:commercetools&Token=2336412f37fb687f5d51e6e2425";

/// An AWS SNS `SubscriptionConfirmation`, signed like [`sns`].
pub fn sns_subscription_confirmation() -> Value {
    SnsSigner::default()
        .subscription_confirmation(SUBSCRIBE_URL, &FakeSnsCertHost::shared().cert_url())
}

/// The value of a Prometheus sample line, or 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a numeric sample"))
}
