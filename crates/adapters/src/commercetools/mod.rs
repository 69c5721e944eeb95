//! [`CustomerSource`](segment_sync_ports::CustomerSource) over the commercetools
//! HTTP API.
//!
//! - OAuth2 client credentials against `{auth}/oauth/token`; the token is cached
//!   until shortly before it expires and fetched again once on a 401 `invalid_token`.
//! - Customers are walked with `sort=id asc` and an `id > "<last id>"` cursor in
//!   `where`, never `offset` (commercetools refuses offsets past 10,000). A walk
//!   splits the id space into [`CommercetoolsConfig::concurrency`] ranges
//!   ([`id_ranges`](segment_sync_domain::walk::id_ranges)), each with its own
//!   cursor; their pages are handed out as they come, at most one per range
//!   waiting or in flight.
//! - Retries follow [`RetryPolicy::commercetools`]; the adapter only sleeps. A
//!   walk's requests share one [`AdaptiveConcurrency`](segment_sync_domain::walk::AdaptiveConcurrency):
//!   overload statuses halve how many are in flight, and a `Retry-After` pauses
//!   them all. A by-id request is not paced.

mod auth;
mod check;
mod pages;
mod source;
mod throttle;

use std::time::Duration;

use secrecy::SecretString;
use segment_sync_domain::retry::RetryPolicy;

pub use source::HttpCustomerSource;

/// The most customers commercetools returns in one query page.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
pub use segment_sync_domain::walk::DEFAULT_CONCURRENCY;
/// How long one request may take, connection included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and as whom to read customers.
///
/// `Debug` shows everything but the client secret.
#[derive(Debug, Clone)]
pub struct CommercetoolsConfig {
    /// Authorization server base URL, e.g. `https://auth.europe-west1.gcp.commercetools.com`.
    pub auth_url: String,
    /// API base URL, e.g. `https://api.europe-west1.gcp.commercetools.com`.
    pub api_url: String,
    /// The project key.
    pub project_key: String,
    /// The API client's id.
    pub client_id: String,
    /// The API client's secret.
    pub client_secret: SecretString,
    /// Scopes to ask for; empty asks for the client's own scopes.
    pub scopes: Vec<String>,
    /// Customers per query page, at most 500.
    pub page_size: u32,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Id ranges a walk reads at once (1 to
    /// [`MAX_CONCURRENCY`](segment_sync_domain::walk::MAX_CONCURRENCY)): the
    /// most requests it has in flight, and the most pages it holds.
    pub concurrency: u32,
    /// When failed requests are tried again.
    pub retry: RetryPolicy,
}

impl CommercetoolsConfig {
    /// A configuration with the default page size, timeout, concurrency and
    /// retry policy.
    pub fn new(
        auth_url: impl Into<String>,
        api_url: impl Into<String>,
        project_key: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self {
            auth_url: auth_url.into(),
            api_url: api_url.into(),
            project_key: project_key.into(),
            client_id: client_id.into(),
            client_secret,
            scopes: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryPolicy::commercetools(),
        }
    }
}

/// The auth and API base URLs of a commercetools region such as
/// `europe-west1.gcp`: `(https://auth.{region}.commercetools.com,
/// https://api.{region}.commercetools.com)`.
///
/// Explicitly configured URLs take precedence; that choice is the app's.
pub fn region_urls(region: &str) -> (String, String) {
    let region = region.trim().trim_matches('.');
    (
        format!("https://auth.{region}.commercetools.com"),
        format!("https://api.{region}.commercetools.com"),
    )
}

/// Why an [`HttpCustomerSource`] could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommercetoolsSetupError {
    /// A base URL is not an absolute http(s) URL.
    #[error("{name} is not a valid base URL ({value}): {reason}")]
    InvalidUrl {
        /// Which setting: `auth URL` or `API URL`.
        name: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The page size is outside 1..=500.
    #[error("page size must be between 1 and 500, got {0}")]
    InvalidPageSize(u32),
    /// The concurrency is outside 1..=[`MAX_CONCURRENCY`](segment_sync_domain::walk::MAX_CONCURRENCY).
    #[error("concurrency must be between 1 and {max}, got {0}", max = segment_sync_domain::walk::MAX_CONCURRENCY)]
    InvalidConcurrency(u32),
    /// The HTTP client could not be built (TLS backend unavailable).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_urls_follow_the_commercetools_host_names() {
        assert_eq!(
            region_urls("europe-west1.gcp"),
            (
                "https://auth.europe-west1.gcp.commercetools.com".to_owned(),
                "https://api.europe-west1.gcp.commercetools.com".to_owned()
            )
        );
    }

    #[test]
    fn debug_never_shows_the_client_secret() {
        let config = CommercetoolsConfig::new(
            "https://auth.example",
            "https://api.example",
            "shop",
            "client-1",
            SecretString::from("super-secret-value"),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret-value"), "{shown}");
        assert!(shown.contains("client-1"));
    }
}
