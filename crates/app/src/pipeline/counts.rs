//! Counters that move while a run goes on.

use std::sync::atomic::{AtomicU64, Ordering};

use segment_sync_domain::sync::RunCounts;
use segment_sync_domain::{DeliveryError, Outcome};

/// What a run did so far, for the progress display and the final summary.
#[derive(Debug, Default)]
pub struct LiveCounts {
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

    pub(super) fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a message's outcome.
    pub(super) fn outcome(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Delivered => &self.sent,
            Outcome::Rejected(_) => &self.rejected,
            Outcome::Failed(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// True for the outcome that voids a whole run: Segment refused the write key.
pub(super) fn is_fatal(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Failed(DeliveryError::Unauthorized))
}
