//! One log line per customer a run did not send, naming the customer id and why
//! (never an email or other personal data): skipped at info, rejected and failed
//! at warn. The first `limit` of each kind are logged; the rest are counted and
//! reported in one line when the run ends, so a million skips cannot flood the log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// How many lines of each kind a run logs before it only counts.
pub const LOGGED_PER_KIND: u64 = 100;

/// The per-customer lines of one run.
#[derive(Debug)]
pub struct NotSentLog {
    limit: u64,
    skipped: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    segment_failing: AtomicBool,
    last_failure: Mutex<Option<String>>,
}

impl Default for NotSentLog {
    fn default() -> Self {
        Self::with_limit(LOGGED_PER_KIND)
    }
}

impl NotSentLog {
    /// Logs at most `limit` lines of each kind.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            limit,
            skipped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            segment_failing: AtomicBool::new(false),
            last_failure: Mutex::new(None),
        }
    }

    /// A customer not sent on purpose.
    pub fn skipped(&self, customer_id: &str, reason: &dyn std::fmt::Display) {
        if self.count(&self.skipped) {
            tracing::info!(customer_id, %reason, "customer skipped");
        }
    }

    /// A customer that can never be sent as it is.
    pub fn rejected(&self, customer_id: &str, reason: &dyn std::fmt::Display) {
        if self.count(&self.rejected) {
            tracing::warn!(customer_id, %reason, "customer rejected; it is in the dead letters");
        }
    }

    /// A customer Segment did not take this time. The first one also says, at
    /// once, that Segment is failing and why.
    pub fn failed(&self, customer_id: &str, reason: &dyn std::fmt::Display) {
        let reason = reason.to_string();
        if !self.segment_failing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                %reason,
                "Segment did not take a batch; the run goes on and what fails goes to the dead letters"
            );
        }
        if self.count(&self.failed) {
            tracing::warn!(customer_id, %reason, "customer not delivered; it is in the dead letters");
        }
        *self
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }

    /// The reason of the last failure, for the summary.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Says how many lines of each kind were left out.
    pub fn finish(&self) {
        for (kind, counter) in [
            ("skipped", &self.skipped),
            ("rejected", &self.rejected),
            ("failed", &self.failed),
        ] {
            let more = counter.load(Ordering::Relaxed).saturating_sub(self.limit);
            if more > 0 {
                tracing::info!(
                    kind,
                    more,
                    "{more} more customers {kind}, not logged one by one"
                );
            }
        }
    }

    /// Counts one; true while under the limit.
    fn count(&self, counter: &AtomicU64) -> bool {
        counter.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stop_at_the_limit_and_the_rest_are_counted() {
        let log = NotSentLog::with_limit(2);
        assert!(log.count(&log.skipped));
        assert!(log.count(&log.skipped));
        assert!(!log.count(&log.skipped));
        assert!(log.count(&log.failed), "each kind has its own limit");
        assert_eq!(log.skipped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_last_failure_is_kept_for_the_summary() {
        let log = NotSentLog::default();
        assert_eq!(log.last_failure(), None);
        log.failed("c1", &"Connection failed");
        log.failed("c2", &"Network timeout");
        assert_eq!(log.last_failure().as_deref(), Some("Network timeout"));
    }
}
