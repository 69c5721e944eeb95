//! [`SyncStateStore`] on a SQLite file: what was delivered, the high-water mark,
//! dead letters and run history.
//!
//! The file is opened in WAL mode with `synchronous=NORMAL` and a busy timeout,
//! so that several processes (two webhook replicas, a sync and a `runs` listing)
//! can share it, and a commit costs no fsync. Writes go in one `IMMEDIATE`
//! transaction per call: a deferred transaction that later needs the write lock
//! fails at once with `SQLITE_BUSY` instead of waiting out the busy timeout.
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool with the one
//! connection behind a mutex.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OptionalExtension, TransactionBehavior,
};
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind, RunCounts, RunRecord, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{CheckLine, Delivered, SelfCheck, StateError, SyncStateStore};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Ids per `IN (...)` lookup: one page of customers, well under SQLite's
/// variable limit.
const LOOKUP_CHUNK: usize = 500;

/// The schema, one entry per version; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE delivered (
         customer_id TEXT PRIMARY KEY NOT NULL,
         fingerprint TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE meta (
         key TEXT PRIMARY KEY NOT NULL,
         value TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE dead_letters (
         customer_id TEXT PRIMARY KEY NOT NULL,
         kind TEXT NOT NULL,
         code TEXT NOT NULL,
         reason TEXT NOT NULL,
         payload TEXT,
         fingerprint TEXT,
         attempts INTEGER NOT NULL,
         recorded_at TEXT NOT NULL,
         seq INTEGER NOT NULL
     );
     CREATE INDEX dead_letters_by_seq ON dead_letters (seq);
     CREATE TABLE runs (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         kind TEXT NOT NULL,
         started_at TEXT NOT NULL,
         finished_at TEXT,
         status TEXT NOT NULL,
         read INTEGER NOT NULL DEFAULT 0,
         sent INTEGER NOT NULL DEFAULT 0,
         unchanged INTEGER NOT NULL DEFAULT 0,
         skipped INTEGER NOT NULL DEFAULT 0,
         rejected INTEGER NOT NULL DEFAULT 0,
         failed INTEGER NOT NULL DEFAULT 0,
         error TEXT
     );",
];

/// The schema version this build writes and understands.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const HIGH_WATER_MARK_KEY: &str = "high_water_mark";

/// The state store over one SQLite database file.
///
/// Cloning gives another handle on the same connection. Several stores, in one
/// process or several, may open the same file; each sees the others' commits.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    conn: Arc<Mutex<Connection>>,
    path: Arc<str>,
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
        let conn = Connection::open(path).map_err(|e| open_error(describe_open_error(&e)))?;
        Self::init(conn, label)
    }

    /// A private database in memory, for tests of other crates; it is gone when
    /// the last clone is dropped.
    pub fn open_in_memory() -> Result<Self, StateError> {
        let conn = Connection::open_in_memory().map_err(|e| StateError::Open {
            path: ":memory:".to_owned(),
            reason: e.to_string(),
        })?;
        Self::init(conn, ":memory:".to_owned())
    }

    /// The path it was opened with, as shown in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn init(mut conn: Connection, label: String) -> Result<Self, StateError> {
        configure(&mut conn).map_err(|e| StateError::Open {
            path: label.clone(),
            reason: e,
        })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: label.into(),
        })
    }

    /// Runs `work` on the blocking pool with the connection, translating its
    /// failure into a [`StateError::Storage`] that says what was being done.
    async fn with_conn<T, F>(&self, doing: &'static str, work: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
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

/// Pragmas and schema. The error is the reason for [`StateError::Open`].
fn configure(conn: &mut Connection) -> Result<(), String> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| describe_open_error(&e))?;
    // The journal mode is the first statement that reads the file, so a file that
    // is not a database fails here.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| describe_open_error(&e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| describe_open_error(&e))?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), String> {
    let version = user_version(conn).map_err(|e| describe_open_error(&e))?;
    check_version(version)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| describe_open_error(&e))?;
    // Another process may have migrated while this one waited for the lock.
    let version = user_version(&tx).map_err(|e| describe_open_error(&e))?;
    check_version(version)?;
    let pending = usize::try_from(version).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(pending) {
        tx.execute_batch(sql)
            .map_err(|e| format!("cannot create schema version {}: {e}", i + 1))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| describe_open_error(&e))?;
    tx.commit().map_err(|e| describe_open_error(&e))
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn check_version(version: i64) -> Result<(), String> {
    if version > SCHEMA_VERSION {
        return Err(format!(
            "it has schema version {version}, written by a newer segment-sync; \
             this build knows up to version {SCHEMA_VERSION}: upgrade segment-sync \
             or use another --state file"
        ));
    }
    if version < 0 {
        return Err(format!("it has an invalid schema version {version}"));
    }
    Ok(())
}

