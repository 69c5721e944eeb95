use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_domain::Fingerprint;
use time::OffsetDateTime;

/// A delivery to remember: this version of the customer, as fingerprinted, is in
/// Segment under this `userId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered<'a> {
    /// The commercetools customer id.
    pub customer_id: &'a str,
    /// The customer's version the message was built from.
    pub version: i64,
    /// The fingerprint of what was delivered.
    pub fingerprint: Fingerprint,
    /// The Segment `userId` it was delivered as (what a deletion must name).
    pub user_id: &'a str,
}

/// What is remembered of a customer's last delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRecord {
    /// The customer's version that was delivered.
    pub version: i64,
    /// The fingerprint of what was delivered.
    pub fingerprint: Fingerprint,
}

/// A customer's last delivery as the state holds it, for moving the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRow {
    /// The commercetools customer id.
    pub customer_id: String,
    /// The version, fingerprint and `userId` delivered.
    pub version: i64,
    /// The fingerprint of what was delivered.
    pub fingerprint: Fingerprint,
    /// The Segment `userId` it was delivered as.
    pub user_id: String,
}

impl DeliveredRow {
    /// The same delivery, to record elsewhere.
    pub fn as_delivered(&self) -> Delivered<'_> {
        Delivered {
            customer_id: &self.customer_id,
            version: self.version,
            fingerprint: self.fingerprint,
            user_id: &self.user_id,
        }
    }
}

/// Customers reserved by one holder while it decides, sends and records them, so
/// that two processes never send one customer at the same time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// The last delivery of each customer reserved for the holder (absent: never
    /// delivered).
    pub delivered: HashMap<String, DeliveredRecord>,
    /// The customers another holder has reserved and not yet released.
    pub busy: Vec<String>,
    /// For customers reserved whose dead letter is a rejection with a known
    /// content fingerprint: that fingerprint. Segment refused that content; the
    /// same content need not be sent again.
    pub rejected: HashMap<String, Fingerprint>,
}

/// What a holder is done with, recorded in one go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settlement<'a> {
    /// Deliveries Segment acknowledged, and customers found unchanged (their
    /// current version, so that a newer version with the same content is
    /// remembered). Each is recorded only if no newer version is held, and then
    /// clears that customer's dead letters of the same or older versions.
    pub delivered: &'a [Delivered<'a>],
    /// Dead letters to add (replacing one held for the same customer).
    pub dead_letters: &'a [DeadLetter],
    /// Customers whose reservation by `holder` ends now.
    pub release: &'a [String],
    /// Who reserved them.
    pub holder: &'a str,
}

/// How a run names itself when it claims customers: `run #12`. One run at a time
/// holds the state, so when a run begins, every claim of a holder so named belongs
/// to a run that died, and [`SyncStateStore::begin_run`] releases it.
pub fn run_holder(run_id: i64) -> String {
    format!("{RUN_HOLDER_PREFIX}{run_id}")
}

/// The start of every run's holder name.
pub const RUN_HOLDER_PREFIX: &str = "run #";

/// What the process that starts a run says about itself, for the run history and
/// for the message a second run gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// `sync`, `replay`, …
    pub kind: String,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// What it reads: `api`, or the export's name.
    pub source: Option<String>,
    /// Who runs it: `pid 1234 on host-a`.
    pub holder: String,
}

/// A run that holds the state: no other run can start until it is dropped. Hold it
/// for the whole run and drop it after [`SyncStateStore::finish_run`].
pub struct RunLease {
    id: i64,
    _held: Box<dyn Send + Sync>,
}

impl RunLease {
    /// The lease on run `id`, kept by whatever `held` is (a file lock, a
    /// database session); dropping `held` ends it.
    pub fn new(id: i64, held: impl Send + Sync + 'static) -> Self {
        Self {
            id,
            _held: Box::new(held),
        }
    }

    /// The run's id in the history.
    pub fn id(&self) -> i64 {
        self.id
    }
}

impl std::fmt::Debug for RunLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLease").field("id", &self.id).finish()
    }
}

