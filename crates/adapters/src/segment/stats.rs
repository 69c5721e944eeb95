use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of what an [`HttpSegmentClient`](super::HttpSegmentClient) holds and
/// has done, for tests, progress and health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// Messages accepted and not yet in a request.
    pub queued: u64,
    /// The highest `queued` ever seen; never above `queue_capacity`.
    pub max_queued: u64,
    /// Messages in batches being sent or retried now.
    pub in_flight: u64,
    /// The highest `in_flight` ever seen; never above `max_in_flight` full batches.
    pub max_in_flight: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Requests that were retries of a failed one.
    pub retries: u64,
    /// Messages that ended delivered.
    pub delivered: u64,
    /// Messages that ended rejected.
    pub rejected: u64,
    /// Messages that ended failed.
    pub failed: u64,
}

impl SegmentStats {
    /// Messages that have their outcome.
    pub fn settled(&self) -> u64 {
        self.delivered + self.rejected + self.failed
    }
}

/// The live counters behind [`SegmentStats`]. Relaxed atomics: each counter is
/// exact on its own, a snapshot of several is not taken at one instant.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    queued: AtomicU64,
    max_queued: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Counters {
    pub(crate) fn enqueued(&self, count: u64) {
        let now = self.queued.fetch_add(count, Ordering::Relaxed) + count;
        self.max_queued.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self, count: u64) {
        self.queued.fetch_sub(count, Ordering::Relaxed);
    }

    pub(crate) fn sending(&self, count: u64) {
        let now = self.in_flight.fetch_add(count, Ordering::Relaxed) + count;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, count: u64) {
        self.in_flight.fetch_sub(count, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, count: u64) {
        counter.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SegmentStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SegmentStats {
            queued: get(&self.queued),
            max_queued: get(&self.max_queued),
            in_flight: get(&self.in_flight),
            max_in_flight: get(&self.max_in_flight),
            requests: get(&self.requests),
            retries: get(&self.retries),
            delivered: get(&self.delivered),
            rejected: get(&self.rejected),
            failed: get(&self.failed),
        }
    }
}
