//! [`MemoryStateStore`]: the state store's documented rules over a few maps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind, RunCounts, RunRecord, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{
    Claimed, DeadLetterCursor, DeletionRecord, DeletionsSent, Delivered, DeliveredRecord,
    DeliveredRow, Forgotten, RunLease, RunStart, Settlement, StateError, StoredDeadLetter, Subject,
    SyncStateStore, RUN_HOLDER_PREFIX,
};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::DEADLINE;

/// A [`SyncStateStore`] in memory, with exactly the rules the port documents and
/// the SQLite store keeps:
///
/// - `claim` reserves customers for a holder until its reservation expires (on
///   tokio's clock) or is released; another holder finds them busy;
/// - `settle` records a delivery only when no newer version is held, and then
///   clears that customer's dead letters of the same or older versions (and
///   those without a version); it releases the holder's claims;
/// - `add_dead_letters` upserts by customer id: a letter already held is replaced
///   and its attempts become the held attempts plus one, whatever the new copy
///   says (a first letter keeps its own attempts, at least 1);
/// - dead letters are listed oldest first by when each was last recorded (call
///   order, then slice order);
/// - runs get sequential ids from 1 and are listed newest first; finishing a run
///   that was never started is a [`StateError::Storage`]; one run at a time holds
///   the lease, and runs left running when a new one begins are abandoned;
/// - timestamps are kept as RFC 3339 in UTC, as SQLite keeps them.
///
/// It passes [`crate::contract::state`]. For tests it can also be made to fail
/// ([`MemoryStateStore::set_failing`]), be looked into without the async port
/// ([`MemoryStateStore::snapshot`], [`MemoryStateStore::fingerprint`]) and be
/// waited on ([`MemoryStateStore::wait_until`]).
#[derive(Debug)]
pub struct MemoryStateStore {
    held: Mutex<Held>,
    failing: AtomicBool,
    write_delay: Mutex<std::time::Duration>,
    /// Whether a run holds the lease.
    leased: Arc<AtomicBool>,
    /// Counts writes, so that waiters wake on each one.
    writes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Held {
    delivered: BTreeMap<String, DeliveredRow>,
    claims: HashMap<String, (String, Instant)>,
    high_water_mark: Option<OffsetDateTime>,
    rules_fingerprint: Option<String>,
    /// Dead letters by the sequence number of their last recording.
    dead_letters: BTreeMap<u64, DeadLetter>,
    /// The sequence number of each customer's dead letter.
    dead_letter_seq: HashMap<String, u64>,
    next_seq: u64,
    /// Runs in the order they were started; run `id` is at index `id - 1`.
    runs: Vec<RunRecord>,
    /// Deletions in the order they were queued; deletion `id` is at `id - 1`.
    deletions: Vec<DeletionRecord>,
}

impl Held {
    fn remove_dead_letter(&mut self, customer_id: &str) {
        if let Some(seq) = self.dead_letter_seq.remove(customer_id) {
            self.dead_letters.remove(&seq);
        }
    }

    /// Removes the customer's dead letter when it is of `version` or older.
    fn clear_dead_letter_up_to(&mut self, customer_id: &str, version: i64) {
        let stale = self
            .dead_letter_seq
            .get(customer_id)
            .and_then(|seq| self.dead_letters.get(seq))
            .is_some_and(|letter| letter.version.is_none_or(|v| v <= version));
        if stale {
            self.remove_dead_letter(customer_id);
        }
    }

    fn add_dead_letter(&mut self, letter: &DeadLetter) {
        let attempts = match self.dead_letter_seq.get(&letter.customer_id) {
            Some(seq) => self.dead_letters[seq].attempts.saturating_add(1),
            None => letter.attempts.max(1),
        };
        self.remove_dead_letter(&letter.customer_id);
        self.next_seq += 1;
        let seq = self.next_seq;
        self.dead_letter_seq.insert(letter.customer_id.clone(), seq);
        self.dead_letters.insert(
            seq,
            DeadLetter {
                attempts,
                ..letter.clone()
            },
        );
    }

    fn record(&mut self, row: DeliveredRow) -> bool {
        let newer_held = self
            .delivered
            .get(&row.customer_id)
            .is_some_and(|held| held.version > row.version);
        if newer_held {
            return false;
        }
        self.clear_dead_letter_up_to(&row.customer_id, row.version);
        self.delivered.insert(row.customer_id.clone(), row);
        true
    }

