//! [`SyncStateStore`] on a SQLite file: what was delivered (version, fingerprint,
//! `userId`), claims between processes, the high-water mark, dead letters and run
//! history.
//!
//! The file is opened in WAL mode with `synchronous=NORMAL` and a busy timeout,
//! so that several processes on one host (webhook replicas, a sync, a `runs`
//! listing) can share it, and a commit costs no fsync. Writes go in one
//! `IMMEDIATE` transaction per call: a deferred transaction that later needs the
//! write lock fails at once with `SQLITE_BUSY` instead of waiting out the busy
//! timeout. One run at a time holds the state through a lock on a file beside
//! the database (`segment-sync.db.lock`), which the system releases whenever the
//! process ends.
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool with the one
//! connection behind a mutex; an async permit lets one call at a time wait for
//! it, so a busy database never ties up more than one blocking thread.

mod customers;
mod letters;
mod privacy;
mod rows;
mod runs;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_ports::{
    CheckLine, Claimed, DeadLetterCursor, DeletionRecord, DeletionsSent, DeliveredRecord,
    DeliveredRow, Forgotten, RunLease, RunStart, SelfCheck, Settlement, StateError,
    StoredDeadLetter, Subject, SyncStateStore,
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use self::customers::OwnedSettlement;
use self::rows::{parse_rfc3339, rfc3339, Failure};
use self::schema::{configure, describe_open_error};

const HIGH_WATER_MARK_KEY: &str = "high_water_mark";
const RULES_FINGERPRINT_KEY: &str = "rules_fingerprint";

/// The state store over one SQLite database file.
///
/// Cloning gives another handle on the same connection. Several stores, in one
/// process or several, may open the same file; each sees the others' commits.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    conn: Arc<Mutex<Connection>>,
    /// One call at a time waits for the connection.
    turn: Arc<Semaphore>,
    /// The file, or `None` in memory.
    file: Option<Arc<PathBuf>>,
    /// The lease of a database in memory.
    leased: Arc<AtomicBool>,
    path: Arc<str>,
}

