//! In-memory fakes of the ports and helpers to drive the webhook router.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use segment_sync::serve::{install_metrics, router_with_timeout, ServeDeps, WebhookToken};
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_domain::{
    Customer, DeliveryError, Fingerprint, Identify, Outcome, UserIdStrategy,
};
use segment_sync_ports::{
    CustomerPages, CustomerQuery, CustomerSource, Delivered, PendingOutcome, SegmentClient,
    SegmentError, SourceError, StateError, SyncStateStore,
};
pub use segment_sync_testkit::customers::{customer, customer_created, customer_json};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// The token the test apps require.
pub const TOKEN: &str = "test-webhook-token";
/// How long a test waits for something it expects to happen.
pub const DEADLINE: Duration = Duration::from_secs(10);

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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the fake Segment does with the next identify.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Delivered at once.
    Deliver,
    /// Ends as failed.
    Fail(DeliveryError),
    /// Ends as rejected by Segment.
    Reject(DeliveryError),
    /// `identify` itself returns this error.
    Refuse(SegmentError),
    /// Delivered once the gate is opened (set to `true`).
    Gated(watch::Receiver<bool>),
}

/// A Segment client that records every identify it is given.
pub struct FakeSegment {
    sent: Mutex<Vec<Identify>>,
    count: watch::Sender<usize>,
    behaviour: Mutex<Behaviour>,
    closed: AtomicBool,
}

impl FakeSegment {
    /// A client that delivers everything.
    pub fn new() -> Self {
        Self {
            sent: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            behaviour: Mutex::new(Behaviour::Deliver),
            closed: AtomicBool::new(false),
        }
    }

    /// Changes what happens to the next messages.
    pub fn behave(&self, behaviour: Behaviour) {
        *lock(&self.behaviour) = behaviour;
    }

    /// Every message it was given, in order.
    pub fn sent(&self) -> Vec<Identify> {
        lock(&self.sent).clone()
    }

    /// Every message it was given, parsed.
    pub fn sent_json(&self) -> Vec<Value> {
        self.sent()
            .iter()
            .map(|m| serde_json::from_str(m.json()).expect("identify JSON"))
            .collect()
    }

    /// Whether `close_and_flush` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until it has been given at least `n` messages.
    pub async fn wait_for_sent(&self, n: usize) {
        let mut count = self.count.subscribe();
        tokio::time::timeout(DEADLINE, count.wait_for(|sent| *sent >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} identify calls expected within {DEADLINE:?}"))
            .expect("the sender lives as long as the fake");
    }
}

#[async_trait]
impl SegmentClient for FakeSegment {
    async fn identify(&self, message: Identify) -> Result<PendingOutcome, SegmentError> {
        if self.is_closed() {
            return Err(SegmentError::Closed);
        }
        let behaviour = lock(&self.behaviour).clone();
        if let Behaviour::Refuse(error) = behaviour {
            return Err(error);
        }
        lock(&self.sent).push(message);
        self.count.send_modify(|n| *n += 1);
        Ok(match behaviour {
            Behaviour::Deliver => PendingOutcome::ready(Outcome::Delivered),
            Behaviour::Fail(error) => PendingOutcome::ready(Outcome::Failed(error)),
            Behaviour::Reject(error) => PendingOutcome::ready(Outcome::Rejected(error)),
            Behaviour::Gated(mut gate) => PendingOutcome::new(async move {
                match gate.wait_for(|open| *open).await {
                    Ok(_) => Outcome::Delivered,
                    Err(_) => Outcome::Failed(DeliveryError::ConnectionFailed),
                }
            }),
            Behaviour::Refuse(_) => unreachable!("returned above"),
        })
    }

    async fn flush(&self) -> Result<(), SegmentError> {
        Ok(())
    }

    async fn close_and_flush(&self, _timeout: Duration) -> Result<(), SegmentError> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// A customer source backed by a map.
#[derive(Default)]
pub struct FakeSource {
    customers: Mutex<HashMap<String, Customer>>,
    unavailable: AtomicBool,
    lookups: Mutex<Vec<String>>,
}

impl FakeSource {
    /// Adds or replaces a customer.
    pub fn put(&self, customer: Customer) {
        lock(&self.customers).insert(customer.id.clone(), customer);
    }

    /// Makes every read fail as if commercetools were down.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The ids looked up, in order.
    pub fn lookups(&self) -> Vec<String> {
        lock(&self.lookups).clone()
    }
}

#[async_trait]
impl CustomerSource for FakeSource {
    async fn customers(
        &self,
        _query: CustomerQuery,
    ) -> Result<Box<dyn CustomerPages>, SourceError> {
        Err(SourceError::Protocol(
            "the webhook never walks customers".to_owned(),
        ))
    }