    /// Queues a deletion unless one of that type is queued; returns 1 if it did.
    fn queue_deletion(&mut self, subject: &str, regulation_type: &str, at: OffsetDateTime) -> u64 {
        let queued = self
            .deletions
            .iter()
            .any(|d| d.is_queued() && d.subject == subject && d.regulation_type == regulation_type);
        if queued {
            return 0;
        }
        self.push_deletion(DeletionRecord {
            id: 0,
            subject: subject.to_owned(),
            regulation_type: regulation_type.to_owned(),
            requested_at: at,
            regulation_id: None,
            sent_at: None,
            status: None,
        });
        1
    }

    fn push_deletion(&mut self, mut deletion: DeletionRecord) {
        deletion.id = i64::try_from(self.deletions.len() + 1).unwrap_or(i64::MAX);
        self.deletions.push(deletion);
    }

    fn forget(&mut self, subject: &Subject) -> Forgotten {
        let mut forgotten = Forgotten::default();
        match subject {
            Subject::CustomerId(id) => {
                if let Some(row) = self.delivered.remove(id) {
                    forgotten.customer_ids.push(id.clone());
                    forgotten.user_ids.push(row.user_id);
                }
                if self.dead_letter_seq.contains_key(id) {
                    self.remove_dead_letter(id);
                    forgotten.dead_letters = 1;
                    if forgotten.customer_ids.is_empty() {
                        forgotten.customer_ids.push(id.clone());
                    }
                }
            }
            Subject::UserId(user_id) => {
                let customers: Vec<String> = self
                    .delivered
                    .values()
                    .filter(|row| row.user_id == *user_id)
                    .map(|row| row.customer_id.clone())
                    .collect();
                for id in &customers {
                    self.delivered.remove(id);
                }
                if !customers.is_empty() {
                    forgotten.user_ids.push(user_id.clone());
                }
                let in_payload: Vec<String> = self
                    .dead_letters
                    .values()
                    .filter(|letter| payload_user_id(letter).as_deref() == Some(user_id.as_str()))
                    .map(|letter| letter.customer_id.clone())
                    .collect();
                forgotten.customer_ids = customers;
                for id in in_payload {
                    if !forgotten.customer_ids.contains(&id) {
                        forgotten.customer_ids.push(id);
                    }
                }
                for id in &forgotten.customer_ids {
                    if self.dead_letter_seq.contains_key(id) {
                        self.remove_dead_letter(id);
                        forgotten.dead_letters += 1;
                    }
                }
            }
        }
        forgotten.user_ids.retain(|user_id| !user_id.is_empty());
        forgotten
    }

    fn push_run(&mut self, doing: &str, mut run: RunRecord) -> Result<i64, StateError> {
        let id = i64::try_from(self.runs.len() + 1)
            .map_err(|_| StateError::Storage(format!("{doing}: too many runs")))?;
        run.id = id;
        self.runs.push(run);
        Ok(id)
    }
}

/// Everything a [`MemoryStateStore`] holds at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The last delivery of each customer, by customer id.
    pub delivered: BTreeMap<String, DeliveredRow>,
    /// The customers reserved, with their holders.
    pub claims: HashMap<String, String>,
    /// The high-water mark, if one was set.
    pub high_water_mark: Option<OffsetDateTime>,
    /// The fingerprint of the rules the last run used.
    pub rules_fingerprint: Option<String>,
    /// The dead letters, oldest first, as [`SyncStateStore::dead_letters`] lists them.
    pub dead_letters: Vec<DeadLetter>,
    /// Every run, in the order they were started (the port lists them the other
    /// way round).
    pub runs: Vec<RunRecord>,
    /// Every deletion, in the order they were queued.
    pub deletions: Vec<DeletionRecord>,
}

