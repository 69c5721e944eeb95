//! One batch's journey: the request, its retries, and the split that isolates the
//! messages Segment refuses with a 400.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use segment_sync_domain::retry::{AttemptFailure, RetryDecision, RetryPolicy};
use segment_sync_domain::{DeliveryError, Outcome, WriteKey};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::stats::Counters;
use crate::retry_after::retry_after;

/// The most of a 400 answer kept as the rejection's detail.
const MAX_DETAIL_CHARS: usize = 500;

/// What the client front and its background task both see.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// Set by the first 401/403: nothing is sent or reported delivered after it.
    pub(crate) unauthorized: AtomicBool,
    /// Set by `close_and_flush`: no more messages are taken.
    pub(crate) closed: AtomicBool,
}

/// A message waiting for its outcome: its JSON, spliced into bodies as is.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) json: std::sync::Arc<str>,
    pub(crate) reply: oneshot::Sender<Outcome>,
}

impl Shared {
    /// Gives every message its outcome and counts it once.
    pub(crate) fn settle(&self, messages: Vec<Queued>, outcome: Outcome) {
        let count = messages.len() as u64;
        let (counter, label) = match &outcome {
            Outcome::Delivered => (&self.counters.delivered, "delivered"),
            Outcome::Rejected(_) => (&self.counters.rejected, "rejected"),
            Outcome::Failed(_) => (&self.counters.failed, "failed"),
        };
        Counters::add(counter, count);
        metrics::counter!("segment_messages_total", "outcome" => label).increment(count);
        for message in messages {
            // A caller that dropped its PendingOutcome no longer wants to know.
            let _ = message.reply.send(outcome.clone());
        }
    }

    pub(crate) fn is_unauthorized(&self) -> bool {
        self.unauthorized.load(Ordering::Acquire)
    }
}

/// How one request (with its retries) ended.
pub(crate) enum Sent {
    Delivered,
    BadRequest(Option<String>),
    Failed(DeliveryError),
}

/// Sends batches; shared by every in-flight batch task.
pub(crate) struct BatchSender {
    http: reqwest::Client,
    url: Url,
    authorization: HeaderValue,
    gzip: bool,
    retry: RetryPolicy,
    jitter: Mutex<fastrand::Rng>,
    /// `"context":{"library":{…}}}`, the same for every body.
    tail: String,
    shared: Arc<Shared>,
}

impl BatchSender {
    pub(crate) fn new(
        http: reqwest::Client,
        url: Url,
        write_key: &WriteKey,
        gzip: bool,
        retry: RetryPolicy,
        jitter_seed: Option<u64>,
        shared: Arc<Shared>,
    ) -> Self {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", write_key.expose()));
        let mut authorization = HeaderValue::from_str(&format!("Basic {credentials}"))
            .expect("base64 is a valid header value");
        // Keeps the header out of reqwest's and hyper's Debug output.
        authorization.set_sensitive(true);
        let jitter = jitter_seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Self {
            http,
            url,
            authorization,
            gzip,
            retry,
            jitter: Mutex::new(jitter),
            tail: format!(
                r#","context":{{"library":{}}}}}"#,
                segment_sync_domain::identify::library_json()
            ),
            shared,
        }
    }

    /// Sends a batch until each of its messages has an outcome. A 400 splits it in
    /// halves, recursively, so that only the messages Segment refuses are rejected.
    pub(crate) async fn deliver(self: Arc<Self>, batch: Vec<Queued>) {
        let count = batch.len() as u64;
        let mut parts = vec![batch];
        while let Some(mut part) = parts.pop() {
            match self.send(&part).await {
                Sent::Delivered if self.shared.is_unauthorized() => {
                    // Once the key is known bad, nothing counts as delivered: a
                    // re-send later is deduplicated by messageId, a false
                    // "delivered" would never be corrected.
                    self.shared
                        .settle(part, Outcome::Failed(DeliveryError::Unauthorized));
                }
                Sent::Delivered => {
                    tracing::debug!(messages = part.len(), "Segment accepted a batch");
                    self.shared.settle(part, Outcome::Delivered);
                }
                Sent::BadRequest(_) if part.len() > 1 => {
                    tracing::debug!(
                        messages = part.len(),
                        "Segment refused a batch with 400; splitting it to find the bad messages"
                    );
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                }
                Sent::BadRequest(detail) => {
                    tracing::warn!(detail = detail.as_deref(), "Segment rejected a message");
                    self.shared.settle(
                        part,
                        Outcome::Rejected(DeliveryError::BadRequest { detail }),
                    );
                }
                Sent::Failed(error) => {
                    tracing::warn!(messages = part.len(), %error, code = error.code(), "a batch could not be delivered");
                    self.shared.settle(part, Outcome::Failed(error));
                }
            }
        }
        self.shared.counters.sent(count);
    }

