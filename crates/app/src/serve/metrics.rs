//! The webhook's Prometheus metrics, written through the `metrics` facade.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Webhook requests, labelled by `outcome`.
const REQUESTS: &str = "webhook_requests_total";
/// Time to answer a webhook request, in seconds.
const DURATION: &str = "webhook_request_duration_seconds";

/// Upper bounds of the duration buckets: a delivery waits for a Segment batch,
/// so most answers land between 10 ms and a few seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What became of a webhook request, as its metric label; set by the handler (or
/// the token check) on the response for [`observe`] to count.
#[derive(Debug, Clone, Copy)]
pub(super) struct OutcomeLabel(pub(super) &'static str);

/// Installs the process-wide Prometheus recorder on first call and returns its
/// handle; later calls return the same handle.
///
/// A process has one global recorder, so every router, and the adapters' own
/// `segment_*` metrics, share this one. Should another recorder already be
/// installed, the handle renders only what is written to it (nothing), and the
/// webhook still serves.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), DURATION_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
            }
            metrics::describe_counter!(REQUESTS, "Webhook requests, by outcome");
            metrics::describe_histogram!(
                DURATION,
                metrics::Unit::Seconds,
                "Time to answer a webhook request"
            );
            handle
        })
        .clone()
}

/// Counts and times every request of the route it wraps.
pub(super) async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let outcome = response
        .extensions()
        .get::<OutcomeLabel>()
        .map_or("error", |label| label.0);
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
    metrics::histogram!(DURATION).record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the Prometheus text format.
pub(super) async fn render(State(handle): State<PrometheusHandle>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Keeps the recorder's histograms from growing between scrapes.
pub(super) async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}
