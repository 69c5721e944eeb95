use std::collections::HashMap;

use async_trait::async_trait;
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_domain::Fingerprint;
use time::OffsetDateTime;

/// A delivery to remember: this customer's content, as fingerprinted, is in Segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered<'a> {
    /// The commercetools customer id.
    pub customer_id: &'a str,
    /// The fingerprint of what was delivered.
    pub fingerprint: Fingerprint,
}

/// Why the state store failed. Always fatal for the operation at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The database could not be opened or created.
    #[error("cannot open state database {path}: {reason}")]
    Open {
        /// Its path.
        path: String,
        /// The reason.
        reason: String,
    },
    /// A read or write failed.
    #[error("state database error: {0}")]
    Storage(String),
}

/// What a sync remembers between runs.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    /// The fingerprints last delivered for these customers; absent ids were never
    /// delivered.
    async fn delivered_fingerprints(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, Fingerprint>, StateError>;

    /// Records deliveries that Segment acknowledged, and clears their dead letters.
    async fn record_delivered<'a>(&self, delivered: &[Delivered<'a>]) -> Result<(), StateError>;

    /// The start of the last run that left nothing failed.
    async fn high_water_mark(&self) -> Result<Option<OffsetDateTime>, StateError>;

    /// Moves the high-water mark.
    async fn set_high_water_mark(&self, at: OffsetDateTime) -> Result<(), StateError>;

    /// Adds dead letters; one already held for the same customer is replaced and
    /// its attempts counted up.
    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError>;

    /// Every dead letter, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StateError>;

    /// Removes the dead letters of these customers.
    async fn remove_dead_letters(&self, customer_ids: &[String]) -> Result<(), StateError>;

    /// Starts a run of this kind and returns its id.
    async fn start_run(&self, kind: &str, started_at: OffsetDateTime) -> Result<i64, StateError>;

    /// Ends a run.
    async fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<String>,
    ) -> Result<(), StateError>;

    /// Run history, newest first, at most `limit` runs.
    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError>;
}