    /// One body: the messages' JSON spliced in as they are, never re-serialised.
    fn body(&self, part: &[Queued]) -> Result<Bytes, std::io::Error> {
        let sent_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(std::io::Error::other)?;
        let size = part.iter().map(|m| m.json.len() + 1).sum::<usize>()
            + sent_at.len()
            + self.tail.len()
            + 32;
        let mut json = Vec::with_capacity(size);
        json.extend_from_slice(br#"{"batch":["#);
        for (index, message) in part.iter().enumerate() {
            if index > 0 {
                json.push(b',');
            }
            json.extend_from_slice(message.json.as_bytes());
        }
        json.extend_from_slice(br#"],"sentAt":""#);
        json.extend_from_slice(sent_at.as_bytes());
        json.push(b'"');
        json.extend_from_slice(self.tail.as_bytes());
        if !self.gzip {
            return Ok(Bytes::from(json));
        }
        let mut encoder = GzEncoder::new(Vec::with_capacity(size / 4), Compression::fast());
        encoder.write_all(&json)?;
        Ok(Bytes::from(encoder.finish()?))
    }

    /// Posts one body, retrying by the policy.
    pub(crate) async fn send(&self, part: &[Queued]) -> Sent {
        let started = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            if self.shared.is_unauthorized() {
                return Sent::Failed(DeliveryError::Unauthorized);
            }
            attempts += 1;
            let Ok(body) = self.body(part) else {
                return Sent::Failed(DeliveryError::InvalidPayload);
            };
            let mut request = self
                .http
                .post(self.url.clone())
                .header(AUTHORIZATION, self.authorization.clone())
                .header(CONTENT_TYPE, "application/json");
            if self.gzip {
                request = request.header(CONTENT_ENCODING, "gzip");
            }
            if attempts > 1 {
                request = request.header("X-Retry-Count", attempts - 1);
            }
            Counters::add(&self.shared.counters.requests, 1);
            let request_started = Instant::now();
            let result = request.body(body).send().await;
            let (failure, error, label) = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = retry_after(response.headers());
                    // Reading the (small) answer lets the connection be reused.
                    let text = response.text().await.unwrap_or_default();
                    record_request(status.to_string(), request_started);
                    match status {
                        200..=299 => return Sent::Delivered,
                        400 => return Sent::BadRequest(detail(&text)),
                        401 | 403 => {
                            if !self.shared.unauthorized.swap(true, Ordering::AcqRel) {
                                tracing::warn!(
                                    status,
                                    "Segment refused the write key; nothing more will be sent"
                                );
                            }
                            return Sent::Failed(DeliveryError::Unauthorized);
                        }
                        _ => (
                            AttemptFailure::Status {
                                status,
                                retry_after,
                            },
                            DeliveryError::from_status(status),
                            None,
                        ),
                    }
                }
                Err(error) if error.is_timeout() => (
                    AttemptFailure::Timeout,
                    DeliveryError::NetworkTimeout,
                    Some("timeout"),
                ),
                Err(_) => (
                    AttemptFailure::Connection,
                    DeliveryError::ConnectionFailed,
                    Some("connection"),
                ),
            };
            if let Some(label) = label {
                record_request(label.to_owned(), request_started);
            }
            let unit = self.jitter.lock().map(|mut rng| rng.f64()).unwrap_or(0.5);
            match self
                .retry
                .decide(attempts, &failure, started.elapsed(), unit)
            {
                RetryDecision::RetryAfter(wait) => {
                    tracing::debug!(
                        %error,
                        attempts,
                        wait_ms = wait.as_millis() as u64,
                        messages = part.len(),
                        "retrying a batch"
                    );
                    Counters::add(&self.shared.counters.retries, 1);
                    metrics::counter!("segment_retries_total").increment(1);
                    tokio::time::sleep(wait).await;
                }
                RetryDecision::GiveUp if self.retry.is_retryable(&failure) => {
                    return Sent::Failed(DeliveryError::MaxRetriesExceeded {
                        last: Box::new(error),
                    })
                }
                RetryDecision::GiveUp => return Sent::Failed(error),
            }
        }
    }
}

fn record_request(status: String, started: Instant) {
    metrics::counter!("segment_requests_total", "status" => status).increment(1);
    metrics::histogram!("segment_request_duration_seconds").record(started.elapsed().as_secs_f64());
}

/// What Segment said about a refused batch, trimmed to a size fit for a dead letter.
fn detail(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_trimmed_truncated_on_a_char_boundary_and_absent_when_blank() {
        assert_eq!(detail("  \n"), None);
        assert_eq!(detail(" bad ").as_deref(), Some("bad"));
        let long = "é".repeat(MAX_DETAIL_CHARS + 10);
        let cut = detail(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
