//! The webhook handler: a Subscription message in, at most one identify out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use segment_sync_domain::webhook::{decode, WebhookEvent};
use segment_sync_domain::{Customer, SkipReason};
use segment_sync_ports::{Subject, SyncStateStore};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::metrics::OutcomeLabel;
use super::{ServeDeps, MAX_BODY_BYTES};
use crate::service::{Delivery, ServiceError};

/// The reason given for content Segment refused before.
const REFUSED_BEFORE: &str = "Segment refused this content before; it is in the dead letters";

/// How long the state store may take to answer the readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How often readiness is asked of the state store.
const READY_EVERY: Duration = Duration::from_secs(2);

/// What the routes share.
pub(super) struct AppState {
    pub(super) deps: ServeDeps,
    /// Who may post; SNS messages are checked against it here, once the body is in.
    pub(super) senders: super::auth::Senders,
    pub(super) request_timeout: Duration,
    pub(super) body_read_timeout: Duration,
    /// Held by every worker while it runs, so that shutdown can wait for them.
    pub(super) workers: mpsc::Sender<()>,
    /// Bounds the workers: during a Segment outage requests would otherwise pile
    /// up waiting for room in its queue, with no limit on memory.
    pub(super) capacity: Arc<tokio::sync::Semaphore>,
    /// The work in flight, by what it is about, so that redeliveries of one
    /// message arriving together share one piece of work.
    pub(super) flights: Flights,
    pub(super) readiness: Readiness,
}

/// What a piece of webhook work is about: a customer at a version (`None` when
/// the message does not say). Two messages with the same key need the same work.
type FlightKey = (String, Option<i64>);

/// The webhook work in flight: the first request about a key does the work, the
/// ones that arrive while it runs wait for its reply.
#[derive(Default)]
pub(super) struct Flights(Mutex<HashMap<FlightKey, watch::Receiver<Option<Reply>>>>);

/// Whether the work for a key was started here or was already running.
enum Flight {
    Leader(watch::Sender<Option<Reply>>),
    Follower(watch::Receiver<Option<Reply>>),
}

impl Flights {
    fn join(&self, key: &FlightKey) -> Flight {
        let mut flights = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(running) = flights.get(key) {
            return Flight::Follower(running.clone());
        }
        let (sender, receiver) = watch::channel(None);
        flights.insert(key.clone(), receiver);
        Flight::Leader(sender)
    }

    fn land(&self, key: &FlightKey) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// Whether the state store answers, asked in the background every few seconds so
/// that `/readyz` answers at once whatever the store is doing.
pub(super) struct Readiness {
    ready: watch::Receiver<bool>,
    /// Warn about running open on the first probe only.
    open: AtomicBool,
}

impl Readiness {
    /// Starts asking `state` in the background.
    pub(super) fn watch(state: Arc<dyn SyncStateStore>, open: bool) -> Self {
        let (sender, ready) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let answer = tokio::time::timeout(READY_TIMEOUT, state.high_water_mark()).await;
                let now_ready = match answer {
                    Ok(Ok(_)) => true,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "not ready: the state store failed");
                        false
                    }
                    Err(_) => {
                        tracing::error!("not ready: the state store did not answer in time");
                        false
                    }
                };
                if sender.send(now_ready).is_err() {
                    break;
                }
                tokio::time::sleep(READY_EVERY).await;
            }
        });
        Self {
            ready,
            open: AtomicBool::new(open),
        }
    }
}

/// Webhook requests handled at once; more are answered 500 and redelivered.
pub(super) const MAX_WORKERS: usize = 1_024;

