//! The webhook handler: a Subscription message in, at most one identify out.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use segment_sync_domain::webhook::{decode, WebhookEvent};
use segment_sync_domain::{Customer, SkipReason};
use serde_json::json;
use tokio::sync::mpsc;

use super::metrics::OutcomeLabel;
use super::ServeDeps;
use crate::service::Delivery;

/// The reason given for content Segment refused before.
const REFUSED_BEFORE: &str = "Segment refused this content before; it is in the dead letters";

/// How long `/readyz` waits for the state store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the routes share.
pub(super) struct AppState {
    pub(super) deps: ServeDeps,
    pub(super) request_timeout: Duration,
    /// Held by every worker while it runs, so that shutdown can wait for them.
    pub(super) workers: mpsc::Sender<()>,
    /// Bounds the workers: during a Segment outage requests would otherwise pile
    /// up waiting for room in its queue, with no limit on memory.
    pub(super) capacity: Arc<tokio::sync::Semaphore>,
}

/// Webhook requests handled at once; more are answered 500 and redelivered.
pub(super) const MAX_WORKERS: usize = 1_024;

/// How a webhook request ends.
#[derive(Debug)]
pub(super) enum Reply {
    Delivered,
    Unchanged,
    /// Older than what Segment has: nothing sent.
    Stale,
    Skipped(SkipReason),
    /// Can never be delivered as it is; it is in the dead letters. Answered 200,
    /// so that the sender (Pub/Sub redelivers any non-2xx for days) stops.
    Rejected(String),
    /// Valid, but nothing to do.
    Ignored,
    SubscriptionConfirmationLogged,
    Unauthorized,
    BadRequest(String),
    TooLarge,
    /// Worth sending again; the detail is in the logs only.
    Error,
}

/// The response for a reply, labelled for the request metrics.
pub(super) fn reply(reply: Reply) -> Response {
    let (status, body, label) = match reply {
        Reply::Delivered => (
            StatusCode::OK,
            Some(json!({"status": "delivered"})),
            "delivered",
        ),
        Reply::Unchanged => (
            StatusCode::OK,
            Some(json!({"status": "unchanged"})),
            "unchanged",
        ),
        Reply::Stale => (StatusCode::OK, Some(json!({"status": "stale"})), "stale"),
        Reply::Skipped(reason) => (
            StatusCode::OK,
            Some(json!({"status": "skipped", "reason": reason.to_string()})),
            "skipped",
        ),
        Reply::Rejected(reason) => (
            StatusCode::OK,
            Some(json!({"status": "rejected", "reason": reason})),
            "rejected",
        ),
        Reply::Ignored => (StatusCode::NO_CONTENT, None, "ignored"),
        Reply::SubscriptionConfirmationLogged => (
            StatusCode::OK,
            Some(json!({"status": "subscription_confirmation_logged"})),
            "ignored",
        ),
        Reply::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            Some(json!({"error": "Unauthorized"})),
            "unauthorized",
        ),
        Reply::BadRequest(reason) => (
            StatusCode::BAD_REQUEST,
            Some(json!({"error": reason})),
            "bad_request",
        ),
        Reply::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(json!({"error": "body over 1 MiB"})),
            "bad_request",
        ),
        Reply::Error => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(json!({"error": "Internal server error"})),
            "error",
        ),
    };
    let mut response = match body {
        Some(body) => (status, Json(body)).into_response(),
        None => status.into_response(),
    };
    response.extensions_mut().insert(OutcomeLabel(label));
    response
}

/// `POST /webhooks/commercetools`.
pub(super) async fn receive(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!("webhook body over 1 MiB refused");
            return reply(Reply::TooLarge);
        }
        Err(rejection) => return reply(Reply::BadRequest(rejection.body_text())),
    };
    let event = match decode(&body) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "webhook body refused");
            return reply(Reply::BadRequest(error.to_string()));
        }
    };
    let Ok(permit) = Arc::clone(&state.capacity).try_acquire_owned() else {
        tracing::error!("webhook at capacity; the sender will deliver it again");
        return reply(Reply::Error);
    };
    let request_timeout = state.request_timeout;
    // The work runs on its own task so that a client that goes away, or a timeout,
    // does not cancel it between Segment's acknowledgement and recording it.
    let worker = tokio::spawn(async move {
        let _running = state.workers.clone();
        let _permit = permit;
        handle(&state.deps, event).await
    });
    match tokio::time::timeout(request_timeout, worker).await {
        Ok(Ok(outcome)) => reply(outcome),
        Ok(Err(error)) => {
            tracing::error!(%error, "webhook worker failed");
            reply(Reply::Error)
        }
        Err(_) => {
            tracing::error!(
                timeout_ms = request_timeout.as_millis() as u64,
                "webhook request timed out; the sender will deliver it again"
            );
            reply(Reply::Error)
        }
    }
}