/// Where a dead letter stands in the list (oldest first), to read the list page by
/// page: pass the last one read to get the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadLetterCursor(pub i64);

/// A dead letter and its place in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Its place: the next page starts after it.
    pub cursor: DeadLetterCursor,
    /// The letter.
    pub letter: DeadLetter,
}

/// Whom to forget: a customer by its commercetools id, or every customer last
/// delivered under a Segment `userId` (an email, with `SEGMENT_SYNC_USER_ID=email`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A commercetools customer id.
    CustomerId(String),
    /// A Segment `userId`.
    UserId(String),
}

/// What forgetting one [`Subject`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// The customers whose delivery record or dead letters were erased.
    pub customer_ids: Vec<String>,
    /// The `userId`s Segment knows them by (from their last delivery).
    pub user_ids: Vec<String>,
    /// Dead letters erased.
    pub dead_letters: u64,
    /// Deletions queued for Segment (none when no regulation was asked, or the
    /// `userId` was already queued).
    pub queued: u64,
}

impl Forgotten {
    /// Whether the state knew nothing of the subject.
    pub fn is_empty(&self) -> bool {
        self.customer_ids.is_empty() && self.user_ids.is_empty() && self.dead_letters == 0
    }
}

/// A deletion asked of Segment: one `userId` in one regulation. It holds no other
/// personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRecord {
    /// Its id in this state (in the order deletions were queued).
    pub id: i64,
    /// The Segment `userId` to regulate.
    pub subject: String,
    /// The regulation type as Segment names it (`SUPPRESS_WITH_DELETE`, …).
    pub regulation_type: String,
    /// When it was queued.
    pub requested_at: OffsetDateTime,
    /// Segment's regulation id, once Segment accepted the request.
    pub regulation_id: Option<String>,
    /// When it was sent to Segment (accepted or refused); `None` while queued.
    pub sent_at: Option<OffsetDateTime>,
    /// The regulation's last known status (`INITIALIZED`, `FINISHED`, …), or why
    /// Segment refused the request; `None` while queued.
    pub status: Option<String>,
}

impl DeletionRecord {
    /// Whether it still waits to be sent to Segment.
    pub fn is_queued(&self) -> bool {
        self.sent_at.is_none()
    }
}

/// How a batch of queued deletions ended with Segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionsSent<'a> {
    /// The deletions (their [`DeletionRecord::id`]).
    pub ids: &'a [i64],
    /// Segment's regulation id, when it accepted them.
    pub regulation_id: Option<&'a str>,
    /// The regulation's status, or why Segment refused them.
    pub status: &'a str,
    /// When.
    pub at: OffsetDateTime,
}

/// Why the state store failed. Always fatal for the operation at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The database could not be opened or created.
    #[error("cannot open state database {path}: {reason}")]
    Open {
        /// Its path (or URL without credentials).
        path: String,
        /// The reason.
        reason: String,
    },
    /// A read or write failed.
    #[error("state database error: {0}")]
    Storage(String),
    /// Another run holds the state.
    #[error("another sync is running (run #{id}, started {started_at}, {holder})")]
    AnotherRun {
        /// Its id.
        id: i64,
        /// When it started, RFC 3339.
        started_at: String,
        /// Who runs it.
        holder: String,
    },
}

