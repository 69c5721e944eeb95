//! Counters that move while a run goes on.

use std::sync::atomic::{AtomicU64, Ordering};

use segment_sync_domain::sync::RunCounts;
use segment_sync_domain::{DeliveryError, Outcome};

use super::log::NotSentLog;

/// What a run did so far, for the progress display and the final summary; each
/// customer not sent is also logged, up to a limit of lines of each kind (the
/// rest are counted).
#[derive(Debug, Default)]
pub struct LiveCounts {
    log: NotSentLog,
    read: AtomicU64,
    sent: AtomicU64,
    unchanged: AtomicU64,
    skipped: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

impl LiveCounts {
    /// A consistent-enough copy for display and for the final summary.
    pub fn snapshot(&self) -> RunCounts {
        RunCounts {
            read: self.read.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    pub(super) fn read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    /// Records read but never handed over (an interrupt): the next run reads them.
    pub(super) fn unread(&self, n: u64) {
        self.read.fetch_sub(n, Ordering::Relaxed);
    }

    pub(super) fn unchanged(&self) {
        self.unchanged.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn skipped(&self, customer_id: &str, reason: &dyn std::fmt::Display) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.log.skipped(customer_id, reason);
    }

    pub(super) fn rejected(&self, customer_id: &str, reason: &dyn std::fmt::Display) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.log.rejected(customer_id, reason);
    }

    /// Dead letters that could not even be rebuilt for a replay.
    pub(super) fn unusable(&self, n: u64) {
        self.rejected.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts (and logs) a message's outcome.
    pub(super) fn outcome(&self, customer_id: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Delivered => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected(error) => self.rejected(customer_id, error),
            Outcome::Failed(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.log.failed(customer_id, error);
            }
        }
    }

    /// A customer another process kept for longer than the run would wait.
    pub(super) fn busy(&self, customer_id: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.log
            .failed(customer_id, &segment_sync_domain::DeliveryError::Busy);
    }

    /// The reason of the last failure, for the summary.
    pub fn last_failure(&self) -> Option<String> {
        self.log.last_failure()
    }

    /// Ends the per-customer lines with a count of those left out.
    pub(super) fn finish(&self) {
        self.log.finish();
    }
}

/// True for the outcome that voids a whole run: Segment refused the write key.
pub(super) fn is_fatal(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Failed(DeliveryError::Unauthorized))
}
