//! Turning stored rows into domain values and back.

use segment_sync_domain::sync::{DeadLetterKind, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::StateError;
use time::OffsetDateTime;

use crate::state_values as values;

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
    values::rfc3339(at).map_err(Failure::Invalid)
}

pub(super) fn now_rfc3339() -> Result<String, Failure> {
    values::now_rfc3339().map_err(Failure::Invalid)
}

pub(super) fn parse_rfc3339(text: &str, what: &str) -> Result<OffsetDateTime, Failure> {
    values::parse_rfc3339(text, what).map_err(Failure::Invalid)
}

pub(super) fn to_i64(n: u64, what: &str) -> Result<i64, Failure> {
    values::to_i64(n, what).map_err(Failure::Invalid)
}

pub(super) fn to_u64(n: i64, what: &str) -> Result<u64, Failure> {
    values::to_u64(n, what).map_err(Failure::Invalid)
}

pub(super) fn fingerprint(id: &str, hex: &str) -> Result<Fingerprint, Failure> {
    values::fingerprint(id, hex).map_err(Failure::Invalid)
}

pub(super) fn status_from_text(text: &str) -> Result<RunStatus, Failure> {
    values::run_status(text).map_err(Failure::Invalid)
}

pub(super) fn kind_from_text(text: &str) -> Result<DeadLetterKind, Failure> {
    values::dead_letter_kind(text).map_err(Failure::Invalid)
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
    fn placeholders_are_one_per_id() {
        assert_eq!(placeholders(1), "(?)");
        assert_eq!(placeholders(500).matches('?').count(), 500);
    }
}
