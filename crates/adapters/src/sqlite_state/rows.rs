//! Turning stored rows into domain values and back.

use segment_sync_domain::sync::{DeadLetterKind, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::StateError;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Why work on the connection failed, before it is told as a [`StateError`].
#[derive(Debug)]
pub(super) enum Failure {
    Sqlite(rusqlite::Error),
    /// The database holds something this code did not write, or a value it
    /// cannot store.
    Invalid(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

impl Failure {
    pub(super) fn into_state_error(self, doing: &str) -> StateError {
        match self {
            Self::Sqlite(e) => StateError::Storage(format!("{doing}: {e}")),
            Self::Invalid(reason) => StateError::Storage(format!("{doing}: {reason}")),
        }
    }
}

pub(super) fn rfc3339(at: OffsetDateTime) -> Result<String, Failure> {
    // UTC first: RFC 3339 cannot write an offset with seconds.
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| Failure::Invalid(format!("cannot write timestamp {at}: {e}")))
}

pub(super) fn now_rfc3339() -> Result<String, Failure> {
    rfc3339(OffsetDateTime::now_utc())
}

pub(super) fn parse_rfc3339(text: &str, what: &str) -> Result<OffsetDateTime, Failure> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| Failure::Invalid(format!("stored {what} {text:?} is not RFC 3339: {e}")))
}

pub(super) fn to_i64(n: u64, what: &str) -> Result<i64, Failure> {
    i64::try_from(n).map_err(|_| Failure::Invalid(format!("{what} {n} is too large to store")))
}

pub(super) fn to_u64(n: i64, what: &str) -> Result<u64, Failure> {
    u64::try_from(n).map_err(|_| Failure::Invalid(format!("stored {what} {n} is negative")))
}

pub(super) fn fingerprint(id: &str, hex: &str) -> Result<Fingerprint, Failure> {
    Fingerprint::from_hex(hex).ok_or_else(|| {
        Failure::Invalid(format!("customer {id} has a malformed fingerprint {hex:?}"))
    })
}

pub(super) fn status_from_text(text: &str) -> Result<RunStatus, Failure> {
    [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::CompletedWithErrors,
        RunStatus::Aborted,
        RunStatus::Abandoned,
    ]
    .into_iter()
    .find(|status| status.as_str() == text)
    .ok_or_else(|| Failure::Invalid(format!("unknown run status {text:?}")))
}

pub(super) fn kind_from_text(text: &str) -> Result<DeadLetterKind, Failure> {
    [DeadLetterKind::Rejected, DeadLetterKind::Failed]
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| Failure::Invalid(format!("unknown dead letter kind {text:?}")))
}

/// `… IN (?,?,…)` with one placeholder per id.
pub(super) fn placeholders(ids: usize) -> String {
    let mut sql = String::from("(");
    for i in 0..ids {
        sql.push_str(if i == 0 { "?" } else { ",?" });
    }
    sql.push(')');
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_status_text_round_trips() {
        for status in [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::CompletedWithErrors,
            RunStatus::Aborted,
            RunStatus::Abandoned,
        ] {
            assert_eq!(status_from_text(status.as_str()).unwrap(), status);
        }
        assert!(status_from_text("exploded").is_err());
    }

    #[test]
    fn dead_letter_kind_text_round_trips() {
        for kind in [DeadLetterKind::Rejected, DeadLetterKind::Failed] {
            assert_eq!(kind_from_text(kind.as_str()).unwrap(), kind);
        }
        assert!(kind_from_text("lost").is_err());
    }

    #[test]
    fn placeholders_are_one_per_id() {
        assert_eq!(placeholders(1), "(?)");
        assert_eq!(placeholders(500).matches('?').count(), 500);
    }
}
