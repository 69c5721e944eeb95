//! The commercetools HTTP client behind [`HttpCustomerSource`]: token, retries and
//! the mapping of answers onto [`SourceError`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use segment_sync_domain::retry::{AttemptFailure, RetryDecision, RetryPolicy};
use segment_sync_domain::walk::MAX_CONCURRENCY;
use segment_sync_domain::Customer;
use segment_sync_ports::{
    CustomerPages, CustomerQuery, CustomerSource, SourceCapabilities, SourceError,
};

use super::auth::{CachedToken, TokenCache, TokenErrorResponse, TokenResponse};
use super::pages::ApiPages;
use super::throttle::Throttle;
use super::{CommercetoolsConfig, CommercetoolsSetupError};
use crate::retry_after::retry_after;

/// The longest wait for a TCP/TLS connection, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an unexpected answer's body an error quotes.
const QUOTED_BODY_BYTES: usize = 200;

/// Reads customers from the commercetools HTTP API.
///
/// Cheap to clone; clones share the HTTP client and the cached token.
#[derive(Clone)]
pub struct HttpCustomerSource {
    pub(super) inner: Arc<Client>,
}

impl HttpCustomerSource {
    /// A source for this configuration, with jitter drawn from `fastrand`.
    pub fn new(config: CommercetoolsConfig) -> Result<Self, CommercetoolsSetupError> {
        Self::with_random(config, fastrand::f64)
    }

    /// The scopes the token grants, for `segment-sync check`; the token is the
    /// one later requests use (fetched now when none is cached).
    pub async fn granted_scopes(&self) -> Result<Vec<String>, SourceError> {
        Ok(self
            .inner
            .tokens
            .get_or_fetch(|| self.inner.fetch_token())
            .await?
            .scopes)
    }

    /// The scope a customer walk needs, and the broader ones that include it.
    pub fn sufficient_scopes(&self) -> [String; 3] {
        let key = &self.inner.project_key;
        [
            self.inner.required_scope(),
            format!("manage_customers:{key}"),
            format!("manage_project:{key}"),
        ]
    }

    /// The scope a customer walk needs.
    pub fn required_scope(&self) -> String {
        self.inner.required_scope()
    }

    /// A source whose retry jitter comes from `random`, which returns numbers in
    /// `[0, 1)`; tests pass a constant to make waits predictable.
    pub fn with_random(
        config: CommercetoolsConfig,
        random: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Result<Self, CommercetoolsSetupError> {
        let (token_url, customers_url) = config.urls()?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(concat!("segment-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CommercetoolsSetupError::HttpClient(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Client {
                http,
                token_url,
                customers_url,
                project_key: config.project_key,
                client_id: config.client_id,
                client_secret: config.client_secret,
                scopes: config.scopes,
                page_size: config.page_size,
                concurrency: config.concurrency,
                retry: config.retry,
                random: Box::new(random),
                tokens: TokenCache::default(),
            }),
        })
    }
}

impl fmt::Debug for HttpCustomerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCustomerSource")
            .field("customers_url", &self.inner.customers_url.as_str())
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CustomerSource for HttpCustomerSource {
    /// The live API: it filters by modification time and answers by id.
    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities {
            tracks_changes: true,
            by_id: true,
        }
    }

    async fn customers(&self, query: CustomerQuery) -> Result<Box<dyn CustomerPages>, SourceError> {
        Ok(Box::new(ApiPages::start(Arc::clone(&self.inner), query)))
    }

    async fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, SourceError> {
        // `/customers/` with no id is the query endpoint, whose answer is not a
        // customer; no customer has a blank id.
        if id.trim().is_empty() {
            return Ok(None);
        }
        let url = join(self.inner.customers_url.clone(), &[id]);
        let answer = self
            .inner
            .send("customer by id", |http| http.get(url.clone()))
            .await?;
        match answer.status {
            200 => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| SourceError::Protocol(format!("customer {id} is unreadable: {e}"))),
            404 => Ok(None),
            _ => Err(answer.unexpected("customer by id")),
        }
    }
}

/// What every request needs: the HTTP client, where to go, who to be.
pub(crate) struct Client {
    http: reqwest::Client,
    token_url: Url,
    pub(crate) customers_url: Url,
    project_key: String,
    client_id: String,
    client_secret: SecretString,
    scopes: Vec<String>,
    pub(crate) page_size: u32,
    /// Id ranges a walk reads at once, and so its most requests in flight.
    pub(crate) concurrency: u32,
    retry: RetryPolicy,
    random: Box<dyn Fn() -> f64 + Send + Sync>,
    tokens: TokenCache,
}

/// An HTTP answer, read whole, with the headers the client acts on.
pub(crate) struct Answer {
    pub(crate) status: u16,
    retry_after: Option<Duration>,
    www_authenticate: Option<String>,
    pub(crate) body: Bytes,
}

