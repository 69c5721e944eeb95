use std::fmt;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{RequestBuilder, Url};
use secrecy::ExposeSecret;
use segment_sync_domain::retry::{AttemptFailure, RetryDecision, RetryPolicy};
use segment_sync_ports::{CheckLine, RegulationClient, RegulationError, RegulationType, SelfCheck};
use serde_json::Value;

use super::config::{PublicApiConfig, PublicApiSetupError};
use crate::retry_after::retry_after;

/// The most of an error answer kept in [`RegulationError::Refused`].
const MAX_MESSAGE_CHARS: usize = 300;

/// Attempts of `check`'s probe: enough to ride out one hiccup, few enough that an
/// unreachable host is reported in seconds.
const CHECK_ATTEMPTS: u32 = 2;

/// The [`RegulationClient`] port over Segment's Public API.
///
/// One `reqwest::Client` with the configured timeouts; requests are retried by
/// the configured [`RetryPolicy`]. The first 401/403 latches: every later call
/// returns [`RegulationError::Unauthorized`] without a request.
pub struct SegmentPublicApi {
    http: reqwest::Client,
    regulations: Url,
    authorization: HeaderValue,
    retry: RetryPolicy,
    jitter: Mutex<fastrand::Rng>,
    /// The status of the first 401/403; 0 while the token was never refused.
    refused_with: AtomicU16,
}

impl fmt::Debug for SegmentPublicApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentPublicApi")
            .field("regulations", &self.regulations.as_str())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A 2xx answer: its status and body.
struct Accepted {
    status: u16,
    body: String,
}

impl SegmentPublicApi {
    /// Builds the client; no request is made.
    pub fn new(config: PublicApiConfig) -> Result<Self, PublicApiSetupError> {
        let regulations = config.regulations_url()?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", config.token.expose_secret().trim()))
                .map_err(|_| PublicApiSetupError::InvalidToken)?;
        // Keeps the header out of reqwest's and hyper's Debug output.
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .user_agent(concat!("segment-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(PublicApiSetupError::HttpClient)?;
        let jitter = config
            .jitter_seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Ok(Self {
            http,
            regulations,
            authorization,
            retry: config.retry,
            jitter: Mutex::new(jitter),
            refused_with: AtomicU16::new(0),
        })
    }

    /// The base URL requests go to (without `/regulations`).
    pub fn base_url(&self) -> &str {
        let url = self.regulations.as_str();
        url.strip_suffix("/regulations").unwrap_or(url)
    }

    /// One harmless, authenticated request (the first page of one regulation of
    /// the workspace), tried at most twice: `Ok` when Segment took the token.
    pub async fn probe(&self) -> Result<(), RegulationError> {
        let mut url = self.regulations.clone();
        url.query_pairs_mut().append_pair("pagination.count", "1");
        let policy = RetryPolicy {
            max_attempts: self.retry.max_attempts.min(CHECK_ATTEMPTS),
            ..self.retry
        };
        self.send(&policy, || self.http.get(url.clone()))
            .await
            .map(|_| ())
    }

    /// Sends a request (built anew for each attempt) until it is accepted, refused
    /// for good, or the policy gives up.
    async fn send(
        &self,
        policy: &RetryPolicy,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Accepted, RegulationError> {
        let started = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            if let Some(status) = self.refused() {
                return Err(RegulationError::Unauthorized { status });
            }
            attempts += 1;
            let sent = request()
                .header(AUTHORIZATION, self.authorization.clone())
                .header(ACCEPT, "application/json")
                .send()
                .await;
            let (failure, reason) = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = retry_after(response.headers());
                    let body = response.text().await.unwrap_or_default();
                    match status {
                        200..=299 => return Ok(Accepted { status, body }),
                        401 | 403 => {
                            if self
                                .refused_with
                                .compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire)
                                .is_ok()
                            {
                                tracing::warn!(
                                    status,
                                    "Segment refused the Public API token; no regulation will be sent"
                                );
                            }
                            return Err(RegulationError::Unauthorized { status });
                        }
                        _ if !policy.statuses.is_retryable(status) => {
                            return Err(RegulationError::Refused {
                                status,
                                message: message_of(&body),
                            })
                        }
                        _ => (
                            AttemptFailure::Status {
                                status,
                                retry_after,
                            },
                            format!("HTTP {status}"),
                        ),
                    }
                }
                Err(error) if error.is_timeout() => (AttemptFailure::Timeout, "timeout".to_owned()),
                Err(_) => (AttemptFailure::Connection, "connection failed".to_owned()),
            };
            let unit = self.jitter.lock().map(|mut rng| rng.f64()).unwrap_or(0.5);
            match policy.decide(attempts, &failure, started.elapsed(), unit) {
                RetryDecision::RetryAfter(wait) => {
                    tracing::debug!(
                        %reason,
                        attempts,
                        wait_ms = wait.as_millis() as u64,
                        "retrying a Public API request"
                    );
                    tokio::time::sleep(wait).await;
                }
                RetryDecision::GiveUp => {
                    return Err(RegulationError::Unavailable {
                        reason: format!(
                            "{reason} after {attempts} attempt{}",
                            if attempts == 1 { "" } else { "s" }
                        ),
                    })
                }
            }
        }
    }

    fn refused(&self) -> Option<u16> {
        match self.refused_with.load(Ordering::Acquire) {
            0 => None,
            status => Some(status),
        }
    }
}