/// How a webhook request ends.
#[derive(Debug, Clone)]
pub(super) enum Reply {
    Delivered,
    Unchanged,
    /// Older than what Segment has: nothing sent.
    Stale,
    Skipped(SkipReason),
    /// Can never be delivered as it is; it is in the dead letters. Answered 200,
    /// so that the sender (Pub/Sub redelivers any non-2xx for days) stops.
    Rejected(String),
    /// A deletion: the customer is erased here and its deletion in Segment is
    /// durably queued.
    Queued,
    /// Valid, but nothing to do.
    Ignored,
    SubscriptionConfirmationLogged,
    Unauthorized,
    BadRequest(String),
    TooLarge,
    /// The body did not arrive within its time.
    BodyTimeout,
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
        Reply::Queued => (
            StatusCode::ACCEPTED,
            Some(json!({"status": "queued"})),
            "queued",
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
        Reply::BodyTimeout => (
            StatusCode::REQUEST_TIMEOUT,
            Some(json!({"error": "the body did not arrive in time"})),
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
pub(super) async fn receive(State(state): State<Arc<AppState>>, body: Body) -> Response {
    let body = match tokio::time::timeout(
        state.body_read_timeout,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(error)) if is_too_large(&error) => {
            tracing::warn!("webhook body over 1 MiB refused");
            return reply(Reply::TooLarge);
        }
        Ok(Err(error)) => {
            return reply(Reply::BadRequest(format!("cannot read the body: {error}")))
        }
        Err(_) => {
            tracing::warn!("webhook body did not arrive in time");
            return reply(Reply::BodyTimeout);
        }
    };
    let sns_verified = match super::auth::check_sns(&state.senders, &body).await {
        Ok(verified) => verified,
        Err(refused) => return reply(refused),
    };
    let event = match decode(&body) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "webhook body refused");
            return reply(Reply::BadRequest(error.to_string()));
        }
    };
    let key = flight_key(&event);
    let leader = match key.as_ref().map(|key| state.flights.join(key)) {
        Some(Flight::Follower(mut running)) => {
            // The same message is being handled: its reply is this one's too.
            metrics::counter!("webhook_requests_coalesced_total").increment(1);
            let waited =
                tokio::time::timeout(state.request_timeout, running.wait_for(Option::is_some))
                    .await;
            return match waited {
                Ok(Ok(done)) => reply(done.clone().unwrap_or(Reply::Error)),
                _ => reply(Reply::Error),
            };
        }
        Some(Flight::Leader(sender)) => Some(sender),
        None => None,
    };
    let replied = work(&state, event, sns_verified).await;
    if let (Some(key), Some(sender)) = (key, leader) {
        state.flights.land(&key);
        sender.send_replace(Some(replied.clone()));
    }
    reply(replied)
}

/// The body was over the limit (rather than broken off).
fn is_too_large(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
}

/// What a piece of work is about, when it is about one customer.
fn flight_key(event: &WebhookEvent) -> Option<FlightKey> {
    match event {
        WebhookEvent::CustomerUpserted(customer) => {
            Some((customer.id.clone(), Some(customer.version)))
        }
        WebhookEvent::CustomerChanged { id, version } => Some((id.clone(), *version)),
        _ => None,
    }
}

/// Does the work of one event on a task of its own, within the request's time.
async fn work(state: &Arc<AppState>, event: WebhookEvent, sns_verified: bool) -> Reply {
    let Ok(permit) = Arc::clone(&state.capacity).try_acquire_owned() else {
        tracing::error!("webhook at capacity; the sender will deliver it again");
        return Reply::Error;
    };
    let request_timeout = state.request_timeout;
    let deadline = Instant::now() + request_timeout;
    // The work runs on its own task so that a client that goes away does not
    // cancel it between Segment's acknowledgement and recording it; it stops
    // waiting (for commercetools, for Segment) at the deadline itself.
    let worker = {
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let _running = state.workers.clone();
            let _permit = permit;
            handle(&state.deps, event, sns_verified, deadline).await
        })
    };
    // A little longer than the work's own deadline: it ends itself then.
    match tokio::time::timeout(request_timeout + Duration::from_secs(1), worker).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => {
            tracing::error!(%error, "webhook worker failed");
            Reply::Error
        }
        Err(_) => {
            tracing::error!(
                timeout_ms = request_timeout.as_millis() as u64,
                "webhook request timed out; the sender will deliver it again"
            );
            Reply::Error
        }
    }
}

