//! When a failed request is tried again, and after how long.
//!
//! Plain data and arithmetic: no clock, no sleeping, no randomness of its own.
//! Adapters feed in what happened and a random number, and sleep as told.

use std::time::{Duration, SystemTime};

/// What ended an attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No answer within the request timeout.
    Timeout,
    /// The connection could not be made or broke.
    Connection,
    /// An HTTP answer with this status, and its `Retry-After` if any.
    Status {
        /// The HTTP status.
        status: u16,
        /// The parsed `Retry-After` header.
        retry_after: Option<Duration>,
    },
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop: the failure is final or the attempts or time budget are spent.
    GiveUp,
}

/// Which HTTP statuses a service's requests are retried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryableStatuses {
    /// Segment's Tracking API: 408, 410, 429, 460 and 5xx except 501 and 505.
    Segment,
    /// commercetools: 429, 502, 503 and 504.
    Commercetools,
    /// Segment's Public API: 429 and 5xx except 501 and 505; any other 4xx
    /// says the request itself is wrong.
    SegmentPublicApi,
}

impl RetryableStatuses {
    /// True when a request that got this status should be sent again.
    pub fn is_retryable(self, status: u16) -> bool {
        match self {
            Self::Segment => {
                matches!(status, 408 | 410 | 429 | 460)
                    || ((500..=599).contains(&status) && status != 501 && status != 505)
            }
            Self::Commercetools => matches!(status, 429 | 502 | 503 | 504),
            Self::SegmentPublicApi => {
                status == 429 || ((500..=599).contains(&status) && status != 501 && status != 505)
            }
        }
    }
}

/// Exponential backoff with jitter, a cap per wait, a cap on `Retry-After`,
/// a number of attempts and a total time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Which statuses are worth another attempt.
    pub statuses: RetryableStatuses,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt, before jitter.
    pub base_delay: Duration,
    /// The longest computed backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` that is honoured as given.
    pub max_retry_after: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub time_budget: Duration,
}

impl RetryPolicy {
    /// Segment's policy: 10 attempts, 100 ms doubling to 30 s, `Retry-After` up to
    /// 300 s, 10 minutes in all.
    pub fn segment() -> Self {
        Self {
            statuses: RetryableStatuses::Segment,
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            time_budget: Duration::from_secs(600),
        }
    }

    /// commercetools' policy: 6 attempts, 200 ms doubling to 30 s.
    pub fn commercetools() -> Self {
        Self {
            statuses: RetryableStatuses::Commercetools,
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            time_budget: Duration::from_secs(600),
        }
    }

    /// Segment's Public API (regulations): 6 attempts, 500 ms doubling to 30 s,
    /// `Retry-After` up to 300 s, 10 minutes in all.
    pub fn segment_public_api() -> Self {
        Self {
            statuses: RetryableStatuses::SegmentPublicApi,
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            time_budget: Duration::from_secs(600),
        }
    }

    /// Whether this failure is of a kind worth retrying at all.
    pub fn is_retryable(&self, failure: &AttemptFailure) -> bool {
        match failure {
            AttemptFailure::Timeout | AttemptFailure::Connection => true,
            AttemptFailure::Status { status, .. } => self.statuses.is_retryable(*status),
        }
    }

    /// The backoff before attempt `attempts_made + 1`, given a uniform random
    /// `unit` in `[0, 1)`: `base · 2^(attempts_made − 1)`, capped, then scaled into
    /// its upper half by the jitter so that waits never collapse to zero.
    pub fn backoff(&self, attempts_made: u32, unit: f64) -> Duration {
        let exponent = attempts_made.saturating_sub(1).min(30);
        let raw = self.base_delay.saturating_mul(1u32 << exponent);
        let capped = raw.min(self.max_delay);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        capped.mul_f64(0.5 + unit / 2.0)
    }

    /// What to do after `attempts_made` attempts, the last of which failed so,
    /// `elapsed` after the first began.
    pub fn decide(
        &self,
        attempts_made: u32,
        failure: &AttemptFailure,
        elapsed: Duration,
        unit: f64,
    ) -> RetryDecision {
        if !self.is_retryable(failure) || attempts_made >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let backoff = self.backoff(attempts_made, unit);
        let wait = match failure {
            AttemptFailure::Status {
                retry_after: Some(asked),
                ..
            } => (*asked).min(self.max_retry_after).max(backoff),
            _ => backoff,
        };
        if elapsed.saturating_add(wait) > self.time_budget {
            RetryDecision::GiveUp
        } else {
            RetryDecision::RetryAfter(wait)
        }
    }
}

/// Parses a `Retry-After` value: whole seconds, or an HTTP date measured from `now`
/// (a date in the past means no wait). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> AttemptFailure {
        AttemptFailure::Status {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn segment_retries_the_contract_statuses_only() {
        let policy = RetryPolicy::segment();
        for retried in [408, 410, 429, 460, 500, 502, 503, 504, 599] {
            assert!(policy.is_retryable(&status(retried)), "{retried}");
        }
        for final_status in [400, 401, 403, 404, 413, 501, 505] {
            assert!(
                !policy.is_retryable(&status(final_status)),
                "{final_status}"
            );
        }
        assert!(policy.is_retryable(&AttemptFailure::Timeout));
        assert!(policy.is_retryable(&AttemptFailure::Connection));
    }

    #[test]
    fn commercetools_retries_its_statuses_only() {
        let policy = RetryPolicy::commercetools();
        for retried in [429, 502, 503, 504] {
            assert!(policy.is_retryable(&status(retried)));
        }
        for final_status in [400, 401, 403, 404, 500, 501] {
            assert!(!policy.is_retryable(&status(final_status)));
        }
    }

    #[test]
    fn the_public_api_retries_rate_limits_and_server_errors_only() {
        let policy = RetryPolicy::segment_public_api();
        for retried in [429, 500, 502, 503, 504, 599] {
            assert!(policy.is_retryable(&status(retried)), "{retried}");
        }
        for final_status in [400, 401, 403, 404, 408, 410, 422, 501, 505] {
            assert!(
                !policy.is_retryable(&status(final_status)),
                "{final_status}"
            );
        }
        assert!(policy.is_retryable(&AttemptFailure::Timeout));
        assert_eq!(
            policy.decide(6, &status(503), Duration::ZERO, 0.5),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_into_its_upper_half() {
        let policy = RetryPolicy::segment();
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(policy.backoff(40, 1.0), Duration::from_secs(30));
        assert_eq!(policy.backoff(2, f64::NAN), Duration::from_millis(150));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let policy = RetryPolicy::segment();
        let asked = |secs| AttemptFailure::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            policy.decide(1, &asked(7), Duration::ZERO, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            policy.decide(1, &asked(10_000), Duration::ZERO, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(300))
        );
    }

    #[test]
    fn gives_up_on_final_statuses_attempts_and_budget() {
        let policy = RetryPolicy::segment();
        assert_eq!(
            policy.decide(1, &status(400), Duration::ZERO, 0.5),
            RetryDecision::GiveUp
        );
        assert_eq!(
            policy.decide(10, &status(500), Duration::ZERO, 0.5),
            RetryDecision::GiveUp
        );
        assert_eq!(
            policy.decide(2, &status(500), Duration::from_secs(600), 0.5),
            RetryDecision::GiveUp
        );
        assert!(matches!(
            policy.decide(9, &status(500), Duration::ZERO, 0.5),
            RetryDecision::RetryAfter(_)
        ));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
