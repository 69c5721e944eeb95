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
/// Time per request to Segment, in seconds (recorded by the Segment adapter).
const SEGMENT_DURATION: &str = "segment_request_duration_seconds";
/// Messages by their final outcome (counted by the Segment adapter, and by the
/// service for a message rejected before it was sent).
pub(crate) const SEGMENT_MESSAGES: &str = "segment_messages_total";

/// Every `outcome` of [`REQUESTS`], as [`OutcomeLabel`]s name them.
const REQUEST_OUTCOMES: &[&str] = &[
    "delivered",
    "unchanged",
    "stale",
    "skipped",
    "rejected",
    "queued",
    "ignored",
    "unauthorized",
    "bad_request",
    "error",
];

/// Which series of a counter exist at 0 from start-up.
enum AtStart {
    /// The one series without labels.
    Unlabelled,
    /// One series per value of the label.
    Labelled(&'static str, &'static [&'static str]),
    /// None: the label's values are known only from the first event.
    Nothing,
}

/// The counters, their help and the series each starts with at 0, so that an
/// alert on a series (`outcome="error"`) works before its first event.
const COUNTERS: &[(&str, &str, AtStart)] = &[
    (
        REQUESTS,
        "Webhook requests, by outcome",
        AtStart::Labelled("outcome", REQUEST_OUTCOMES),
    ),
    (
        "webhook_requests_coalesced_total",
        "Webhook requests that joined the work of a redelivery of the same message already in progress",
        AtStart::Unlabelled,
    ),
    (
        "webhook_connections_refused_total",
        "Connections closed at once because WEBHOOK_MAX_CONNECTIONS were open",
        AtStart::Unlabelled,
    ),
    (
        "segment_requests_total",
        "Requests to Segment's /v1/batch, by HTTP status (or timeout, connection)",
        AtStart::Nothing,
    ),
    (
        "segment_retries_total",
        "Batch requests to Segment sent again",
        AtStart::Unlabelled,
    ),
    (
        SEGMENT_MESSAGES,
        "Messages to Segment, by final outcome",
        AtStart::Labelled("outcome", &["delivered", "rejected", "failed"]),
    ),
];

/// The histograms and their help.
const HISTOGRAMS: &[(&str, &str)] = &[
    (DURATION, "Time to answer a webhook request"),
    (SEGMENT_DURATION, "Time per request to Segment"),
];

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
            // Histograms with buckets, not summaries: summaries fall to 0 when idle
            // and cannot be aggregated across replicas.
            let builder = HISTOGRAMS
                .iter()
                .try_fold(PrometheusBuilder::new(), |builder, (name, _)| {
                    builder
                        .set_buckets_for_metric(Matcher::Full((*name).to_owned()), DURATION_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
            }
            for (name, help, at_start) in COUNTERS {
                metrics::describe_counter!(*name, *help);
                match at_start {
                    AtStart::Unlabelled => metrics::counter!(*name).absolute(0),
                    AtStart::Labelled(label, values) => {
                        for value in *values {
                            metrics::counter!(*name, *label => *value).absolute(0);
                        }
                    }
                    AtStart::Nothing => {}
                }
            }
            for (name, help) in HISTOGRAMS {
                metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
                // Registered, so that its buckets are there at 0.
                let _registered = metrics::histogram!(*name);
            }
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