/// `sns_verified`: the body was an SNS message whose signature was checked.
async fn handle(
    deps: &ServeDeps,
    event: WebhookEvent,
    sns_verified: bool,
    deadline: Instant,
) -> Reply {
    match event {
        WebhookEvent::CustomerUpserted(customer) => deliver(deps, *customer, deadline).await,
        WebhookEvent::CustomerChanged { id, version } => {
            let fetched = tokio::time::timeout_at(deadline, deps.source.customer_by_id(&id)).await;
            match fetched {
                Ok(Ok(Some(customer))) if customer.id == id => {
                    deliver(deps, customer, deadline).await
                }
                Ok(Ok(Some(_))) => {
                    tracing::error!(customer_id = %id, "commercetools answered with another customer than the one asked for");
                    Reply::Error
                }
                Ok(Ok(None)) => {
                    tracing::info!(customer_id = %id, version, "customer no longer exists; nothing sent");
                    Reply::Ignored
                }
                Ok(Err(error)) => {
                    tracing::error!(customer_id = %id, %error, "cannot read the customer from commercetools");
                    Reply::Error
                }
                Err(_) => {
                    tracing::error!(customer_id = %id, "commercetools did not answer within the request's time");
                    Reply::Error
                }
            }
        }
        WebhookEvent::CustomerDeleted { id } => forget(deps, id).await,
        WebhookEvent::NotForUs { why } => {
            tracing::info!(%why, "webhook message needs nothing");
            Reply::Ignored
        }
        WebhookEvent::SnsSubscriptionConfirmation { subscribe_url } if sns_verified => {
            tracing::info!(%subscribe_url, "SNS subscription confirmation: visit the SubscribeURL to confirm it");
            Reply::SubscriptionConfirmationLogged
        }
        WebhookEvent::SnsSubscriptionConfirmation { .. } => {
            // Inside another envelope its signature was not checked: a forged
            // SubscribeURL must not reach an operator who would visit it.
            tracing::warn!("SNS subscription confirmation inside another envelope; its SubscribeURL is not logged");
            Reply::Ignored
        }
        other => {
            // Nothing of the event is logged: it may carry personal data.
            let _ = other;
            tracing::warn!("webhook event this version does not act on");
            Reply::Ignored
        }
    }
}

/// A customer deleted in commercetools: with `SEGMENT_DELETION` on, erased here
/// and its deletion in Segment queued (sent within seconds by the regulator).
async fn forget(deps: &ServeDeps, id: String) -> Reply {
    if !deps.deletions.regulates() {
        tracing::info!(customer_id = %id, "customer deleted in commercetools; SEGMENT_DELETION is off, so its Segment profile is left as is");
        return Reply::Ignored;
    }
    match deps
        .deletions
        .forget(&[Subject::CustomerId(id.clone())])
        .await
    {
        // Queued now, or already waiting in the queue.
        Ok(answers) if answers.iter().any(|answer| !answer.user_ids.is_empty()) => {
            tracing::info!(customer_id = %id, "customer deleted in commercetools: erased here, its deletion in Segment queued");
            Reply::Queued
        }
        Ok(answers) if answers.iter().any(|answer| !answer.is_empty()) => {
            tracing::warn!(customer_id = %id, "customer deleted in commercetools: erased here, but no userId was recorded for it (delivered by an older version), so Segment cannot be asked to delete it; forget its email with segment-sync forget");
            Reply::Ignored
        }
        Ok(_) => {
            tracing::info!(customer_id = %id, "customer deleted in commercetools was never sent to Segment; nothing to do");
            Reply::Ignored
        }
        Err(error) => {
            tracing::error!(customer_id = %id, %error, "cannot erase the deleted customer");
            Reply::Error
        }
    }
}

async fn deliver(deps: &ServeDeps, customer: Customer, deadline: Instant) -> Reply {
    let customer_id = customer.id.clone();
    let customer_id = customer_id.as_str();
    match deps.service.deliver(customer, deadline).await {
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
        Err(ServiceError::TimedOut) => {
            tracing::error!(customer_id, "Segment did not answer within the request's time; the sender will deliver it again");
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

/// `GET /readyz`: the state store answered the last background probe.
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.readiness.open.swap(false, Ordering::Relaxed) {
        tracing::warn!("the webhook accepts unauthenticated requests (--allow-unauthenticated)");
    }
    let mut ready = state.readiness.ready.clone();
    // Right after start-up, the first probe may still be on its way.
    if !*ready.borrow() {
        let _ = tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|ready| *ready)).await;
    }
    if *ready.borrow() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        not_ready()
    }
}

fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unavailable"})),
    )
        .into_response()
}
