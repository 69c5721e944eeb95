//! [`MemoryStateStore`]: the state store's documented rules over a few maps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{Delivered, StateError, SyncStateStore};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::watch;

use crate::DEADLINE;

/// A [`SyncStateStore`] in memory, with exactly the rules the port documents and
/// the SQLite store keeps:
///
/// - `record_delivered` upserts each customer's fingerprint and clears that
///   customer's dead letter;
/// - `add_dead_letters` upserts by customer id: a letter already held is replaced
///   and its attempts become the held attempts plus one, whatever the new copy
///   says (a first letter keeps its own attempts, at least 1);
/// - dead letters are listed oldest first by when each was last recorded (call
///   order, then slice order);
/// - runs get sequential ids from 1 and are listed newest first; finishing a run
///   that was never started is a [`StateError::Storage`];
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
    /// Counts writes, so that waiters wake on each one.
    writes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Held {
    delivered: HashMap<String, Fingerprint>,
    high_water_mark: Option<OffsetDateTime>,
    /// Dead letters by the sequence number of their last recording.
    dead_letters: BTreeMap<u64, DeadLetter>,
    /// The sequence number of each customer's dead letter.
    dead_letter_seq: HashMap<String, u64>,
    next_seq: u64,
    /// Runs in the order they were started; run `id` is at index `id - 1`.
    runs: Vec<RunRecord>,
}

impl Held {
    fn remove_dead_letter(&mut self, customer_id: &str) {
        if let Some(seq) = self.dead_letter_seq.remove(customer_id) {
            self.dead_letters.remove(&seq);
        }
    }
}

/// Everything a [`MemoryStateStore`] holds at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The fingerprint last delivered for each customer.
    pub delivered: HashMap<String, Fingerprint>,
    /// The high-water mark, if one was set.
    pub high_water_mark: Option<OffsetDateTime>,
    /// The dead letters, oldest first, as [`SyncStateStore::dead_letters`] lists them.
    pub dead_letters: Vec<DeadLetter>,
    /// Every run, in the order they were started (the port lists them the other
    /// way round).
    pub runs: Vec<RunRecord>,
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

    /// The fingerprint last delivered for this customer.
    pub fn fingerprint(&self, customer_id: &str) -> Option<Fingerprint> {
        self.held().delivered.get(customer_id).copied()
    }

    /// A copy of everything held, whether or not the store is failing.
    pub fn snapshot(&self) -> StateSnapshot {
        let held = self.held();
        StateSnapshot {
            delivered: held.delivered.clone(),
            high_water_mark: held.high_water_mark,
            dead_letters: held.dead_letters.values().cloned().collect(),
            runs: held.runs.clone(),
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

fn rfc3339(doing: &str, at: OffsetDateTime) -> Result<String, StateError> {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| StateError::Storage(format!("{doing}: cannot write timestamp {at}: {e}")))
}

#[async_trait]
impl SyncStateStore for MemoryStateStore {
    async fn delivered_fingerprints(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, Fingerprint>, StateError> {
        self.check("reading delivered fingerprints")?;
        let held = self.held();
        Ok(customer_ids
            .iter()
            .filter_map(|id| held.delivered.get(id).map(|f| (id.clone(), *f)))
            .collect())
    }

    async fn record_delivered<'a>(&self, delivered: &[Delivered<'a>]) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("recording deliveries", |held| {
            for d in delivered {
                held.delivered
                    .insert(d.customer_id.to_owned(), d.fingerprint);
                held.remove_dead_letter(d.customer_id);
            }
            Ok(())
        })
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

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        self.wait_to_write().await;
        self.write("adding dead letters", |held| {
            for letter in letters {
                let attempts = match held.dead_letter_seq.get(&letter.customer_id) {
                    Some(seq) => held.dead_letters[seq].attempts.saturating_add(1),
                    None => letter.attempts.max(1),
                };
                held.remove_dead_letter(&letter.customer_id);
                held.next_seq += 1;
                let seq = held.next_seq;
                held.dead_letter_seq.insert(letter.customer_id.clone(), seq);
                held.dead_letters.insert(
                    seq,
                    DeadLetter {
                        attempts,
                        ..letter.clone()
                    },
                );
            }
            Ok(())
        })
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StateError> {
        self.check("listing dead letters")?;
        Ok(self.held().dead_letters.values().cloned().collect())
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

    async fn start_run(&self, kind: &str, started_at: OffsetDateTime) -> Result<i64, StateError> {
        let doing = "starting a run";
        let started_at = rfc3339(doing, started_at)?;
        self.wait_to_write().await;
        self.write(doing, |held| {
            let id = i64::try_from(held.runs.len() + 1)
                .map_err(|_| StateError::Storage(format!("{doing}: too many runs")))?;
            held.runs.push(RunRecord {
                id,
                kind: kind.to_owned(),
                started_at,
                finished_at: None,
                status: RunStatus::Running,
                counts: RunCounts::default(),
                error: None,
            });
            Ok(id)
        })
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
}