fn describe_open_error(error: &rusqlite::Error) -> String {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            format!("it is not a SQLite database ({error}); point --state at a segment-sync state file or a new path")
        }
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
            format!("it is not writable ({error})")
        }
        _ => error.to_string(),
    }
}

/// Why work on the connection failed, before it is told as a [`StateError`].
#[derive(Debug)]
enum Failure {
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
    fn into_state_error(self, doing: &str) -> StateError {
        match self {
            Self::Sqlite(e) => StateError::Storage(format!("{doing}: {e}")),
            Self::Invalid(reason) => StateError::Storage(format!("{doing}: {reason}")),
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> Result<String, Failure> {
    // UTC first: RFC 3339 cannot write an offset with seconds.
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| Failure::Invalid(format!("cannot write timestamp {at}: {e}")))
}

fn to_i64(n: u64, what: &str) -> Result<i64, Failure> {
    i64::try_from(n).map_err(|_| Failure::Invalid(format!("{what} {n} is too large to store")))
}

fn to_u64(n: i64, what: &str) -> Result<u64, Failure> {
    u64::try_from(n).map_err(|_| Failure::Invalid(format!("stored {what} {n} is negative")))
}

fn status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::CompletedWithErrors => "completed_with_errors",
        RunStatus::Aborted => "aborted",
    }
}

fn status_from_text(text: &str) -> Result<RunStatus, Failure> {
    Ok(match text {
        "running" => RunStatus::Running,
        "succeeded" => RunStatus::Succeeded,
        "completed_with_errors" => RunStatus::CompletedWithErrors,
        "aborted" => RunStatus::Aborted,
        other => return Err(Failure::Invalid(format!("unknown run status {other:?}"))),
    })
}

fn kind_text(kind: &DeadLetterKind) -> &'static str {
    match kind {
        DeadLetterKind::Rejected => "rejected",
        DeadLetterKind::Failed => "failed",
    }
}

fn kind_from_text(text: &str) -> Result<DeadLetterKind, Failure> {
    match text {
        "rejected" => Ok(DeadLetterKind::Rejected),
        "failed" => Ok(DeadLetterKind::Failed),
        other => Err(Failure::Invalid(format!(
            "unknown dead letter kind {other:?}"
        ))),
    }
}

fn lookup_sql(ids: usize) -> String {
    let mut sql =
        String::from("SELECT customer_id, fingerprint FROM delivered WHERE customer_id IN (");
    for i in 0..ids {
        sql.push_str(if i == 0 { "?" } else { ",?" });
    }
    sql.push(')');
    sql
}