async fn handle(deps: &ServeDeps, event: WebhookEvent) -> Reply {
    match event {
        WebhookEvent::CustomerUpserted(customer) => deliver(deps, *customer).await,
        WebhookEvent::CustomerChanged { id, version } => {
            match deps.source.customer_by_id(&id).await {
                Ok(Some(customer)) => deliver(deps, customer).await,
                Ok(None) => {
                    tracing::info!(customer_id = %id, version, "customer no longer exists; nothing sent");
                    Reply::Ignored
                }
                Err(error) => {
                    tracing::error!(customer_id = %id, %error, "cannot read the customer from commercetools");
                    Reply::Error
                }
            }
        }
        WebhookEvent::CustomerDeleted { id } => {
            tracing::info!(customer_id = %id, "customer deleted in commercetools; its Segment profile is left as is");
            Reply::Ignored
        }
        WebhookEvent::NotForUs { why } => {
            tracing::info!(%why, "webhook message needs nothing");
            Reply::Ignored
        }
        WebhookEvent::SnsSubscriptionConfirmation { subscribe_url } => {
            tracing::info!(%subscribe_url, "SNS subscription confirmation: visit the SubscribeURL to confirm it");
            Reply::SubscriptionConfirmationLogged
        }
        other => {
            // Nothing of the event is logged: it may carry personal data.
            let _ = other;
            tracing::warn!("webhook event this version does not act on");
            Reply::Ignored
        }
    }
}

async fn deliver(deps: &ServeDeps, customer: Customer) -> Reply {
    let customer_id = customer.id.clone();
    let customer_id = customer_id.as_str();
    match deps.service.deliver(customer).await {
        Ok(Delivery::Delivered { message_id }) => {
            tracing::info!(customer_id, %message_id, "customer delivered to Segment");
            Reply::Delivered
        }
        Ok(Delivery::Unchanged) => {
            tracing::info!(customer_id, "customer unchanged since last delivered");
            Reply::Unchanged
        }
        Ok(Delivery::Stale) => {
            tracing::info!(
                customer_id,
                "Segment has a newer version of the customer; nothing sent"
            );
            Reply::Stale
        }
        Ok(Delivery::Skipped(reason)) => {
            tracing::info!(customer_id, %reason, "customer skipped");
            Reply::Skipped(reason)
        }
        Ok(Delivery::Rejected(error)) => {
            tracing::warn!(customer_id, %error, code = error.code(), "identify rejected; it is in the dead letters");
            Reply::Rejected(error.to_string())
        }
        Ok(Delivery::Refused) => {
            tracing::info!(
                customer_id,
                "Segment refused this content before; not sent again"
            );
            Reply::Rejected(REFUSED_BEFORE.to_owned())
        }
        Ok(Delivery::Failed(error)) => {
            tracing::error!(customer_id, %error, code = error.code(), "identify not delivered to Segment; it is in the dead letters");
            Reply::Error
        }
        Err(error) => {
            tracing::error!(customer_id, %error, "cannot handle the customer");
            Reply::Error
        }
    }
}

/// Any other path or method: a JSON 404 that names the webhook's path, for the
/// operator who pointed a subscription at `/`.
pub(super) async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    tracing::info!(%method, path = uri.path(), "no such route");
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": format!(
                "not found: {method} {}; commercetools messages go to POST {}",
                uri.path(),
                super::WEBHOOK_PATH
            )
        })),
    )
        .into_response()
}

/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: the state store answers a cheap read.
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let answer = tokio::time::timeout(READY_TIMEOUT, state.deps.state.high_water_mark()).await;
    match answer {
        Ok(Ok(_)) => Json(json!({"status": "ready"})).into_response(),
        Ok(Err(error)) => {
            tracing::error!(%error, "not ready: the state store failed");
            not_ready()
        }
        Err(_) => {
            tracing::error!("not ready: the state store did not answer in time");
            not_ready()
        }
    }
}

fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unavailable"})),
    )
        .into_response()
}