impl Answer {
    fn says_invalid_token(&self) -> bool {
        let needle = b"invalid_token";
        self.www_authenticate
            .as_deref()
            .is_some_and(|h| h.contains("invalid_token"))
            || self.body.windows(needle.len()).any(|w| w == needle)
    }

    /// A protocol error quoting the status and the start of the body.
    pub(crate) fn unexpected(&self, what: &str) -> SourceError {
        let end = self.body.len().min(QUOTED_BODY_BYTES);
        let quoted = String::from_utf8_lossy(&self.body[..end]);
        SourceError::Protocol(format!(
            "{what} answered {}: {}",
            self.status,
            quoted.trim()
        ))
    }
}

impl Client {
    /// Sends an authenticated request, retrying as the policy says and renewing
    /// the token once if the API calls it invalid. Answers with statuses the
    /// caller must interpret (2xx, 404, other 4xx/5xx) are returned as they are.
    pub(crate) async fn send<F>(&self, what: &str, build: F) -> Result<Answer, SourceError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        self.send_paced(what, None, build).await
    }

    /// [`Client::send`], each attempt waiting for its turn at `throttle` (when
    /// given) and telling it whether the API was overloaded.
    pub(crate) async fn send_paced<F>(
        &self,
        what: &str,
        throttle: Option<&Throttle>,
        build: F,
    ) -> Result<Answer, SourceError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let started = Instant::now();
        let mut attempts = 0;
        let mut renewed = false;
        loop {
            let token = self.token().await?;
            let slot = match throttle {
                Some(throttle) => Some(throttle.acquire().await),
                None => None,
            };
            attempts += 1;
            let request = build(&self.http).bearer_auth(token.expose_secret());
            let answered = attempt(request).await;
            if let (Some(slot), Ok(answer)) = (&slot, &answered) {
                if self.retry.statuses.is_retryable(answer.status) {
                    slot.overloaded(
                        answer
                            .retry_after
                            .map(|w| w.min(self.retry.max_retry_after)),
                    );
                } else if (200..300).contains(&answer.status) {
                    slot.succeeded();
                }
            }
            // The turn ends with the answer: a wait before the next attempt
            // holds no slot.
            drop(slot);
            let failure = match answered {
                Ok(answer) => match answer.status {
                    401 if !renewed && answer.says_invalid_token() => {
                        tracing::debug!(
                            what,
                            "commercetools token no longer valid; fetching a new one"
                        );
                        self.tokens.invalidate(&token).await;
                        renewed = true;
                        // Renewing the token is not a failed attempt of the request.
                        attempts -= 1;
                        continue;
                    }
                    401 => return Err(SourceError::CredentialsRejected),
                    403 => {
                        return Err(SourceError::MissingScope {
                            scope: self.required_scope(),
                        })
                    }
                    status if self.retry.statuses.is_retryable(status) => AttemptFailure::Status {
                        status,
                        retry_after: answer.retry_after,
                    },
                    _ => return Ok(answer),
                },
                Err(failure) => failure,
            };
            self.wait_or_give_up(what, attempts, failure, started)
                .await?;
        }
    }

    /// The scope that reading customers needs.
    fn required_scope(&self) -> String {
        format!("view_customers:{}", self.project_key)
    }

    async fn token(&self) -> Result<SecretString, SourceError> {
        Ok(self.tokens.get_or_fetch(|| self.fetch_token()).await?.value)
    }

    async fn fetch_token(&self) -> Result<CachedToken, SourceError> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if !self.scopes.is_empty() {
            form.push(("scope", self.scopes.join(" ")));
        }
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let request = self
                .http
                .post(self.token_url.clone())
                .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
                .form(&form);
            let failure = match attempt(request).await {
                Ok(answer) if answer.status == 200 => {
                    // The body holds the token: no parse error is quoted.
                    let token: TokenResponse =
                        serde_json::from_slice(&answer.body).map_err(|_| {
                            SourceError::Protocol(
                                "token endpoint answered 200 without a readable access token"
                                    .to_owned(),
                            )
                        })?;
                    let mut cached = CachedToken::new(
                        SecretString::from(token.access_token),
                        Duration::from_secs(token.expires_in),
                        Instant::now(),
                    );
                    cached.scopes = token.scope.split_whitespace().map(str::to_owned).collect();
                    return Ok(cached);
                }
                Ok(answer) if matches!(answer.status, 400 | 401) => {
                    let error: TokenErrorResponse =
                        serde_json::from_slice(&answer.body).unwrap_or_default();
                    return Err(if error.error == "invalid_scope" {
                        SourceError::MissingScope {
                            scope: if self.scopes.is_empty() {
                                self.required_scope()
                            } else {
                                self.scopes.join(" ")
                            },
                        }
                    } else {
                        SourceError::CredentialsRejected
                    });
                }
                Ok(answer) if self.retry.statuses.is_retryable(answer.status) => {
                    AttemptFailure::Status {
                        status: answer.status,
                        retry_after: answer.retry_after,
                    }
                }
                // Not quoted: a token endpoint's body is no place to copy into logs.
                Ok(answer) => {
                    return Err(SourceError::Protocol(format!(
                        "token endpoint answered {}",
                        segment_sync_domain::delivery::status_line(answer.status)
                    )))
                }
                Err(failure) => failure,
            };
            self.wait_or_give_up("token request", attempts, failure, started)
                .await?;
        }
    }

    async fn wait_or_give_up(
        &self,
        what: &str,
        attempts: u32,
        failure: AttemptFailure,
        started: Instant,
    ) -> Result<(), SourceError> {
        match self
            .retry
            .decide(attempts, &failure, started.elapsed(), (self.random)())
        {
            RetryDecision::RetryAfter(wait) => {
                tracing::warn!(
                    what,
                    attempts,
                    wait_ms = wait.as_millis() as u64,
                    failure = %describe(&failure),
                    "commercetools request failed; trying again"
                );
                tokio::time::sleep(wait).await;
                Ok(())
            }
            RetryDecision::GiveUp => Err(SourceError::Unavailable(format!(
                "{what}: {} after {attempts} attempt(s)",
                describe(&failure)
            ))),
        }
    }
}