#[async_trait]
impl RegulationClient for SegmentPublicApi {
    async fn regulate(
        &self,
        kind: RegulationType,
        subject_ids: &[String],
    ) -> Result<String, RegulationError> {
        RegulationError::check_count(subject_ids)?;
        let body = serde_json::json!({
            "regulationType": kind.as_api_str(),
            "subjectType": "USER_ID",
            "subjectIds": subject_ids,
        });
        let accepted = self
            .send(&self.retry, || {
                self.http.post(self.regulations.clone()).json(&body)
            })
            .await?;
        let id = read_json(&accepted.body)
            .and_then(|answer| answer["data"]["regulateId"].as_str().map(str::to_owned))
            .filter(|id| !id.is_empty());
        match id {
            Some(id) => {
                tracing::info!(
                    regulation = %id,
                    kind = kind.as_api_str(),
                    subjects = subject_ids.len(),
                    "Segment accepted a regulation"
                );
                Ok(id)
            }
            // Segment took the request: sending it again would regulate twice.
            None => Err(RegulationError::Refused {
                status: accepted.status,
                message: "the answer holds no data.regulateId".to_owned(),
            }),
        }
    }

    async fn status(&self, regulation_id: &str) -> Result<String, RegulationError> {
        let mut url = self.regulations.clone();
        url.path_segments_mut()
            .map_err(|()| RegulationError::Refused {
                status: 0,
                message: "the base URL cannot take a path".to_owned(),
            })?
            .push(regulation_id);
        let accepted = self
            .send(&self.retry, || self.http.get(url.clone()))
            .await?;
        read_json(&accepted.body)
            .and_then(|answer| {
                answer["data"]["regulation"]["overallStatus"]
                    .as_str()
                    .map(str::to_owned)
            })
            .filter(|status| !status.is_empty())
            .ok_or_else(|| RegulationError::Refused {
                status: accepted.status,
                message: "the answer holds no data.regulation.overallStatus".to_owned(),
            })
    }
}

#[async_trait]
impl SelfCheck for SegmentPublicApi {
    /// One line: the Public API answers and takes the token.
    async fn self_check(&self) -> Vec<CheckLine> {
        let what = format!("Segment Public API {} accepts the token", self.base_url());
        vec![match self.probe().await {
            Ok(()) => CheckLine::pass(what, "it listed the workspace's regulations"),
            Err(error @ RegulationError::Unauthorized { .. }) => CheckLine::fail(
                what,
                format!("{error}; create one under Settings › Workspace settings › Access Management › Tokens"),
            ),
            Err(error @ RegulationError::Unavailable { .. }) => CheckLine::fail(
                what,
                format!("{error}: check SEGMENT_PUBLIC_API_URL, DNS, proxies and outbound HTTPS from this host"),
            ),
            Err(error) => CheckLine::fail(
                what,
                format!("{error}: is SEGMENT_PUBLIC_API_URL the Public API (https://api.segmentapis.com, EU https://eu1.api.segmentapis.com)?"),
            ),
        }]
    }
}

fn read_json(body: &str) -> Option<Value> {
    serde_json::from_str(body).ok()
}

/// What Segment said about a refused request: the first `errors[].message` of
/// its JSON answer, else the answer's text, shortened.
fn message_of(body: &str) -> String {
    let said = read_json(body)
        .and_then(|answer| answer["errors"][0]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    if said.is_empty() {
        return "no detail given".to_owned();
    }
    match said.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &said[..cut]),
        None => said,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn the_message_is_segments_own_shortened_or_the_text() {
        assert_eq!(
            message_of(r#"{"errors":[{"type":"validation","message":"subjectIds is required"}]}"#),
            "subjectIds is required"
        );
        assert_eq!(message_of(" bad gateway \n"), "bad gateway");
        assert_eq!(message_of(""), "no detail given");
        let long = message_of(&"é".repeat(MAX_MESSAGE_CHARS + 5));
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let client = SegmentPublicApi::new(PublicApiConfig::new(
            "https://api.segmentapis.com/",
            SecretString::from("sekrit-public-api-token"),
        ))
        .unwrap();
        let printed = format!("{client:?}");
        assert!(!printed.contains("sekrit"), "{printed}");
        assert!(
            printed.contains("api.segmentapis.com/regulations"),
            "{printed}"
        );
        assert_eq!(client.base_url(), "https://api.segmentapis.com");
    }

    #[test]
    fn a_token_that_is_no_header_value_is_refused_at_set_up() {
        let refused = SegmentPublicApi::new(PublicApiConfig::new(
            "https://api.segmentapis.com",
            SecretString::from("tok\nen"),
        ));
        assert!(matches!(refused, Err(PublicApiSetupError::InvalidToken)));
    }
}
