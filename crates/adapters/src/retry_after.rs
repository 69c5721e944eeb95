//! The wait an HTTP answer asks for, read the same way by every client here.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use segment_sync_domain::retry::parse_retry_after;

/// The wait an answer's `Retry-After` asks for (seconds, or an HTTP date from
/// now); `None` without one, or with one that is not readable.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}