#[async_trait]
impl SyncStateStore for SqliteStateStore {
    async fn delivered_fingerprints(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, Fingerprint>, StateError> {
        if customer_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = customer_ids.to_vec();
        self.with_conn("reading delivered fingerprints", move |conn| {
            let mut found = HashMap::with_capacity(ids.len());
            // One read transaction: one snapshot and one lock for every chunk.
            let tx = conn.transaction()?;
            for chunk in ids.chunks(LOOKUP_CHUNK) {
                let mut stmt = tx.prepare_cached(&lookup_sql(chunk.len()))?;
                let mut rows = stmt.query(params_from_iter(chunk))?;
                while let Some(row) = rows.next()? {
                    let id: String = row.get(0)?;
                    let hex = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                    let fingerprint = Fingerprint::from_hex(hex).ok_or_else(|| {
                        Failure::Invalid(format!(
                            "customer {id} has a malformed fingerprint {hex:?}"
                        ))
                    })?;
                    found.insert(id, fingerprint);
                }
            }
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    async fn record_delivered<'a>(&self, delivered: &[Delivered<'a>]) -> Result<(), StateError> {
        if delivered.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, String)> = delivered
            .iter()
            .map(|d| (d.customer_id.to_owned(), d.fingerprint.to_hex()))
            .collect();
        self.with_conn("recording deliveries", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO delivered (customer_id, fingerprint) VALUES (?1, ?2)
                     ON CONFLICT (customer_id) DO UPDATE SET fingerprint = excluded.fingerprint",
                )?;
                for (id, fingerprint) in &rows {
                    upsert.execute((id, fingerprint))?;
                }
                // Dead letters are usually none; skip a probe per customer then.
                let any_dead: bool = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM dead_letters)")?
                    .query_row([], |row| row.get(0))?;
                if any_dead {
                    let mut clear =
                        tx.prepare_cached("DELETE FROM dead_letters WHERE customer_id = ?1")?;
                    for (id, _) in &rows {
                        clear.execute([id])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn high_water_mark(&self) -> Result<Option<OffsetDateTime>, StateError> {
        self.with_conn("reading the high-water mark", |conn| {
            let stored: Option<String> = conn
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([HIGH_WATER_MARK_KEY], |row| row.get(0))
                .optional()?;
            stored
                .map(|text| {
                    OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| {
                        Failure::Invalid(format!(
                            "stored high-water mark {text:?} is not RFC 3339: {e}"
                        ))
                    })
                })
                .transpose()
        })
        .await
    }

    async fn set_high_water_mark(&self, at: OffsetDateTime) -> Result<(), StateError> {
        self.with_conn("moving the high-water mark", move |conn| {
            let text = rfc3339(at)?;
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute((HIGH_WATER_MARK_KEY, text))?;
            Ok(())
        })
        .await
    }

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        if letters.is_empty() {
            return Ok(());
        }
        let letters = letters.to_vec();
        self.with_conn("adding dead letters", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                // `seq` orders the list by when each letter was last recorded,
                // whatever format the caller's `recorded_at` has.
                let last_seq: i64 = tx
                    .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM dead_letters")?
                    .query_row([], |row| row.get(0))?;
                // A re-added letter counts one more attempt, whatever attempts the
                // caller's copy carries, so replaying a listed letter counts right.
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO dead_letters
                         (customer_id, kind, code, reason, payload, fingerprint, attempts, recorded_at, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (customer_id) DO UPDATE SET
                         kind = excluded.kind,
                         code = excluded.code,
                         reason = excluded.reason,
                         payload = excluded.payload,
                         fingerprint = excluded.fingerprint,
                         attempts = dead_letters.attempts + 1,
                         recorded_at = excluded.recorded_at,
                         seq = excluded.seq",
                )?;
                for (seq, letter) in (last_seq + 1..).zip(&letters) {
                    upsert.execute(params![
                        letter.customer_id,
                        kind_text(&letter.kind),
                        letter.code,
                        letter.reason,
                        letter.payload,
                        letter.fingerprint,
                        letter.attempts.max(1),
                        letter.recorded_at,
                        seq,
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StateError> {
        self.with_conn("listing dead letters", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT customer_id, kind, code, reason, payload, fingerprint, attempts, recorded_at
                 FROM dead_letters ORDER BY seq",
            )?;
            let mut rows = stmt.query([])?;
            let mut letters = Vec::new();
            while let Some(row) = rows.next()? {
                let kind: String = row.get(1)?;
                letters.push(DeadLetter {
                    customer_id: row.get(0)?,
                    kind: kind_from_text(&kind)?,
                    code: row.get(2)?,
                    reason: row.get(3)?,
                    payload: row.get(4)?,
                    fingerprint: row.get(5)?,
                    attempts: row.get(6)?,
                    recorded_at: row.get(7)?,
                });
            }
            Ok(letters)
        })
        .await
    }

    async fn remove_dead_letters(&self, customer_ids: &[String]) -> Result<(), StateError> {
        if customer_ids.is_empty() {
            return Ok(());
        }
        let ids = customer_ids.to_vec();
        self.with_conn("removing dead letters", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM dead_letters WHERE customer_id = ?1")?;
                for id in &ids {
                    delete.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn start_run(&self, kind: &str, started_at: OffsetDateTime) -> Result<i64, StateError> {
        let kind = kind.to_owned();
        self.with_conn("starting a run", move |conn| {
            let started_at = rfc3339(started_at)?;
            let id = conn
                .prepare_cached(
                    "INSERT INTO runs (kind, started_at, status) VALUES (?1, ?2, ?3) RETURNING id",
                )?
                .query_row((kind, started_at, status_text(RunStatus::Running)), |row| {
                    row.get(0)
                })?;
            Ok(id)
        })
        .await
    }

    async fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<String>,
    ) -> Result<(), StateError> {
        self.with_conn("finishing a run", move |conn| {
            let finished_at = rfc3339(OffsetDateTime::now_utc())?;
            let changed = conn
                .prepare_cached(
                    "UPDATE runs SET finished_at = ?2, status = ?3, read = ?4, sent = ?5,
                         unchanged = ?6, skipped = ?7, rejected = ?8, failed = ?9, error = ?10
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    finished_at,
                    status_text(status),
                    to_i64(counts.read, "read count")?,
                    to_i64(counts.sent, "sent count")?,
                    to_i64(counts.unchanged, "unchanged count")?,
                    to_i64(counts.skipped, "skipped count")?,
                    to_i64(counts.rejected, "rejected count")?,
                    to_i64(counts.failed, "failed count")?,
                    error,
                ])?;
            if changed == 0 {
                return Err(Failure::Invalid(format!("there is no run with id {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn("listing runs", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, started_at, finished_at, status,
                        read, sent, unchanged, skipped, rejected, failed, error
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )?;
            let mut rows = stmt.query([limit])?;
            let mut runs = Vec::new();
            while let Some(row) = rows.next()? {
                let status: String = row.get(4)?;
                runs.push(RunRecord {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    started_at: row.get(2)?,
                    finished_at: row.get(3)?,
                    status: status_from_text(&status)?,
                    counts: RunCounts {
                        read: to_u64(row.get(5)?, "read count")?,
                        sent: to_u64(row.get(6)?, "sent count")?,
                        unchanged: to_u64(row.get(7)?, "unchanged count")?,
                        skipped: to_u64(row.get(8)?, "skipped count")?,
                        rejected: to_u64(row.get(9)?, "rejected count")?,
                        failed: to_u64(row.get(10)?, "failed count")?,
                    },
                    error: row.get(11)?,
                });
            }
            Ok(runs)
        })
        .await
    }
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
        ] {
            assert_eq!(status_from_text(status_text(status)).unwrap(), status);
        }
        assert!(status_from_text("exploded").is_err());
    }

    #[test]
    fn dead_letter_kind_text_round_trips() {
        for kind in [DeadLetterKind::Rejected, DeadLetterKind::Failed] {
            assert_eq!(kind_from_text(kind_text(&kind)).unwrap(), kind);
        }
        assert!(kind_from_text("lost").is_err());
    }

    #[test]
    fn lookup_sql_has_one_placeholder_per_id() {
        assert!(lookup_sql(1).ends_with("IN (?)"));
        assert_eq!(lookup_sql(LOOKUP_CHUNK).matches('?').count(), LOOKUP_CHUNK);
    }

    #[test]
    fn newer_schema_versions_are_refused() {
        assert!(check_version(SCHEMA_VERSION).is_ok());
        let reason = check_version(SCHEMA_VERSION + 1).unwrap_err();
        assert!(reason.contains("newer segment-sync"), "{reason}");
    }
}