/// The database holds customers' personal data: a new file is created readable
/// by its owner only (SQLite gives its `-wal` and `-shm` files the same mode), and
/// an existing one that others can read is named in a warning.
#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:04o}"),
                    "the state file can be read by other users and holds customers' personal \
                     data; make it private with chmod 600"
                );
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn private_file(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

impl SqliteStateStore {
    /// Opens the database at `path`, creating the file and its schema when
    /// missing and migrating an older schema.
    ///
    /// Fails with [`StateError::Open`], naming the path, when its directory does
    /// not exist, the path is a directory, the file is not a SQLite database, or
    /// it was written by a newer segment-sync.
    ///
    /// It blocks (it may wait out another process's lock while migrating): call
    /// it at start-up, or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let label = path.display().to_string();
        let open_error = |reason: String| StateError::Open {
            path: label.clone(),
            reason,
        };
        // SQLite says only "unable to open database file" for both; say which.
        if path.is_dir() {
            return Err(open_error("it is a directory, not a file".to_owned()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(open_error(format!(
                    "directory {} does not exist",
                    parent.display()
                )));
            }
        }
        private_file(path).map_err(|e| open_error(e.to_string()))?;
        let conn = Connection::open(path).map_err(|e| open_error(describe_open_error(&e)))?;
        Self::init(conn, label, Some(path.to_path_buf()))
    }

    /// A private database in memory, for tests of other crates; it is gone when
    /// the last clone is dropped.
    pub fn open_in_memory() -> Result<Self, StateError> {
        let conn = Connection::open_in_memory().map_err(|e| StateError::Open {
            path: ":memory:".to_owned(),
            reason: e.to_string(),
        })?;
        Self::init(conn, ":memory:".to_owned(), None)
    }

    /// The path it was opened with, as shown in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn init(
        mut conn: Connection,
        label: String,
        file: Option<PathBuf>,
    ) -> Result<Self, StateError> {
        configure(&mut conn).map_err(|e| StateError::Open {
            path: label.clone(),
            reason: e,
        })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            turn: Arc::new(Semaphore::new(1)),
            file: file.map(Arc::new),
            leased: Arc::default(),
            path: label.into(),
        })
    }

    /// Runs `work` on the blocking pool with the connection, translating its
    /// failure into a [`StateError`] that says what was being done.
    async fn with_conn<T, F>(&self, doing: &'static str, work: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        // Waiting here is free; waiting for the mutex would park a blocking thread.
        let turn = Arc::clone(&self.turn)
            .acquire_owned()
            .await
            .map_err(|_| StateError::Storage(format!("{doing}: the store is closed")))?;
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut guard = conn.lock().map_err(|_| {
                StateError::Storage(format!(
                    "{doing}: the connection is unusable after an earlier operation panicked"
                ))
            })?;
            work(&mut guard).map_err(|failure| failure.into_state_error(doing))
        })
        .await;
        joined.unwrap_or_else(|e| Err(StateError::Storage(format!("{doing}: {e}"))))
    }

    async fn meta(
        &self,
        doing: &'static str,
        key: &'static str,
    ) -> Result<Option<String>, StateError> {
        self.with_conn(doing, move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn set_meta(
        &self,
        doing: &'static str,
        key: &'static str,
        value: String,
    ) -> Result<(), StateError> {
        self.with_conn(doing, move |conn| {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute((key, value))?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SelfCheck for SqliteStateStore {
    /// One line: the database takes a write (rolled back at once).
    async fn self_check(&self) -> Vec<CheckLine> {
        let what = format!("state database {} writable", self.path);
        let written = self
            .with_conn("checking the state is writable", |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('writable_check', 'ok')",
                    [],
                )?;
                tx.rollback()?;
                Ok(())
            })
            .await;
        vec![match written {
            Ok(()) => CheckLine::pass(what, ""),
            Err(error) => CheckLine::fail(
                what,
                format!("{error}; point --state or SEGMENT_SYNC_STATE at a writable file"),
            ),
        }]
    }
}

#[async_trait]
impl SyncStateStore for SqliteStateStore {
    async fn claim(
        &self,
        customer_ids: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<Claimed, StateError> {
        if customer_ids.is_empty() {
            return Ok(Claimed::default());
        }
        let ids = customer_ids.to_vec();
        let holder = holder.to_owned();
        self.with_conn("claiming customers", move |conn| {
            customers::claim(conn, &ids, &holder, ttl)
        })
        .await
    }

    async fn settle<'a>(&self, settlement: Settlement<'a>) -> Result<(), StateError> {
        let settlement = OwnedSettlement::of(&settlement);
        if settlement.is_empty() {
            return Ok(());
        }
        self.with_conn("recording deliveries", move |conn| {
            customers::settle(conn, &settlement)
        })
        .await
    }

    async fn delivered(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, DeliveredRecord>, StateError> {
        if customer_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = customer_ids.to_vec();
        self.with_conn("reading deliveries", move |conn| {
            customers::delivered(conn, &ids)
        })
        .await
    }

    async fn deliveries_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveredRow>, StateError> {
        self.with_conn("listing deliveries", move |conn| {
            customers::deliveries_after(conn, after.as_deref(), limit)
        })
        .await
    }

    async fn high_water_mark(&self) -> Result<Option<OffsetDateTime>, StateError> {
        let doing = "reading the high-water mark";
        self.meta(doing, HIGH_WATER_MARK_KEY)
            .await?
            .map(|text| {
                parse_rfc3339(&text, "high-water mark").map_err(|f| f.into_state_error(doing))
            })
            .transpose()
    }

    async fn set_high_water_mark(&self, at: OffsetDateTime) -> Result<(), StateError> {
        let doing = "moving the high-water mark";
        let text = rfc3339(at).map_err(|f| f.into_state_error(doing))?;
        self.set_meta(doing, HIGH_WATER_MARK_KEY, text).await
    }

    async fn rules_fingerprint(&self) -> Result<Option<String>, StateError> {
        self.meta("reading the rules fingerprint", RULES_FINGERPRINT_KEY)
            .await
    }

    async fn set_rules_fingerprint(&self, fingerprint: String) -> Result<(), StateError> {
        self.set_meta(
            "recording the rules fingerprint",
            RULES_FINGERPRINT_KEY,
            fingerprint,
        )
        .await
    }

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        if letters.is_empty() {
            return Ok(());
        }
        let letters = letters.to_vec();
        self.with_conn("adding dead letters", move |conn| {
            letters::add(conn, &letters)
        })
        .await
    }

    async fn dead_letters_after(
        &self,
        after: Option<DeadLetterCursor>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, StateError> {
        self.with_conn("listing dead letters", move |conn| {
            letters::page(conn, after, limit)
        })
        .await
    }

    async fn dead_letter_count(&self) -> Result<u64, StateError> {
        self.with_conn("counting dead letters", letters::count)
            .await
    }

    async fn purge_dead_letters(&self, before: OffsetDateTime) -> Result<u64, StateError> {
        self.with_conn("purging dead letters", move |conn| {
            letters::purge(conn, &rfc3339(before)?)
        })
        .await
    }

    async fn remove_dead_letters(&self, customer_ids: &[String]) -> Result<(), StateError> {
        if customer_ids.is_empty() {
            return Ok(());
        }
        let ids = customer_ids.to_vec();
        self.with_conn("removing dead letters", move |conn| {
            letters::remove(conn, &ids)
        })
        .await
    }

    async fn begin_run(&self, start: RunStart) -> Result<RunLease, StateError> {
        let file = self.file.clone();
        let leased = Arc::clone(&self.leased);
        let lease = tokio::task::spawn_blocking(move || {
            runs::take_lease(file.as_deref().map(PathBuf::as_path), &leased)
        })
        .await
        .map_err(|e| StateError::Storage(format!("taking the run lease: {e}")))??;
        let Some(lease) = lease else {
            return Err(self
                .with_conn("reading the run that holds the state", runs::holding)
                .await?);
        };
        let id = self
            .with_conn("starting a run", move |conn| runs::begin(conn, &start))
            .await?;
        Ok(RunLease::new(id, lease))
    }

    async fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<String>,
    ) -> Result<(), StateError> {
        self.with_conn("finishing a run", move |conn| {
            runs::finish(conn, id, status, counts, error)
        })
        .await
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.with_conn("listing runs", move |conn| runs::list(conn, limit))
            .await
    }

    async fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StateError> {
        if runs.is_empty() {
            return Ok(());
        }
        let runs = runs.to_vec();
        self.with_conn("importing runs", move |conn| runs::import(conn, &runs))
            .await
    }

    async fn forget<'a>(
        &self,
        subjects: &[Subject],
        regulation_type: Option<&'a str>,
        at: OffsetDateTime,
    ) -> Result<Vec<Forgotten>, StateError> {
        let subjects = subjects.to_vec();
        let regulation_type = regulation_type.map(str::to_owned);
        self.with_conn("forgetting customers", move |conn| {
            privacy::forget(conn, &subjects, regulation_type.as_deref(), &rfc3339(at)?)
        })
        .await
    }

    async fn queued_deletions(&self, limit: usize) -> Result<Vec<DeletionRecord>, StateError> {
        self.with_conn("reading queued deletions", move |conn| {
            privacy::queued(conn, limit)
        })
        .await
    }

    async fn deletions_sent<'a>(&self, sent: DeletionsSent<'a>) -> Result<(), StateError> {
        if sent.ids.is_empty() {
            return Ok(());
        }
        let doing = "recording deletions sent";
        let at = rfc3339(sent.at).map_err(|f| f.into_state_error(doing))?;
        let sent = privacy::OwnedDeletionsSent::of(&sent, at);
        self.with_conn(doing, move |conn| privacy::sent(conn, &sent))
            .await
    }

    async fn set_regulation_status(
        &self,
        regulation_id: &str,
        status: &str,
    ) -> Result<(), StateError> {
        let (regulation_id, status) = (regulation_id.to_owned(), status.to_owned());
        self.with_conn("recording a regulation's status", move |conn| {
            privacy::set_status(conn, &regulation_id, &status)
        })
        .await
    }

    async fn deletions_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeletionRecord>, StateError> {
        self.with_conn("listing deletions", move |conn| {
            privacy::after(conn, after, limit)
        })
        .await
    }

    async fn regulated_since(&self, since: OffsetDateTime) -> Result<u64, StateError> {
        self.with_conn("counting regulated users", move |conn| {
            privacy::regulated_since(conn, &rfc3339(since)?)
        })
        .await
    }

    async fn import_deletions(&self, deletions: &[DeletionRecord]) -> Result<(), StateError> {
        if deletions.is_empty() {
            return Ok(());
        }
        let deletions = deletions.to_vec();
        self.with_conn("importing deletions", move |conn| {
            privacy::import(conn, &deletions)
        })
        .await
    }
}