/// One try: the whole answer, or why there was none.
async fn attempt(request: RequestBuilder) -> Result<Answer, AttemptFailure> {
    let response = request.send().await.map_err(|e| network_failure(&e))?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = retry_after(response.headers());
    let www_authenticate = header(WWW_AUTHENTICATE);
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| network_failure(&e))?;
    Ok(Answer {
        status,
        retry_after,
        www_authenticate,
        body,
    })
}

fn network_failure(error: &reqwest::Error) -> AttemptFailure {
    tracing::debug!(error = %error, "commercetools request failed without an answer");
    if error.is_timeout() {
        AttemptFailure::Timeout
    } else {
        AttemptFailure::Connection
    }
}

fn describe(failure: &AttemptFailure) -> String {
    match failure {
        AttemptFailure::Timeout => "network timeout".to_owned(),
        AttemptFailure::Connection => "connection failed".to_owned(),
        AttemptFailure::Status { status, .. } => format!("status {status}"),
    }
}

impl CommercetoolsConfig {
    /// Checks what can be checked without a request: the base URLs, the page
    /// size and the concurrency. [`HttpCustomerSource::new`] refuses the same configurations.
    pub fn validate(&self) -> Result<(), CommercetoolsSetupError> {
        self.urls().map(|_| ())
    }

    /// The token and customers URLs, once the configuration is known to be valid.
    fn urls(&self) -> Result<(Url, Url), CommercetoolsSetupError> {
        if !(1..=super::DEFAULT_PAGE_SIZE).contains(&self.page_size) {
            return Err(CommercetoolsSetupError::InvalidPageSize(self.page_size));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(CommercetoolsSetupError::InvalidConcurrency(
                self.concurrency,
            ));
        }
        let token_url = join(base_url("auth URL", &self.auth_url)?, &["oauth", "token"]);
        let customers_url = join(
            base_url("API URL", &self.api_url)?,
            &[self.project_key.as_str(), "customers"],
        );
        Ok((token_url, customers_url))
    }
}

fn base_url(name: &'static str, value: &str) -> Result<Url, CommercetoolsSetupError> {
    let invalid = |reason: String| CommercetoolsSetupError::InvalidUrl {
        name,
        value: crate::without_credentials(value),
        reason,
    };
    let mut url = Url::parse(value.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid("expected an http(s) URL".to_owned()));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// `base` with `segments` appended, each percent-encoded as one path segment.
fn join(mut base: Url, segments: &[&str]) -> Url {
    // Only fails for cannot-be-a-base URLs, which `base_url` refuses.
    if let Ok(mut path) = base.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_encodes_each_segment_and_tolerates_a_trailing_slash() {
        let base = base_url("API URL", "http://localhost:1234/").unwrap();
        let url = join(base, &["shop", "customers", "a/b c"]);
        assert_eq!(
            url.as_str(),
            "http://localhost:1234/shop/customers/a%2Fb%20c"
        );
    }

    #[test]
    fn base_url_refuses_what_is_not_http() {
        assert!(matches!(
            base_url("auth URL", "mailto:someone@example.com"),
            Err(CommercetoolsSetupError::InvalidUrl {
                name: "auth URL",
                ..
            })
        ));
        assert!(base_url("auth URL", "not a url").is_err());
    }
}
