use std::time::Duration;

use reqwest::Url;
use segment_sync_domain::batch::BatchLimits;
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_domain::WriteKey;

/// Segment's Tracking API in its default (US) region.
pub const DEFAULT_ENDPOINT: &str = "https://api.segment.io";

/// How [`HttpSegmentClient`](super::HttpSegmentClient) reaches Segment and how much
/// it may hold and send at once. Build it with [`SegmentConfig::new`] and change the
/// public fields that need other values than the defaults.
#[derive(Debug, Clone)]
pub struct SegmentConfig {
    /// Tracking API base URL; a trailing `/` or `/v1` is accepted.
    pub endpoint: String,
    /// The source's write key, sent as HTTP Basic user name.
    pub write_key: WriteKey,
    /// Messages accepted but not yet in a request; `identify` waits while this
    /// many are queued. At least 1.
    pub queue_capacity: usize,
    /// Batches sent (or waiting to be retried) at once. At least 1.
    pub max_in_flight: usize,
    /// The longest a partial batch waits for more messages before it is sent.
    pub flush_interval: Duration,
    /// One request's limit, from connecting to the end of the answer.
    pub request_timeout: Duration,
    /// Which failures are retried, how often and after how long.
    pub retry: RetryPolicy,
    /// Send bodies gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Segment's batch limits.
    pub limits: BatchLimits,
    /// Seed of the retry jitter; `None` seeds it at random. Tests fix it.
    pub jitter_seed: Option<u64>,
}

impl SegmentConfig {
    /// The defaults: 10,000 queued messages, 4 batches in flight, partial batches
    /// sent after 100 ms, 10 s per request, [`RetryPolicy::segment`], no gzip and
    /// Segment's own batch limits.
    pub fn new(endpoint: impl Into<String>, write_key: WriteKey) -> Self {
        Self {
            endpoint: endpoint.into(),
            write_key,
            queue_capacity: 10_000,
            max_in_flight: 4,
            flush_interval: Duration::from_millis(100),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::segment(),
            gzip: false,
            limits: BatchLimits::default(),
            jitter_seed: None,
        }
    }

    /// The URL batches are posted to: `{base}/v1/batch`, where the base is the
    /// endpoint without a trailing `/` or `/v1`.
    pub fn batch_url(&self) -> Result<Url, SegmentSetupError> {
        let invalid = |reason: &str| SegmentSetupError::InvalidEndpoint {
            endpoint: crate::without_credentials(&self.endpoint),
            reason: reason.to_owned(),
        };
        let trimmed = self.endpoint.trim().trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        let base = base.trim_end_matches('/');
        let url = Url::parse(&format!("{base}/v1/batch")).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        Ok(url)
    }
}

/// Why an [`HttpSegmentClient`](super::HttpSegmentClient) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SegmentSetupError {
    /// `SEGMENT_ENDPOINT` is not an http(s) base URL.
    #[error("invalid Segment endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured, without any credentials it held.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (TLS backend unavailable).
    #[error("cannot build the HTTP client for Segment: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The client starts a background task and so must be built inside a tokio runtime.
    #[error("the Segment client must be created inside a tokio runtime")]
    NoRuntime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(endpoint: &str) -> Result<String, SegmentSetupError> {
        let key = WriteKey::parse(Some("key")).unwrap();
        SegmentConfig::new(endpoint, key)
            .batch_url()
            .map(|url| url.to_string())
    }

    #[test]
    fn trailing_slash_and_v1_are_normalised_to_the_base() {
        for endpoint in [
            "https://api.segment.io",
            "https://api.segment.io/",
            "https://api.segment.io/v1",
            "https://api.segment.io/v1/",
            " https://api.segment.io// ",
        ] {
            assert_eq!(
                url_of(endpoint).unwrap(),
                "https://api.segment.io/v1/batch",
                "{endpoint}"
            );
        }
        assert_eq!(
            url_of("http://127.0.0.1:8080/proxy/v1").unwrap(),
            "http://127.0.0.1:8080/proxy/v1/batch"
        );
    }

    #[test]
    fn debug_output_never_shows_the_write_key() {
        let key = WriteKey::parse(Some("sekrit-write-key")).unwrap();
        let config = SegmentConfig::new(DEFAULT_ENDPOINT, key);
        let printed = format!("{config:?}");
        assert!(!printed.contains("sekrit"), "{printed}");
        assert!(printed.contains("api.segment.io"), "{printed}");
    }

    #[test]
    fn a_non_http_endpoint_is_refused_with_its_reason() {
        for endpoint in [
            "",
            "api.segment.io",
            "ftp://api.segment.io",
            "https://x/?a=b",
        ] {
            let err = url_of(endpoint).unwrap_err();
            assert!(
                matches!(err, SegmentSetupError::InvalidEndpoint { .. }),
                "{endpoint}: {err}"
            );
        }
    }
}
