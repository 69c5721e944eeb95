//! Run history, and the lease that lets one run at a time hold the state: a
//! session-level advisory lock, held by a connection taken out of the pool for
//! as long as the run's [`RunLease`](segment_sync_ports::RunLease) lives.
//!
//! The server releases a session's lock when the session ends, however it ends:
//! a process killed with `kill -9` loses its connection, and with it the lease;
//! a host that vanishes is noticed by the server's keepalives, which the lease's
//! session shortens to about a minute and a half.
//! A lease dropped in this process unlocks at once, on a task of its own, and a
//! run begun by this store after it waits for that to be done, so that
//! "drop the lease, begin the next run" never races.

use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use segment_sync_domain::sync::{RunCounts, RunRecord, RunStatus};
use segment_sync_ports::{RunStart, StateError, RUN_HOLDER_PREFIX};
use tokio::sync::watch;

use super::failure::Failure;
use crate::state_values::{self, now_rfc3339, rfc3339};

/// The advisory lock a run holds for its whole length (`SEGSYNC` and 2).
const RUN_LOCK: i64 = 0x5345_4753_594e_4302;

/// How long a run begun in this process waits for a lease dropped here to be
/// unlocked.
const UNLOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes the lock, and asks the server to notice within about a minute and a
/// half that the session's host is gone (its default is the system's, often two
/// hours), so that a run whose host vanished does not hold the lease that long.
const TRY_LOCK: &str = "
SELECT pg_try_advisory_lock($1),
       set_config('tcp_keepalives_idle', '60', false),
       set_config('tcp_keepalives_interval', '10', false),
       set_config('tcp_keepalives_count', '3', false)";

const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

/// With the lease held: runs still marked running are abandoned (their process
/// is gone, or it would hold the lease), claims of runs are released, and the
/// new run is recorded.
const BEGIN: &str = "
WITH abandoned AS (
    UPDATE runs SET status = $1, finished_at = $2 WHERE status = $3
    RETURNING id
), released AS (
    DELETE FROM claims WHERE left(holder, length($4)) = $4
    RETURNING customer_id
), begun AS (
    INSERT INTO runs (kind, started_at, status, source, holder)
    VALUES ($5, $6, $3, $7, $8)
    RETURNING id
)
SELECT (SELECT id FROM begun), (SELECT count(*) FROM abandoned)";

const HOLDING: &str = "
SELECT id, started_at, holder FROM runs WHERE status = $1 ORDER BY id DESC LIMIT 1";

const FINISH: &str = "
UPDATE runs SET finished_at = $2, status = $3, read = $4, sent = $5, unchanged = $6,
                skipped = $7, rejected = $8, failed = $9, error = $10
WHERE id = $1";

const LIST: &str = "
SELECT id, kind, started_at, finished_at, status, read, sent, unchanged, skipped,
       rejected, failed, error, source, holder
FROM runs ORDER BY id DESC LIMIT $1";

/// Appends runs as they were, in the order given, with ids of this database.
const IMPORT: &str = "
INSERT INTO runs (kind, started_at, finished_at, status, read, sent, unchanged,
                  skipped, rejected, failed, error, source, holder)
SELECT kind, started_at, finished_at, status, read, sent, unchanged, skipped,
       rejected, failed, error, source, holder
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
            $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[],
            $12::text[], $13::text[])
    WITH ORDINALITY
    AS r(kind, started_at, finished_at, status, read, sent, unchanged, skipped,
         rejected, failed, error, source, holder, ord)
ORDER BY ord";

/// Where the last lease this store gave out is: held, being unlocked, or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeasePhase {
    Held,
    Unlocking,
    Unlocked,
}

/// What a run's lease keeps: the session that holds the lock. Dropping it
/// unlocks and closes the session.
pub(super) struct Session {
    client: Option<ClientWrapper>,
    phase: watch::Sender<LeasePhase>,
}

impl Session {
    /// A session whose lock is held, and the watch on its phase.
    pub(super) fn held(client: ClientWrapper) -> (Self, watch::Receiver<LeasePhase>) {
        let (phase, watched) = watch::channel(LeasePhase::Held);
        let session = Self {
            client: Some(client),
            phase,
        };
        (session, watched)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        self.phase.send_replace(LeasePhase::Unlocking);
        let phase = self.phase.clone();
        let unlock = async move {
            // Whatever the answer, closing the session (dropping the client)
            // ends the lock too; unlocking first makes it immediate.
            if let Err(e) = client.execute(UNLOCK, &[&RUN_LOCK]).await {
                tracing::debug!(error = %e, "the run lease's session was already gone");
            }
            drop(client);
            phase.send_replace(LeasePhase::Unlocked);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(unlock);
            }
            // No runtime (the process is ending): the closed socket ends the
            // session, and the server releases the lock.
            Err(_) => {
                self.phase.send_replace(LeasePhase::Unlocked);
            }
        }
    }
}

/// Waits, for a while, until a lease of this store that was dropped is
/// unlocked.
pub(super) async fn unlocked(mut phase: watch::Receiver<LeasePhase>) {
    let done = phase.wait_for(|p| *p != LeasePhase::Unlocking);
    // An error means the session is gone, which unlocks too.
    let _ = tokio::time::timeout(UNLOCK_WAIT, done).await;
}

