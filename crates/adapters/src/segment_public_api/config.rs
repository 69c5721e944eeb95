use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use segment_sync_domain::retry::RetryPolicy;

/// Segment's Public API in its default (US) region; EU workspaces use
/// `https://eu1.api.segmentapis.com`.
pub const DEFAULT_PUBLIC_API_URL: &str = "https://api.segmentapis.com";

/// How [`SegmentPublicApi`](super::SegmentPublicApi) reaches Segment. Build it
/// with [`PublicApiConfig::new`] and change the public fields that need other
/// values than the defaults. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct PublicApiConfig {
    /// The Public API's base URL; a trailing `/` is accepted.
    pub base_url: String,
    /// The workspace's Public API token, sent as a Bearer token.
    pub token: SecretString,
    /// One request's limit, from connecting to the end of the answer.
    pub request_timeout: Duration,
    /// Which failures are retried, how often and after how long.
    pub retry: RetryPolicy,
    /// Seed of the retry jitter; `None` seeds it at random. Tests fix it.
    pub jitter_seed: Option<u64>,
}

impl PublicApiConfig {
    /// The defaults: 10 s per request (as the Tracking API client) and
    /// [`RetryPolicy::segment_public_api`].
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::segment_public_api(),
            jitter_seed: None,
        }
    }

    /// `{base}/regulations`, the collection every request addresses.
    pub fn regulations_url(&self) -> Result<Url, PublicApiSetupError> {
        let invalid = |reason: &str| PublicApiSetupError::InvalidUrl {
            url: crate::without_credentials(&self.base_url),
            reason: reason.to_owned(),
        };
        let base = self.base_url.trim().trim_end_matches('/');
        let url =
            Url::parse(&format!("{base}/regulations")).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        Ok(url)
    }
}

/// Why a [`SegmentPublicApi`](super::SegmentPublicApi) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PublicApiSetupError {
    /// `SEGMENT_PUBLIC_API_URL` is not an http(s) base URL.
    #[error("invalid Segment Public API URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured, without any credentials it held.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token cannot be sent in an HTTP header (a control character in it).
    #[error(
        "SEGMENT_PUBLIC_API_TOKEN cannot be sent in an HTTP header: it holds a control character"
    )]
    InvalidToken,
    /// The HTTP client could not be set up (TLS backend unavailable).
    #[error("cannot build the HTTP client for Segment's Public API: {0}")]
    HttpClient(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(base: &str) -> Result<String, PublicApiSetupError> {
        PublicApiConfig::new(base, SecretString::from("token"))
            .regulations_url()
            .map(|url| url.to_string())
    }

    #[test]
    fn a_trailing_slash_is_accepted_and_a_path_kept() {
        for base in [
            "https://api.segmentapis.com",
            "https://api.segmentapis.com/",
            " https://api.segmentapis.com// ",
        ] {
            assert_eq!(
                url_of(base).unwrap(),
                "https://api.segmentapis.com/regulations",
                "{base}"
            );
        }
        assert_eq!(
            url_of("http://127.0.0.1:9000/proxy").unwrap(),
            "http://127.0.0.1:9000/proxy/regulations"
        );
    }

    #[test]
    fn a_base_that_is_not_http_is_refused_with_its_reason() {
        for base in ["", "api.segmentapis.com", "ftp://x", "https://x/?a=b"] {
            let err = url_of(base).unwrap_err();
            assert!(
                matches!(err, PublicApiSetupError::InvalidUrl { .. }),
                "{base}: {err}"
            );
        }
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = PublicApiConfig::new(
            DEFAULT_PUBLIC_API_URL,
            SecretString::from("sekrit-public-api-token"),
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("sekrit"), "{printed}");
        assert!(printed.contains("api.segmentapis.com"), "{printed}");
    }
}