impl Default for MemoryStateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            held: Mutex::new(Held::default()),
            failing: AtomicBool::new(false),
            write_delay: Mutex::new(std::time::Duration::ZERO),
            leased: Arc::default(),
            writes: watch::Sender::new(0),
        }
    }

    /// Makes every write wait this long first (on tokio's clock, so a paused
    /// clock skips it): a database that is slow to commit.
    pub fn set_write_delay(&self, delay: std::time::Duration) {
        *self
            .write_delay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = delay;
    }

    async fn wait_to_write(&self) {
        let delay = *self
            .write_delay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// While `failing` is true every port call fails with a
    /// [`StateError::Storage`], as a broken disk would make it.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Records these customers as delivered (version 1, a fingerprint each)
    /// under their `userId`s, as a run that sent them would: `(customer id,
    /// userId)` pairs.
    pub async fn deliver_as(&self, deliveries: &[(String, String)]) {
        let delivered: Vec<Delivered<'_>> = deliveries
            .iter()
            .enumerate()
            .map(|(n, (customer_id, user_id))| Delivered {
                customer_id,
                version: 1,
                fingerprint: Fingerprint::from_hex(&format!("{:032x}", n + 1))
                    .expect("32 hex digits"),
                user_id,
            })
            .collect();
        self.settle(Settlement {
            delivered: &delivered,
            holder: "test",
            ..Settlement::default()
        })
        .await
        .expect("the in-memory state records deliveries");
    }

    /// The fingerprint last delivered for this customer.
    pub fn fingerprint(&self, customer_id: &str) -> Option<Fingerprint> {
        self.held()
            .delivered
            .get(customer_id)
            .map(|row| row.fingerprint)
    }

    /// A copy of everything held, whether or not the store is failing.
    pub fn snapshot(&self) -> StateSnapshot {
        let held = self.held();
        StateSnapshot {
            delivered: held.delivered.clone(),
            claims: held
                .claims
                .iter()
                .map(|(id, (holder, _))| (id.clone(), holder.clone()))
                .collect(),
            high_water_mark: held.high_water_mark,
            rules_fingerprint: held.rules_fingerprint.clone(),
            dead_letters: held.dead_letters.values().cloned().collect(),
            runs: held.runs.clone(),
            deletions: held.deletions.clone(),
        }
    }

    /// Waits until `probe` returns a value, trying it now and after every write;
    /// panics if that takes longer than [`DEADLINE`].
    pub async fn wait_until<T>(&self, mut probe: impl FnMut(&Self) -> Option<T>) -> T {
        // Subscribed before the first probe, so that no write between the probe
        // and the wait goes unnoticed.
        let mut writes = self.writes.subscribe();
        let waited = tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(value) = probe(self) {
                    return value;
                }
                if writes.changed().await.is_err() {
                    // Unreachable while `self` is borrowed: the sender lives in it.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            panic!("the state store did not reach the condition within {DEADLINE:?}")
        })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check(&self, doing: &str) -> Result<(), StateError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StateError::Storage(format!(
                "{doing}: disk I/O error (the memory store is set to fail)"
            )))
        } else {
            Ok(())
        }
    }

    /// Applies a write and wakes the waiters.
    fn write<T>(
        &self,
        doing: &str,
        change: impl FnOnce(&mut Held) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.check(doing)?;
        let result = change(&mut self.held());
        self.writes.send_modify(|n| *n += 1);
        result
    }
}

/// The `userId` of a dead letter's payload.
fn payload_user_id(letter: &DeadLetter) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_str(letter.payload.as_deref()?).ok()?;
    payload.get("userId")?.as_str().map(str::to_owned)
}

fn rfc3339(doing: &str, at: OffsetDateTime) -> Result<String, StateError> {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| StateError::Storage(format!("{doing}: cannot write timestamp {at}: {e}")))
}