/// What a sync remembers between runs and shares between processes.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    /// Reserves these customers for `holder` for `ttl` (a reservation of another
    /// holder that has not expired is respected: those customers are `busy`), and
    /// returns the last delivery of each customer reserved. Reserving again what
    /// the holder already holds renews it.
    async fn claim(
        &self,
        customer_ids: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<Claimed, StateError>;

    /// Records what a holder is done with, in one transaction: see [`Settlement`].
    async fn settle<'a>(&self, settlement: Settlement<'a>) -> Result<(), StateError>;

    /// The last delivery of these customers, without reserving them.
    async fn delivered(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, DeliveredRecord>, StateError>;

    /// Every delivery held, in customer id order, `limit` at a time after the id
    /// `after` (for moving the state).
    async fn deliveries_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveredRow>, StateError>;

    /// The start of the last run that left nothing failed.
    async fn high_water_mark(&self) -> Result<Option<OffsetDateTime>, StateError>;

    /// Moves the high-water mark.
    async fn set_high_water_mark(&self, at: OffsetDateTime) -> Result<(), StateError>;

    /// The fingerprint of the identify rules (user id strategy and mapping) the
    /// last run used, hex.
    async fn rules_fingerprint(&self) -> Result<Option<String>, StateError>;

    /// Remembers the identify rules a run used.
    async fn set_rules_fingerprint(&self, fingerprint: String) -> Result<(), StateError>;

    /// Adds dead letters; one already held for the same customer is replaced and
    /// its attempts counted up. A new one keeps the attempts it carries.
    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError>;

    /// At most `limit` dead letters after `after` (from the start: `None`),
    /// oldest first: in the order each was last recorded.
    async fn dead_letters_after(
        &self,
        after: Option<DeadLetterCursor>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, StateError>;

    /// How many dead letters are held.
    async fn dead_letter_count(&self) -> Result<u64, StateError>;

    /// Every dead letter, oldest first, read page by page (for tests and small
    /// states; commands read pages).
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StateError> {
        let mut letters = Vec::new();
        let mut after = None;
        loop {
            let page = self.dead_letters_after(after, 1_000).await?;
            let Some(last) = page.last() else {
                return Ok(letters);
            };
            after = Some(last.cursor);
            letters.extend(page.into_iter().map(|stored| stored.letter));
        }
    }

    /// Removes the dead letters last recorded before `before`; returns how many.
    async fn purge_dead_letters(&self, before: OffsetDateTime) -> Result<u64, StateError>;

    /// Removes the dead letters of these customers.
    async fn remove_dead_letters(&self, customer_ids: &[String]) -> Result<(), StateError>;

    /// Starts a run, unless another run holds the state
    /// ([`StateError::AnotherRun`]). Runs still marked running whose process is
    /// gone are marked [`RunStatus::Abandoned`] first, and the claims of runs (see
    /// [`run_holder`]) are released.
    async fn begin_run(&self, start: RunStart) -> Result<RunLease, StateError>;

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

    /// Adds runs from another state as they were (for moving the state).
    async fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StateError>;

    /// Erases each subject in one transaction: the delivery record and dead
    /// letters of every customer it names (for a `userId`: every customer last
    /// delivered under it, and dead letters whose payload has it). With
    /// `regulation_type` (Segment's name, `SUPPRESS_WITH_DELETE`, …), queues a
    /// deletion of each `userId` found at `at`, unless one of that type is
    /// already queued, so that nothing is lost between here and Segment. One
    /// answer per subject, in order.
    async fn forget<'a>(
        &self,
        subjects: &[Subject],
        regulation_type: Option<&'a str>,
        at: OffsetDateTime,
    ) -> Result<Vec<Forgotten>, StateError>;

    /// At most `limit` deletions still queued, oldest first.
    async fn queued_deletions(&self, limit: usize) -> Result<Vec<DeletionRecord>, StateError>;

    /// Records how queued deletions ended with Segment: see [`DeletionsSent`].
    async fn deletions_sent<'a>(&self, sent: DeletionsSent<'a>) -> Result<(), StateError>;

    /// Updates the status of every deletion of a regulation.
    async fn set_regulation_status(
        &self,
        regulation_id: &str,
        status: &str,
    ) -> Result<(), StateError>;

    /// At most `limit` deletions after the id `after`, in id order.
    async fn deletions_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeletionRecord>, StateError>;

    /// How many `userId`s Segment accepted in regulations sent at or after
    /// `since` (Segment counts them per calendar month).
    async fn regulated_since(&self, since: OffsetDateTime) -> Result<u64, StateError>;

    /// Adds deletions from another state as they were, under new ids (for moving
    /// the state).
    async fn import_deletions(&self, deletions: &[DeletionRecord]) -> Result<(), StateError>;
}
