//! Run history, and the lease that lets one run at a time hold the state.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use segment_sync_domain::sync::{RunCounts, RunRecord, RunStatus};
use segment_sync_ports::{RunStart, StateError, RUN_HOLDER_PREFIX};

use super::rows::{now_rfc3339, rfc3339, status_from_text, to_i64, to_u64, Failure};

/// What keeps a run's lease: a lock on a file beside the database, which the
/// operating system drops with the process however it ends; or, for a database
/// in memory, a flag of the store.
pub(super) enum Lease {
    File(File),
    Memory(Arc<AtomicBool>),
}

impl Drop for Lease {
    fn drop(&mut self) {
        match self {
            // Closing the file (right after this) releases the lock.
            Self::File(file) => {
                let _ = file.unlock();
            }
            Self::Memory(held) => held.store(false, Ordering::SeqCst),
        }
    }
}

/// Takes the lease of the database at `path` (`None`: in memory, with `flag`);
/// `Ok(None)` when another run holds it.
pub(super) fn take_lease(
    path: Option<&Path>,
    flag: &Arc<AtomicBool>,
) -> Result<Option<Lease>, StateError> {
    let Some(path) = path else {
        let free = flag
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        return Ok(free.then(|| Lease::Memory(Arc::clone(flag))));
    };
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StateError::Storage(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Lease::File(file))),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(StateError::Storage(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// `segment-sync.db.lock` beside `segment-sync.db`.
pub(super) fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

/// With the lease held: runs still marked running are abandoned (their process
/// is gone, or it would hold the lease), then the new run is recorded.
pub(super) fn begin(conn: &mut Connection, start: &RunStart) -> Result<i64, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_rfc3339()?;
    let abandoned = tx
        .prepare_cached("UPDATE runs SET status = ?1, finished_at = ?2 WHERE status = ?3")?
        .execute(params![
            RunStatus::Abandoned.as_str(),
            now,
            RunStatus::Running.as_str()
        ])?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "runs whose process died are marked abandoned");
    }
    tx.prepare_cached("DELETE FROM claims WHERE substr(holder, 1, ?2) = ?1")?
        .execute(params![RUN_HOLDER_PREFIX, RUN_HOLDER_PREFIX.len()])?;
    let id = tx
        .prepare_cached(
            "INSERT INTO runs (kind, started_at, status, source, holder)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )?
        .query_row(
            params![
                start.kind,
                rfc3339(start.started_at)?,
                RunStatus::Running.as_str(),
                start.source,
                start.holder
            ],
            |row| row.get(0),
        )?;
    tx.commit()?;
    Ok(id)
}

/// The run that holds the lease, as far as the history says.
pub(super) fn holding(conn: &mut Connection) -> Result<StateError, Failure> {
    let running: Option<(i64, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, started_at, holder FROM runs WHERE status = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([RunStatus::Running.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let (id, started_at, holder) = running.unwrap_or((0, "just now".to_owned(), None));
    Ok(StateError::AnotherRun {
        id,
        started_at,
        holder: holder.unwrap_or_else(|| "another process".to_owned()),
    })
}

pub(super) fn finish(
    conn: &mut Connection,
    id: i64,
    status: RunStatus,
    counts: RunCounts,
    error: Option<String>,
) -> Result<(), Failure> {
    let changed = conn
        .prepare_cached(
            "UPDATE runs SET finished_at = ?2, status = ?3, read = ?4, sent = ?5,
                 unchanged = ?6, skipped = ?7, rejected = ?8, failed = ?9, error = ?10
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            now_rfc3339()?,
            status.as_str(),
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
}

pub(super) fn list(conn: &mut Connection, limit: usize) -> Result<Vec<RunRecord>, Failure> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, started_at, finished_at, status,
                read, sent, unchanged, skipped, rejected, failed, error, source, holder
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
            source: row.get(12)?,
            holder: row.get(13)?,
        });
    }
    Ok(runs)
}

/// Appends runs as they were, oldest first, with ids of this database.
pub(super) fn import(conn: &mut Connection, runs: &[RunRecord]) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO runs (kind, started_at, finished_at, status, read, sent, unchanged,
                               skipped, rejected, failed, error, source, holder)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let mut oldest_first: Vec<&RunRecord> = runs.iter().collect();
        oldest_first.sort_by_key(|run| run.id);
        for run in oldest_first {
            let c = run.counts;
            insert.execute(params![
                run.kind,
                run.started_at,
                run.finished_at,
                run.status.as_str(),
                to_i64(c.read, "read count")?,
                to_i64(c.sent, "sent count")?,
                to_i64(c.unchanged, "unchanged count")?,
                to_i64(c.skipped, "skipped count")?,
                to_i64(c.rejected, "rejected count")?,
                to_i64(c.failed, "failed count")?,
                run.error,
                run.source,
                run.holder,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}