#[async_trait]
impl SyncStateStore for MemoryStateStore {
    async fn claim(
        &self,
        customer_ids: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<Claimed, StateError> {
        self.wait_to_write().await;
        self.write("claiming customers", |held| {
            let now = Instant::now();
            let mut claimed = Claimed::default();
            for id in customer_ids {
                let free = held
                    .claims
                    .get(id)
                    .is_none_or(|(by, until)| by == holder || *until <= now);
                if !free {
                    claimed.busy.push(id.clone());
                    continue;
                }
                held.claims
                    .insert(id.clone(), (holder.to_owned(), now + ttl));
                let rejected = held
                    .dead_letter_seq
                    .get(id)
                    .and_then(|seq| held.dead_letters.get(seq))
                    .filter(|letter| letter.kind == DeadLetterKind::Rejected)
                    .and_then(|letter| letter.fingerprint.as_deref())
                    .and_then(Fingerprint::from_hex);
                if let Some(fingerprint) = rejected {
                    claimed.rejected.insert(id.clone(), fingerprint);
                }
                if let Some(row) = held.delivered.get(id) {
                    claimed.delivered.insert(
                        id.clone(),
                        DeliveredRecord {
                            version: row.version,
                            fingerprint: row.fingerprint,
                        },
                    );
                }
            }
            Ok(claimed)
        })
    }

    async fn settle<'a>(&self, settlement: Settlement<'a>) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("recording deliveries", |held| {
            for d in settlement.delivered {
                held.record(DeliveredRow {
                    customer_id: d.customer_id.to_owned(),
                    version: d.version,
                    fingerprint: d.fingerprint,
                    user_id: d.user_id.to_owned(),
                });
            }
            for letter in settlement.dead_letters {
                held.add_dead_letter(letter);
            }
            for id in settlement.release {
                if held
                    .claims
                    .get(id)
                    .is_some_and(|(by, _)| by == settlement.holder)
                {
                    held.claims.remove(id);
                }
            }
            Ok(())
        })
    }

    async fn delivered(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, DeliveredRecord>, StateError> {
        self.check("reading deliveries")?;
        let held = self.held();
        Ok(customer_ids
            .iter()
            .filter_map(|id| {
                held.delivered.get(id).map(|row| {
                    (
                        id.clone(),
                        DeliveredRecord {
                            version: row.version,
                            fingerprint: row.fingerprint,
                        },
                    )
                })
            })
            .collect())
    }

    async fn deliveries_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveredRow>, StateError> {
        self.check("listing deliveries")?;
        let held = self.held();
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(held
            .delivered
            .range((from, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(_, row)| row.clone())
            .collect())
    }

    async fn high_water_mark(&self) -> Result<Option<OffsetDateTime>, StateError> {
        self.check("reading the high-water mark")?;
        Ok(self.held().high_water_mark)
    }

    async fn set_high_water_mark(&self, at: OffsetDateTime) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("moving the high-water mark", |held| {
            held.high_water_mark = Some(at);
            Ok(())
        })
    }

    async fn rules_fingerprint(&self) -> Result<Option<String>, StateError> {
        self.check("reading the rules fingerprint")?;
        Ok(self.held().rules_fingerprint.clone())
    }

    async fn set_rules_fingerprint(&self, fingerprint: String) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("recording the rules fingerprint", |held| {
            held.rules_fingerprint = Some(fingerprint);
            Ok(())
        })
    }

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("adding dead letters", |held| {
            for letter in letters {
                held.add_dead_letter(letter);
            }
            Ok(())
        })
    }

    async fn dead_letters_after(
        &self,
        after: Option<DeadLetterCursor>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, StateError> {
        self.check("listing dead letters")?;
        let start = after.map_or(0, |cursor| u64::try_from(cursor.0).unwrap_or(0) + 1);
        Ok(self
            .held()
            .dead_letters
            .range(start..)
            .take(limit)
            .map(|(seq, letter)| StoredDeadLetter {
                cursor: DeadLetterCursor(i64::try_from(*seq).unwrap_or(i64::MAX)),
                letter: letter.clone(),
            })
            .collect())
    }

    async fn dead_letter_count(&self) -> Result<u64, StateError> {
        self.check("counting dead letters")?;
        Ok(self.held().dead_letters.len() as u64)
    }

    async fn purge_dead_letters(&self, before: OffsetDateTime) -> Result<u64, StateError> {
        self.wait_to_write().await;
        self.write("purging dead letters", |held| {
            let old: Vec<String> = held
                .dead_letters
                .values()
                .filter(|letter| {
                    OffsetDateTime::parse(&letter.recorded_at, &Rfc3339)
                        .is_ok_and(|recorded| recorded < before)
                })
                .map(|letter| letter.customer_id.clone())
                .collect();
            for id in &old {
                held.remove_dead_letter(id);
            }
            Ok(old.len() as u64)
        })
    }

    async fn remove_dead_letters(&self, customer_ids: &[String]) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("removing dead letters", |held| {
            let ids: HashSet<&String> = customer_ids.iter().collect();
            for id in ids {
                held.remove_dead_letter(id);
            }
            Ok(())
        })
    }

    async fn begin_run(&self, start: RunStart) -> Result<RunLease, StateError> {
        let doing = "starting a run";
        let started_at = rfc3339(doing, start.started_at)?;
        self.wait_to_write().await;
        if self
            .leased
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            let held = self.held();
            let running = held
                .runs
                .iter()
                .rev()
                .find(|run| run.status == RunStatus::Running);
            return Err(StateError::AnotherRun {
                id: running.map_or(0, |run| run.id),
                started_at: running.map_or_else(String::new, |run| run.started_at.clone()),
                holder: running
                    .and_then(|run| run.holder.clone())
                    .unwrap_or_default(),
            });
        }
        let lease = LeaseFlag(Arc::clone(&self.leased));
        let id = self.write(doing, |held| {
            let now = rfc3339(doing, OffsetDateTime::now_utc())?;
            for run in held
                .runs
                .iter_mut()
                .filter(|run| run.status == RunStatus::Running)
            {
                run.status = RunStatus::Abandoned;
                run.finished_at = Some(now.clone());
            }
            held.claims
                .retain(|_, (holder, _)| !holder.starts_with(RUN_HOLDER_PREFIX));
            held.push_run(
                doing,
                RunRecord {
                    id: 0,
                    kind: start.kind,
                    source: start.source,
                    holder: Some(start.holder),
                    started_at,
                    finished_at: None,
                    status: RunStatus::Running,
                    counts: RunCounts::default(),
                    error: None,
                },
            )
        })?;
        Ok(RunLease::new(id, lease))
    }

    async fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<String>,
    ) -> Result<(), StateError> {
        let doing = "finishing a run";
        let finished_at = rfc3339(doing, OffsetDateTime::now_utc())?;
        self.wait_to_write().await;
        self.write(doing, |held| {
            let run = usize::try_from(id)
                .ok()
                .and_then(|id| id.checked_sub(1))
                .and_then(|index| held.runs.get_mut(index))
                .ok_or_else(|| {
                    StateError::Storage(format!("{doing}: there is no run with id {id}"))
                })?;
            run.finished_at = Some(finished_at);
            run.status = status;
            run.counts = counts;
            run.error = error;
            Ok(())
        })
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.check("listing runs")?;
        Ok(self.held().runs.iter().rev().take(limit).cloned().collect())
    }

    async fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StateError> {
        let doing = "importing runs";
        self.wait_to_write().await;
        self.write(doing, |held| {
            let mut oldest_first: Vec<&RunRecord> = runs.iter().collect();
            oldest_first.sort_by_key(|run| run.id);
            for run in oldest_first {
                held.push_run(doing, run.clone())?;
            }
            Ok(())
        })
    }

    async fn forget<'a>(
        &self,
        subjects: &[Subject],
        regulation_type: Option<&'a str>,
        at: OffsetDateTime,
    ) -> Result<Vec<Forgotten>, StateError> {
        self.wait_to_write().await;
        self.write("forgetting customers", |held| {
            let mut answers = Vec::with_capacity(subjects.len());
            for subject in subjects {
                let mut forgotten = held.forget(subject);
                if let Some(kind) = regulation_type {
                    for user_id in &forgotten.user_ids {
                        forgotten.queued += held.queue_deletion(user_id, kind, at);
                    }
                }
                answers.push(forgotten);
            }
            Ok(answers)
        })
    }

    async fn queued_deletions(&self, limit: usize) -> Result<Vec<DeletionRecord>, StateError> {
        self.check("reading queued deletions")?;
        Ok(self
            .held()
            .deletions
            .iter()
            .filter(|d| d.is_queued())
            .take(limit)
            .cloned()
            .collect())
    }

    async fn deletions_sent<'a>(&self, sent: DeletionsSent<'a>) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("recording deletions sent", |held| {
            for deletion in &mut held.deletions {
                if deletion.is_queued() && sent.ids.contains(&deletion.id) {
                    deletion.regulation_id = sent.regulation_id.map(str::to_owned);
                    deletion.sent_at = Some(sent.at);
                    deletion.status = Some(sent.status.to_owned());
                }
            }
            Ok(())
        })
    }

    async fn set_regulation_status(
        &self,
        regulation_id: &str,
        status: &str,
    ) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("recording a regulation's status", |held| {
            for deletion in &mut held.deletions {
                if deletion.regulation_id.as_deref() == Some(regulation_id) {
                    deletion.status = Some(status.to_owned());
                }
            }
            Ok(())
        })
    }

    async fn deletions_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeletionRecord>, StateError> {
        self.check("listing deletions")?;
        let after = after.unwrap_or(i64::MIN);
        Ok(self
            .held()
            .deletions
            .iter()
            .filter(|d| d.id > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn regulated_since(&self, since: OffsetDateTime) -> Result<u64, StateError> {
        self.check("counting regulated users")?;
        Ok(self
            .held()
            .deletions
            .iter()
            .filter(|d| d.regulation_id.is_some() && d.sent_at.is_some_and(|at| at >= since))
            .count() as u64)
    }

    async fn import_deletions(&self, deletions: &[DeletionRecord]) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("importing deletions", |held| {
            for deletion in deletions {
                held.push_deletion(deletion.clone());
            }
            Ok(())
        })
    }
}

/// The lease of a run on a [`MemoryStateStore`]: released when dropped.
struct LeaseFlag(Arc<AtomicBool>);

impl Drop for LeaseFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