/// Takes the run lock on `client`'s session; `false` when another session has it.
pub(super) async fn try_lock(client: &ClientWrapper) -> Result<bool, Failure> {
    let statement = client.prepare_cached(TRY_LOCK).await?;
    Ok(client
        .query_one(&statement, &[&RUN_LOCK])
        .await?
        .try_get(0)?)
}

/// With the lock held, records the run (see [`BEGIN`]).
pub(super) async fn begin(client: &ClientWrapper, start: &RunStart) -> Result<i64, Failure> {
    let statement = client.prepare_cached(BEGIN).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &RunStatus::Abandoned.as_str(),
                &now_rfc3339()?,
                &RunStatus::Running.as_str(),
                &RUN_HOLDER_PREFIX,
                &start.kind,
                &rfc3339(start.started_at)?,
                &start.source,
                &start.holder,
            ],
        )
        .await?;
    let abandoned: i64 = row.try_get(1)?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "runs whose process died are marked abandoned");
    }
    Ok(row.try_get(0)?)
}

/// The run that holds the lease, as far as the history says.
pub(super) async fn holding(client: &ClientWrapper) -> Result<StateError, Failure> {
    let statement = client.prepare_cached(HOLDING).await?;
    let row = client
        .query_opt(&statement, &[&RunStatus::Running.as_str()])
        .await?;
    let (id, started_at, holder) = match row {
        Some(row) => (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
        None => (0, "just now".to_owned(), None),
    };
    Ok(StateError::AnotherRun {
        id,
        started_at,
        holder: holder.unwrap_or_else(|| "another process".to_owned()),
    })
}

pub(super) async fn finish(
    client: &ClientWrapper,
    id: i64,
    status: RunStatus,
    counts: RunCounts,
    error: Option<&str>,
) -> Result<(), Failure> {
    let statement = client.prepare_cached(FINISH).await?;
    let changed = client
        .execute(
            &statement,
            &[
                &id,
                &now_rfc3339()?,
                &status.as_str(),
                &state_values::to_i64(counts.read, "read count")?,
                &state_values::to_i64(counts.sent, "sent count")?,
                &state_values::to_i64(counts.unchanged, "unchanged count")?,
                &state_values::to_i64(counts.skipped, "skipped count")?,
                &state_values::to_i64(counts.rejected, "rejected count")?,
                &state_values::to_i64(counts.failed, "failed count")?,
                &error,
            ],
        )
        .await?;
    if changed == 0 {
        return Err(Failure::Invalid(format!("there is no run with id {id}")));
    }
    Ok(())
}

pub(super) async fn list(client: &ClientWrapper, limit: usize) -> Result<Vec<RunRecord>, Failure> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let statement = client.prepare_cached(LIST).await?;
    let rows = client.query(&statement, &[&limit]).await?;
    rows.into_iter()
        .map(|row| -> Result<RunRecord, Failure> {
            let count = |i: usize, what: &str| -> Result<u64, Failure> {
                Ok(state_values::to_u64(row.try_get(i)?, what)?)
            };
            Ok(RunRecord {
                id: row.try_get(0)?,
                kind: row.try_get(1)?,
                started_at: row.try_get(2)?,
                finished_at: row.try_get(3)?,
                status: state_values::run_status(row.try_get(4)?)?,
                counts: RunCounts {
                    read: count(5, "read count")?,
                    sent: count(6, "sent count")?,
                    unchanged: count(7, "unchanged count")?,
                    skipped: count(8, "skipped count")?,
                    rejected: count(9, "rejected count")?,
                    failed: count(10, "failed count")?,
                },
                error: row.try_get(11)?,
                source: row.try_get(12)?,
                holder: row.try_get(13)?,
            })
        })
        .collect()
}

pub(super) async fn import(client: &ClientWrapper, runs: &[RunRecord]) -> Result<(), Failure> {
    let mut oldest_first: Vec<&RunRecord> = runs.iter().collect();
    oldest_first.sort_by_key(|run| run.id);
    let text =
        |f: fn(&RunRecord) -> &str| -> Vec<&str> { oldest_first.iter().map(|r| f(r)).collect() };
    let optional = |f: fn(&RunRecord) -> Option<&str>| -> Vec<Option<&str>> {
        oldest_first.iter().map(|r| f(r)).collect()
    };
    let count = |f: fn(&RunCounts) -> u64, what: &str| -> Result<Vec<i64>, Failure> {
        oldest_first
            .iter()
            .map(|r| Ok(state_values::to_i64(f(&r.counts), what)?))
            .collect()
    };
    let statement = client.prepare_cached(IMPORT).await?;
    client
        .execute(
            &statement,
            &[
                &text(|r| &r.kind),
                &text(|r| &r.started_at),
                &optional(|r| r.finished_at.as_deref()),
                &text(|r| r.status.as_str()),
                &count(|c| c.read, "read count")?,
                &count(|c| c.sent, "sent count")?,
                &count(|c| c.unchanged, "unchanged count")?,
                &count(|c| c.skipped, "skipped count")?,
                &count(|c| c.rejected, "rejected count")?,
                &count(|c| c.failed, "failed count")?,
                &optional(|r| r.error.as_deref()),
                &optional(|r| r.source.as_deref()),
                &optional(|r| r.holder.as_deref()),
            ],
        )
        .await?;
    Ok(())
}
