//! `segment-sync serve`: the commercetools webhook.
//!
//! [`router`] answers `POST /webhooks/commercetools` (a Platform payload, or one
//! wrapped by Pub/Sub push, CloudEvents or SNS), `GET /healthz`, `GET /readyz` and
//! `GET /metrics`. [`serve`] runs it on a listener until a shutdown signal, then
//! finishes what is in flight and flushes Segment.
//!
//! A request is answered 200 `{"status":"delivered"}` only after Segment
//! acknowledged the identify, so a 5xx always means "send it again". A redelivery
//! of the same content builds the same `messageId`, which Segment deduplicates.

mod auth;
mod connections;
mod metrics;
mod oidc;
mod sns;
mod webhook;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use segment_sync_ports::{CustomerSource, SegmentClient, SegmentError, SyncStateStore};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::privacy::Deletions;
use crate::service::SyncService;

pub use self::auth::{WebhookToken, WebhookTokenError};
pub use self::metrics::install_metrics;
pub(crate) use self::metrics::SEGMENT_MESSAGES;
pub use self::oidc::{
    OidcConfig, OidcError, OidcRefusal, OidcVerifier, GOOGLE_ISSUERS, GOOGLE_JWKS_URL, MIN_REFRESH,
};
pub use self::sns::{SnsCertHosts, SnsError, SnsRefusal, SnsVerifier, DEFAULT_SNS_CERT_HOSTS};

/// Where commercetools (or the queue in front of it) posts its messages.
pub const WEBHOOK_PATH: &str = "/webhooks/commercetools";

/// The largest webhook body accepted; larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a webhook request may take before it is answered 500, by default.
///
/// Pub/Sub push gives up on an unacknowledged push after 10 seconds unless told
/// otherwise, and SNS after 15: answering later than that only wastes the work.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything shutdown does, from the signal to the exit: stop accepting, close
/// idle connections, let requests in flight finish, flush Segment. Give the
/// process at least this much grace (and a little more) before SIGKILL.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// How long a connection may take to send a request's headers, and how long a
/// kept-alive connection may stay idle between requests, by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request's body may take to arrive, by default.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections held open at once, by default; more are closed as they come.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;

/// What the webhook talks to.
#[derive(Clone)]
pub struct ServeDeps {
    /// The per-customer rule; every request goes through it.
    pub service: SyncService,
    /// The Segment client behind the service, shared by every request so that its
    /// flush interval groups concurrent requests into batches; closed at shutdown.
    pub segment: Arc<dyn SegmentClient>,
    /// Where a changed customer is read from.
    pub source: Arc<dyn CustomerSource>,
    /// The state behind the service, asked by `/readyz`.
    pub state: Arc<dyn SyncStateStore>,
    /// The shared secret requests may carry; `None` with no `oidc` either accepts
    /// every request.
    pub token: Option<WebhookToken>,
    /// Customer deletions: erased from the state, regulated in Segment.
    pub deletions: Arc<Deletions>,
    /// The Pub/Sub push tokens requests may carry instead of the shared secret.
    pub oidc: Option<OidcConfig>,
    /// Where the signing certificates of SNS messages may come from.
    pub sns_cert_hosts: SnsCertHosts,
}

/// How the server runs, as the command line chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Run without a [`WebhookToken`], accepting unauthenticated requests.
    pub allow_unauthenticated: bool,
    /// How long a webhook request may take before it is answered 500; its work
    /// (reading commercetools, waiting for Segment) stops then too.
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers, and how long a
    /// kept-alive connection may stay idle.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive (then 408).
    pub body_read_timeout: Duration,
    /// Connections held open at once; more are closed as they come.
    pub max_connections: usize,
    /// Everything shutdown does, from the signal to the return.
    pub shutdown_deadline: Duration,
}

impl Default for ServeOptions {
    /// `127.0.0.1:8080`, a token required, and the `DEFAULT_*` limits.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            allow_unauthenticated: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_deadline: SHUTDOWN_DEADLINE,
        }
    }
}

/// Why the webhook server cannot start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No token and no explicit consent to run open. A configuration error (exit 2).
    #[error(
        "WEBHOOK_TOKEN is not set: set it, or pass --allow-unauthenticated to accept unauthenticated requests"
    )]
    MissingToken,
    /// Segment did not drain on shutdown; some messages may not have been delivered
    /// (their senders were answered 5xx and will deliver them again).
    #[error("Segment did not drain on shutdown: {0}")]
    Flush(#[source] SegmentError),
}

/// Refuses to run without a token (or OIDC audience) unless the operator
/// explicitly allowed it.
pub fn check_auth_config(
    token: &Option<WebhookToken>,
    oidc: &Option<OidcConfig>,
    allow_unauthenticated: bool,
) -> Result<(), ServeError> {
    if token.is_none() && oidc.is_none() && !allow_unauthenticated {
        return Err(ServeError::MissingToken);
    }
    Ok(())
}

