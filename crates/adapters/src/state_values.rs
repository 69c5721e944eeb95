//! What both state stores write as text and read back — timestamps, run
//! statuses, dead-letter kinds, fingerprints, counts — so that a state moved from
//! one store to the other reads the same. Each error is a reason, for the store
//! to put in its `StateError`.

use segment_sync_domain::sync::{DeadLetterKind, RunStatus};
use segment_sync_domain::Fingerprint;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Every run status, for reading one back.
const RUN_STATUSES: [RunStatus; 5] = [
    RunStatus::Running,
    RunStatus::Succeeded,
    RunStatus::CompletedWithErrors,
    RunStatus::Aborted,
    RunStatus::Abandoned,
];

/// `at` as RFC 3339 in UTC.
pub(crate) fn rfc3339(at: OffsetDateTime) -> Result<String, String> {
    // UTC first: RFC 3339 cannot write an offset with seconds.
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| format!("cannot write timestamp {at}: {e}"))
}

/// Now, as RFC 3339 in UTC.
pub(crate) fn now_rfc3339() -> Result<String, String> {
    rfc3339(OffsetDateTime::now_utc())
}

/// A stored RFC 3339 timestamp; `what` names it in the error.
pub(crate) fn parse_rfc3339(text: &str, what: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("stored {what} {text:?} is not RFC 3339: {e}"))
}

/// A count to store.
pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64, String> {
    i64::try_from(n).map_err(|_| format!("{what} {n} is too large to store"))
}

/// A stored count.
pub(crate) fn to_u64(n: i64, what: &str) -> Result<u64, String> {
    u64::try_from(n).map_err(|_| format!("stored {what} {n} is negative"))
}

/// Customer `id`'s stored fingerprint.
pub(crate) fn fingerprint(id: &str, hex: &str) -> Result<Fingerprint, String> {
    Fingerprint::from_hex(hex)
        .ok_or_else(|| format!("customer {id} has a malformed fingerprint {hex:?}"))
}

/// A stored run status.
pub(crate) fn run_status(text: &str) -> Result<RunStatus, String> {
    RUN_STATUSES
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| format!("unknown run status {text:?}"))
}

/// A stored dead-letter kind.
pub(crate) fn dead_letter_kind(text: &str) -> Result<DeadLetterKind, String> {
    [DeadLetterKind::Rejected, DeadLetterKind::Failed]
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| format!("unknown dead letter kind {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_status_text_round_trips() {
        for status in RUN_STATUSES {
            assert_eq!(run_status(status.as_str()).unwrap(), status);
        }
        assert!(run_status("exploded").is_err());
    }

    #[test]
    fn dead_letter_kind_text_round_trips() {
        for kind in [DeadLetterKind::Rejected, DeadLetterKind::Failed] {
            assert_eq!(dead_letter_kind(kind.as_str()).unwrap(), kind);
        }
        assert!(dead_letter_kind("lost").is_err());
    }

    #[test]
    fn timestamps_are_written_in_utc_and_read_back_as_the_same_instant() {
        let at = time::macros::datetime!(2024-05-01 12:00:00.123 +02:00);
        let text = rfc3339(at).unwrap();
        assert_eq!(text, "2024-05-01T10:00:00.123Z");
        assert_eq!(parse_rfc3339(&text, "mark").unwrap(), at);
        assert!(parse_rfc3339("yesterday", "mark")
            .unwrap_err()
            .contains("mark"));
    }

    #[test]
    fn counts_out_of_range_are_refused() {
        assert_eq!(to_i64(7, "read count"), Ok(7));
        assert!(to_i64(u64::MAX, "read count").is_err());
        assert!(to_u64(-1, "read count").is_err());
    }
}
