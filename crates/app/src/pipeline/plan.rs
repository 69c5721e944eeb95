//! Which customers a sync reads, and whether it may move the high-water mark.

use std::time::Duration;

use segment_sync_ports::CustomerQuery;
use time::OffsetDateTime;

/// Changes committed just before a run started may become visible to queries a
/// little later; an incremental run looks back this much before the mark.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What the command line asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// `--full`: every customer, even those Segment already has.
    pub full: bool,
    /// `--since`: the customers modified at or after this instant.
    pub since: Option<OffsetDateTime>,
}

/// What a run will read and what it may conclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Which customers to read.
    pub query: CustomerQuery,
    /// Whether a run that leaves nothing failed may move the high-water mark to
    /// its start: only when it covered every change since the old mark.
    pub moves_mark: bool,
}

impl Plan {
    /// The plan for `request`, given the current `mark`, whether the source is the
    /// shop's live data (an export may be older than the last run: it is read
    /// whole, the fingerprints decide, and it never moves the mark), and whether
    /// the identify rules changed since the last run (then every customer is read
    /// and compared, so that each profile the change affects is sent once).
    pub fn new(
        request: Request,
        mark: Option<OffsetDateTime>,
        tracks_changes: bool,
        rules_changed: bool,
    ) -> Self {
        let query = match (request.full, request.since, mark) {
            (true, _, _) => CustomerQuery::All,
            (false, None, _) if rules_changed => CustomerQuery::All,
            (false, Some(since), _) => CustomerQuery::ChangedSince(since),
            (false, None, _) if !tracks_changes => CustomerQuery::All,
            (false, None, Some(mark)) => CustomerQuery::ChangedSince(mark - SAFETY_MARGIN),
            (false, None, None) => CustomerQuery::All,
        };
        let moves_mark = tracks_changes
            && match (query, mark) {
                (CustomerQuery::All, _) => true,
                (CustomerQuery::ChangedSince(from), Some(mark)) => from <= mark,
                (CustomerQuery::ChangedSince(_), None) => false,
            };
        Self { query, moves_mark }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const MARK: OffsetDateTime = datetime!(2024-05-01 12:00 UTC);

    #[test]
    fn a_first_run_reads_everything_and_may_move_the_mark() {
        let plan = Plan::new(Request::default(), None, true, false);
        assert_eq!(plan.query, CustomerQuery::All);
        assert!(plan.moves_mark);
    }

    #[test]
    fn an_incremental_run_looks_back_a_margin_before_the_mark() {
        let plan = Plan::new(Request::default(), Some(MARK), true, false);
        assert_eq!(
            plan.query,
            CustomerQuery::ChangedSince(MARK - SAFETY_MARGIN)
        );
        assert!(plan.moves_mark);
    }

    #[test]
    fn since_after_the_mark_leaves_a_gap_so_the_mark_stays() {
        let later = Request {
            since: Some(MARK + Duration::from_secs(60)),
            ..Request::default()
        };
        assert!(!Plan::new(later, Some(MARK), true, false).moves_mark);
        let earlier = Request {
            since: Some(MARK - Duration::from_secs(60)),
            ..Request::default()
        };
        assert!(Plan::new(earlier, Some(MARK), true, false).moves_mark);
        assert!(!Plan::new(earlier, None, true, false).moves_mark);
    }

    #[test]
    fn changed_rules_read_everything_and_still_move_the_mark() {
        let plan = Plan::new(Request::default(), Some(MARK), true, true);
        assert_eq!(plan.query, CustomerQuery::All);
        assert!(plan.moves_mark);
    }

    #[test]
    fn full_reads_everything() {
        let full = Request {
            full: true,
            ..Request::default()
        };
        assert_eq!(
            Plan::new(full, Some(MARK), true, false).query,
            CustomerQuery::All
        );
    }

    #[test]
    fn an_export_is_read_whole_and_never_moves_the_mark() {
        let plan = Plan::new(Request::default(), Some(MARK), false, false);
        assert_eq!(plan.query, CustomerQuery::All);
        assert!(!plan.moves_mark);
        let since = Request {
            since: Some(MARK),
            ..Request::default()
        };
        assert_eq!(
            Plan::new(since, Some(MARK), false, false).query,
            CustomerQuery::ChangedSince(MARK)
        );
        assert!(!Plan::new(since, Some(MARK), false, false).moves_mark);
    }
}
