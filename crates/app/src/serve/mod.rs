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
mod metrics;
mod webhook;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use segment_sync_ports::{CustomerSource, SegmentClient, SegmentError, SyncStateStore};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::service::SyncService;

pub use self::auth::{WebhookToken, WebhookTokenError};
pub use self::metrics::install_metrics;

/// The largest webhook body accepted; larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a webhook request may take before it is answered 500, by default.
///
/// Pub/Sub push gives up on an unacknowledged push after 10 seconds unless told
/// otherwise, and SNS after 15: answering later than that only wastes the work.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for Segment to drain after the last request.
pub const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The shared secret requests must carry; `None` accepts every request.
    pub token: Option<WebhookToken>,
}

/// How the server runs, as the command line chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Run without a [`WebhookToken`], accepting unauthenticated requests.
    pub allow_unauthenticated: bool,
    /// How long a webhook request may take before it is answered 500.
    pub request_timeout: Duration,
}

impl Default for ServeOptions {
    /// `127.0.0.1:8080`, a token required, [`DEFAULT_REQUEST_TIMEOUT`].
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            allow_unauthenticated: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
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
    /// The listener failed while serving.
    #[error("webhook server failed: {0}")]
    Io(#[from] std::io::Error),
    /// Segment did not drain on shutdown; some messages may not have been delivered
    /// (their senders were answered 5xx and will deliver them again).
    #[error("Segment did not drain on shutdown: {0}")]
    Flush(#[source] SegmentError),
}

/// Refuses to run without a token unless the operator explicitly allowed it.
pub fn check_auth_config(
    token: &Option<WebhookToken>,
    allow_unauthenticated: bool,
) -> Result<(), ServeError> {
    if token.is_none() && !allow_unauthenticated {
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
    build_router(deps, metrics, request_timeout, workers)
}

fn build_router(
    deps: ServeDeps,
    metrics: PrometheusHandle,
    request_timeout: Duration,
    workers: mpsc::Sender<()>,
) -> Router {
    let token = deps.token.clone();
    let state = Arc::new(webhook::AppState {
        deps,
        request_timeout,
        workers,
        capacity: Arc::new(tokio::sync::Semaphore::new(webhook::MAX_WORKERS)),
    });
    let hook = post(webhook::receive)
        .route_layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
        .route_layer(axum::middleware::from_fn(metrics::observe));
    Router::new()
        .route("/webhooks/commercetools", hook)
        .route("/healthz", get(webhook::healthz))
        .route("/readyz", get(webhook::readyz))
        .with_state(state)
        .route("/metrics", get(metrics::render).with_state(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Serves the webhook on `listener` until `shutdown` resolves.
///
/// Refuses to start without a token unless `options.allow_unauthenticated`. On
/// shutdown it stops accepting, lets the requests in flight finish (each bounded
/// by `options.request_timeout`), then closes and flushes Segment. The metrics are
/// written to the recorder of [`install_metrics`].
pub async fn serve(
    listener: TcpListener,
    deps: ServeDeps,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    check_auth_config(&deps.token, options.allow_unauthenticated)?;
    let metrics = install_metrics();
    let segment = Arc::clone(&deps.segment);
    let (workers, mut workers_done) = mpsc::channel(1);
    let app = build_router(deps, metrics.clone(), options.request_timeout, workers);

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "webhook listening");
    }
    let upkeep = tokio::spawn(metrics::upkeep(metrics));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    tracing::info!("webhook stopped accepting; flushing Segment");

    let flushed = segment.close_and_flush(SHUTDOWN_FLUSH_TIMEOUT).await;
    // A request whose client went away (or timed out) leaves its worker running
    // to record the delivery; give those the flush's grace to finish.
    let _ = tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, workers_done.recv()).await;
    served?;
    flushed.map_err(ServeError::Flush)?;
    tracing::info!("webhook shut down cleanly");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), whichever comes first.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