    async fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, SourceError> {
        lock(&self.lookups).push(id.to_owned());
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(SourceError::Unavailable("503 from the fake".to_owned()));
        }
        Ok(lock(&self.customers).get(id).cloned())
    }
}

/// A state store in memory.
#[derive(Default)]
pub struct FakeState {
    fingerprints: Mutex<HashMap<String, Fingerprint>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    broken: AtomicBool,
}

impl FakeState {
    /// Makes every call fail.
    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    /// The fingerprint recorded for a customer.
    pub fn fingerprint(&self, customer_id: &str) -> Option<Fingerprint> {
        lock(&self.fingerprints).get(customer_id).copied()
    }

    /// The dead letters recorded.
    pub fn dead_letters_now(&self) -> Vec<DeadLetter> {
        lock(&self.dead_letters).clone()
    }

    fn check(&self) -> Result<(), StateError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StateError::Storage("disk I/O error (fake)".to_owned()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SyncStateStore for FakeState {
    async fn delivered_fingerprints(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, Fingerprint>, StateError> {
        self.check()?;
        let held = lock(&self.fingerprints);
        Ok(customer_ids
            .iter()
            .filter_map(|id| held.get(id).map(|f| (id.clone(), *f)))
            .collect())
    }

    async fn record_delivered<'a>(&self, delivered: &[Delivered<'a>]) -> Result<(), StateError> {
        self.check()?;
        let mut held = lock(&self.fingerprints);
        for d in delivered {
            held.insert(d.customer_id.to_owned(), d.fingerprint);
        }
        Ok(())
    }

    async fn high_water_mark(&self) -> Result<Option<OffsetDateTime>, StateError> {
        self.check()?;
        Ok(None)
    }

    async fn set_high_water_mark(&self, _at: OffsetDateTime) -> Result<(), StateError> {
        self.check()
    }

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        self.check()?;
        lock(&self.dead_letters).extend_from_slice(letters);
        Ok(())
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StateError> {
        self.check()?;
        Ok(self.dead_letters_now())
    }

    async fn remove_dead_letters(&self, customer_ids: &[String]) -> Result<(), StateError> {
        self.check()?;
        lock(&self.dead_letters).retain(|l| !customer_ids.contains(&l.customer_id));
        Ok(())
    }

    async fn start_run(&self, _kind: &str, _started_at: OffsetDateTime) -> Result<i64, StateError> {
        self.check()?;
        Ok(1)
    }

    async fn finish_run(
        &self,
        _id: i64,
        _status: RunStatus,
        _counts: RunCounts,
        _error: Option<String>,
    ) -> Result<(), StateError> {
        self.check()
    }

    async fn runs(&self, _limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.check()?;
        Ok(Vec::new())
    }
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

/// A webhook router over fresh fakes.
pub struct TestApp {
    /// The router under test.
    pub router: Router,
    /// The Segment it sends to.
    pub segment: Arc<FakeSegment>,
    /// The customers it can read.
    pub source: Arc<FakeSource>,
    /// What it remembers.
    pub state: Arc<FakeState>,
}

impl TestApp {
    /// Requires [`TOKEN`], identifies by email.
    pub fn new() -> Self {
        Self::with(Some(TOKEN), Duration::from_secs(10))
    }

    /// With this token (or none) and request timeout.
    pub fn with(token: Option<&str>, request_timeout: Duration) -> Self {
        init_logs();
        let segment = Arc::new(FakeSegment::new());
        let source = Arc::new(FakeSource::default());
        let state = Arc::new(FakeState::default());
        let deps = deps(&segment, &source, &state, token);
        let router = router_with_timeout(deps, install_metrics(), request_timeout);
        Self {
            router,
            segment,
            source,
            state,
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

/// The ports wired to these fakes.
pub fn deps(
    segment: &Arc<FakeSegment>,
    source: &Arc<FakeSource>,
    state: &Arc<FakeState>,
    token: Option<&str>,
) -> ServeDeps {
    ServeDeps {
        segment: segment.clone(),
        source: source.clone(),
        state: state.clone(),
        strategy: UserIdStrategy::Email,
        token: token.map(|t| WebhookToken::parse(t).expect("a valid token")),
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

/// An AWS SNS `Notification` around a payload.
pub fn sns(payload: &Value) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:commercetools",
        "Message": payload.to_string(),
        "Timestamp": "2024-05-01T10:00:01.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"
    })
}

/// An AWS SNS `SubscriptionConfirmation`.
pub fn sns_subscription_confirmation() -> Value {
    json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:commercetools",
        "Message": "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:123456789012:commercetools&Token=2336412f37fb687f5d51e6e2425",
        "Timestamp": "2024-05-01T10:00:00.000Z",
        "SignatureVersion": "1"
    })
}

/// The value of a Prometheus sample line, or 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a numeric sample"))
}
