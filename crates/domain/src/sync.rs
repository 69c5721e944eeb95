//! The records a sync keeps: counts, runs and dead letters.

use serde::{Deserialize, Serialize};

use crate::delivery::DeliveryError;

/// What a run did with the customers it read. `read` is the sum of the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Customers read from the source, malformed records included.
    pub read: u64,
    /// Delivered to Segment.
    pub sent: u64,
    /// Not sent because Segment already has this exact content.
    pub unchanged: u64,
    /// Not sent on purpose (no email, invalid email).
    pub skipped: u64,
    /// Refused: malformed record, oversize payload, or refused by Segment.
    pub rejected: u64,
    /// Not delivered this time (retries exhausted, Segment unreachable).
    pub failed: u64,
}

impl RunCounts {
    /// True when every customer was sent, unchanged or skipped.
    pub fn all_accounted_for(&self) -> bool {
        self.rejected == 0 && self.failed == 0
    }
}

/// Why a customer is in the dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterKind {
    /// Refused for good; replay only after the data is fixed.
    Rejected,
    /// Could not be delivered; replay sends it again.
    Failed,
}

impl DeadLetterKind {
    /// `rejected` or `failed`, as lists, JSON and the state show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that did not reach Segment, kept with enough to send it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The commercetools customer id, or the record position for a malformed record.
    pub customer_id: String,
    /// Rejected or failed.
    pub kind: DeadLetterKind,
    /// The contract's error code.
    pub code: String,
    /// The human-readable reason.
    pub reason: String,
    /// The identify message as it would be sent, when one could be built.
    pub payload: Option<String>,
    /// The content fingerprint of `payload`, hex.
    pub fingerprint: Option<String>,
    /// The customer version `payload` was built from, when one was built: a
    /// delivery of this version or a newer one makes the letter stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// How many times it was tried and ended here: once per run (`sync`,
    /// `dead-letters replay`) or webhook request, however many HTTP requests
    /// (retries) each made.
    pub attempts: u32,
    /// When it was last recorded, RFC 3339.
    pub recorded_at: String,
}

impl DeadLetter {
    /// The dead letter for a message that ended with a delivery error.
    pub fn from_error(
        customer_id: &str,
        kind: DeadLetterKind,
        error: &DeliveryError,
        payload: Option<String>,
        fingerprint: Option<String>,
        recorded_at: String,
    ) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            kind,
            code: error.code().to_owned(),
            reason: error.to_string(),
            payload,
            fingerprint,
            version: None,
            attempts: 1,
            recorded_at,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still going, or killed before it could say.
    Running,
    /// Every customer sent, unchanged or skipped.
    Succeeded,
    /// Finished with some rejected or failed.
    CompletedWithErrors,
    /// Stopped by a fatal error or an interrupt.
    Aborted,
    /// Its process died while it ran (killed, crashed, host lost); the next run
    /// that took over the state found it so.
    Abandoned,
}

impl RunStatus {
    /// The word lists, JSON and the state use: `running`, `succeeded`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::CompletedWithErrors => "completed_with_errors",
            Self::Aborted => "aborted",
            Self::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Sequential id.
    pub id: i64,
    /// `sync`, `replay`, or another command.
    pub kind: String,
    /// What it read: `api`, or the export's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Who ran it: `pid 1234 on host-a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339, once ended.
    pub finished_at: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// What it did.
    pub counts: RunCounts,
    /// The fatal error that stopped it, if one did.
    pub error: Option<String>,
}