/// The webhook's routes, with [`DEFAULT_REQUEST_TIMEOUT`].
///
/// `metrics` is what `GET /metrics` renders; [`install_metrics`] gives the handle
/// of the process-wide recorder the request counters are written to.
pub fn router(deps: ServeDeps, metrics: PrometheusHandle) -> Router {
    router_with_timeout(deps, metrics, DEFAULT_REQUEST_TIMEOUT)
}

/// The webhook's routes, answering 500 to a webhook request that takes longer
/// than `request_timeout`.
pub fn router_with_timeout(
    deps: ServeDeps,
    metrics: PrometheusHandle,
    request_timeout: Duration,
) -> Router {
    // Without `serve` nobody waits for the workers at shutdown, so the receiver
    // can go: the senders are only held, never used to send.
    let (workers, _) = mpsc::channel(1);
    let options = ServeOptions {
        request_timeout,
        ..ServeOptions::default()
    };
    build_router(deps, metrics, &options, workers)
}

fn build_router(
    deps: ServeDeps,
    metrics: PrometheusHandle,
    options: &ServeOptions,
    workers: mpsc::Sender<()>,
) -> Router {
    let senders = auth::Senders {
        token: deps.token.clone(),
        oidc: deps
            .oidc
            .clone()
            .map(|config| Arc::new(OidcVerifier::new(config))),
        sns: Arc::new(SnsVerifier::new(deps.sns_cert_hosts.clone())),
    };
    let readiness = webhook::Readiness::watch(Arc::clone(&deps.state), senders.open());
    let state = Arc::new(webhook::AppState {
        deps,
        senders: senders.clone(),
        request_timeout: options.request_timeout,
        body_read_timeout: options.body_read_timeout,
        workers,
        capacity: Arc::new(tokio::sync::Semaphore::new(webhook::MAX_WORKERS)),
        flights: webhook::Flights::default(),
        readiness,
    });
    let hook = post(webhook::receive)
        .route_layer(axum::middleware::from_fn_with_state(
            senders,
            auth::require_sender,
        ))
        .route_layer(axum::middleware::from_fn(metrics::observe));
    Router::new()
        .route(WEBHOOK_PATH, hook)
        .route("/healthz", get(webhook::healthz))
        .route("/readyz", get(webhook::readyz))
        .with_state(state)
        .route("/metrics", get(metrics::render).with_state(metrics))
        .fallback(webhook::not_found)
}

/// Serves the webhook on `listener` until `shutdown` resolves.
///
/// Refuses to start without a token unless `options.allow_unauthenticated`.
/// Connections are capped, and each is closed when a request's headers do not
/// arrive in time or it stays idle as long. On shutdown, all within
/// `options.shutdown_deadline`: it stops accepting, closes idle connections, lets
/// the requests in flight finish (each bounded by `options.request_timeout`), then
/// closes and flushes Segment. The metrics are written to the recorder of
/// [`install_metrics`].
pub async fn serve(
    listener: TcpListener,
    deps: ServeDeps,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    check_auth_config(&deps.token, &deps.oidc, options.allow_unauthenticated)?;
    if deps.token.is_none() && deps.oidc.is_none() {
        tracing::warn!("the webhook accepts unauthenticated requests (--allow-unauthenticated)");
    }
    let metrics = install_metrics();
    let segment = Arc::clone(&deps.segment);
    let (stop_regulator, regulator_stopped) = tokio::sync::watch::channel(false);
    let regulator =
        tokio::spawn(Arc::clone(&deps.deletions).regulate_in_background(regulator_stopped));
    let (workers, mut workers_done) = mpsc::channel(1);
    let app = build_router(deps, metrics.clone(), options, workers);

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "webhook listening");
    }
    let upkeep = tokio::spawn(metrics::upkeep(metrics));
    let connections = connections::accept_until(listener, app, options, shutdown).await;
    let deadline = tokio::time::Instant::now() + options.shutdown_deadline;
    // Requests in flight finish within their own timeout; idle connections close now.
    let in_flight = options.request_timeout + Duration::from_secs(1);
    connections
        .finish(in_flight.min(options.shutdown_deadline / 2))
        .await;
    upkeep.abort();
    tracing::info!("webhook stopped accepting; flushing Segment");

    // Deletions queued by now go to Segment before the exit (or wait, queued,
    // for the next start).
    let _ = stop_regulator.send(true);
    if tokio::time::timeout_at(deadline, regulator).await.is_err() {
        tracing::warn!(
            "queued deletions not sent before the shutdown deadline; the next start sends them"
        );
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let flushed = segment.close_and_flush(left).await;
    // A request whose client went away (or timed out) leaves its worker running
    // to record its outcome; give those what is left of the deadline.
    let _ = tokio::time::timeout_at(deadline, workers_done.recv()).await;
    flushed.map_err(ServeError::Flush)?;
    tracing::info!("webhook shut down cleanly");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, logged as the webhook's shutdown.
pub async fn shutdown_signal() {
    let signal = crate::signal::terminate_or_interrupt().await;
    tracing::info!(%signal, "webhook shutting down");
}
