//! The sync engine: source → [`SyncService`] → Segment → state, streaming page by
//! page so that memory does not grow with the number of customers.
//!
//! A reader task walks the source one page ahead; each page is decided by the
//! service (one state lookup), and what must be sent is handed to Segment; a
//! recorder task awaits each message's outcome in order and has the service record
//! them in chunks. A delivery is recorded only once Segment acknowledged its batch.
//! A run is bracketed by its row in the run history, and moves the high-water mark
//! only when its [`Plan`] allows and nothing failed.

mod counts;
mod gone;
mod log;
mod plan;
mod read;
mod record;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use segment_sync_domain::sync::{RunCounts, RunStatus};
use segment_sync_ports::{
    CustomerQuery, CustomerSource, RunLease, RunStart, SegmentClient, SegmentError, SourceError,
    StateError, SyncStateStore,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use crate::service::{InFlight, SyncService};

pub use self::counts::LiveCounts;
pub use self::plan::{Plan, Request, SAFETY_MARGIN};

/// How many messages may wait for the recorder; bounds the messages kept for dead
/// letters while their batches are in flight. Enough for a full queue of the
/// Segment client plus its batches in flight, so the recorder's in-order waiting
/// never holds back sending. The messages themselves are shared with the client.
const PENDING_CAPACITY: usize = 16_384;

/// How long the last flush of a run may take, by default.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The ports a run uses for itself, besides the source it reads: the service
/// holds the same ones for the per-customer rule.
#[derive(Clone)]
pub struct Ports {
    /// Where identify messages go: flushed and closed at the end of a run.
    pub segment: Arc<dyn SegmentClient>,
    /// Run history and the high-water mark.
    pub state: Arc<dyn SyncStateStore>,
}

/// Why a run stopped before reading everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Abort {
    /// Segment refused the write key.
    #[error("Invalid write key")]
    InvalidWriteKey,
    /// commercetools credentials or scope, or an unreadable source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The Segment client stopped taking messages.
    #[error(transparent)]
    Segment(SegmentError),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// Outcomes came back but recording them did not finish in time: the run did
    /// not cover what it read, and those customers are sent again next run.
    #[error("outcomes not recorded within {} s; they are sent again next run", .0.as_secs())]
    Unrecorded(Duration),
}

impl From<SegmentError> for Abort {
    fn from(error: SegmentError) -> Self {
        match error {
            SegmentError::InvalidWriteKey => Self::InvalidWriteKey,
            other => Self::Segment(other),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Its row in the run history.
    pub run_id: i64,
    /// What happened to the customers read.
    pub counts: RunCounts,
    /// Why it stopped early, if it did.
    pub abort: Option<Abort>,
    /// Why the last customer that failed did, when one did.
    pub last_failure: Option<String>,
    /// The identify rules (strategy, mapping) changed since the last run (or the
    /// state does not know the rules of its last runs), so the run read every
    /// customer to compare them: the sent ones are those the change affected.
    pub rules_changed: bool,
    /// The run compared every customer: it read them all (no `--since`) and was
    /// not stopped early. When the rules changed and it did not, the next sync
    /// compares every customer again.
    pub compared_all: bool,
    /// After a complete `--full` walk of a source that knows every customer (the
    /// API): the customers delivered earlier that it no longer has.
    pub gone: Option<Vec<String>>,
}

impl Report {
    /// How the run is recorded in the history.
    pub fn status(&self) -> RunStatus {
        match (&self.abort, self.counts.all_accounted_for()) {
            (Some(_), _) => RunStatus::Aborted,
            (None, true) => RunStatus::Succeeded,
            (None, false) => RunStatus::CompletedWithErrors,
        }
    }
}

/// What a sync is asked to do, besides the ports it does it with.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// What the command line asked for.
    pub request: Request,
    /// What the source is, for the run history: `api`, or the export's name.
    pub source_name: String,
    /// How long the last flush may take.
    pub drain_timeout: Duration,
}

/// Runs one sync: takes the state's run lease, plans the run from the high-water
/// mark (and from whether the identify rules changed since the last run), streams
/// the source through the service until it is exhausted, a fatal error, or
/// `interrupt` turns true, moves the mark when allowed, closes the Segment client
/// and records the run. Every message handed to Segment has its outcome recorded
/// before this returns.
pub async fn sync(
    source: &dyn CustomerSource,
    ports: &Ports,
    service: &SyncService,
    options: &SyncOptions,
    live: Arc<LiveCounts>,
    mut interrupt: watch::Receiver<bool>,
) -> Result<Report, Abort> {
    let started_at = OffsetDateTime::now_utc();
    let lease = ports
        .state
        .begin_run(RunStart {
            kind: "sync".to_owned(),
            started_at,
            source: Some(options.source_name.clone()),
            holder: service.process().to_owned(),
        })
        .await?;
    let rules = service.rules().fingerprint();
    let mark = ports.state.high_water_mark().await?;
    // A state with a mark but no rules recorded was written before the rules
    // were: what its runs sent under is unknown, so every customer is compared.
    let rules_changed = match ports.state.rules_fingerprint().await? {
        Some(last) => last != rules,
        None => mark.is_some(),
    };
    let request = options.request;
    let plan = Plan::new(
        request,
        mark,
        source.capabilities().tracks_changes,
        rules_changed,
    );
    tracing::info!(
        query = %plan.query,
        full = request.full,
        moves_mark = plan.moves_mark,
        rules_changed,
        "sync starting"
    );
    let holder = segment_sync_ports::run_holder(lease.id());
    let holder = holder.as_str();
    let fed = Arc::clone(&live);
    // Only a walk of every customer of the API can tell that one is gone, and
    // only a source that answers by id can confirm it.
    let capabilities = source.capabilities();
    let looks_for_gone = request.full
        && plan.query == CustomerQuery::All
        && capabilities.tracks_changes
        && capabilities.by_id;
    let mut seen = looks_for_gone.then(gone::Seen::default);
    let noted = &mut seen;
    let (counts, abort) = drive(
        ports,
        service,
        holder,
        options.drain_timeout,
        Arc::clone(&live),
        |sent_tx, fatal| async move {
            let feed = read::Feed {
                service,
                holder,
                live: &fed,
                fatal: &fatal,
                sent_tx: &sent_tx,
            };
            let query = plan.query;
            read::read_and_send(source, &feed, query, request.full, noted, &mut interrupt).await
        },
    )
    .await;
    let covered = abort.is_none() && counts.failed == 0 && plan.moves_mark;
    if covered {
        ports.state.set_high_water_mark(started_at).await?;
    }
    let compared_all = abort.is_none() && plan.query == CustomerQuery::All;
    // The rules are recorded once every customer was compared (and sent when it
    // had to be) under them, so that incremental runs may trust them: never after
    // a run that read only `--since`, failed some or stopped early. Without a mark
    // the next run reads every customer anyway.
    if (compared_all && counts.failed == 0) || mark.is_none() {
        ports.state.set_rules_fingerprint(rules).await?;
    }
    let gone = match seen {
        Some(seen) if abort.is_none() => {
            let unseen = seen.gone(ports.state.as_ref()).await?;
            Some(gone::confirmed(source, unseen).await)
        }
        _ => None,
    };
    let mut report = finish(ports, lease, &live, counts, abort, options.drain_timeout).await?;
    report.rules_changed = rules_changed;
    report.compared_all = compared_all;
    report.gone = gone;
    Ok(report)
}

/// Dead letters replayed per page.
const REPLAY_PAGE: usize = 500;

/// Sends the failed dead letters again, as a sync sends customers: one older than
/// what Segment has is dropped as stale, one Segment has is unchanged. Delivered
/// ones leave the dead letters; the others stay with their attempts counted up.
/// Rejected ones are left for a sync to resend once the customer's data is fixed.
pub async fn replay(
    ports: &Ports,
    service: &SyncService,
    drain_timeout: Duration,
    live: Arc<LiveCounts>,
) -> Result<Report, Abort> {
    let lease = ports
        .state
        .begin_run(RunStart {
            kind: "replay".to_owned(),
            started_at: OffsetDateTime::now_utc(),
            source: Some("dead letters".to_owned()),
            holder: service.process().to_owned(),
        })
        .await?;
    let holder = segment_sync_ports::run_holder(lease.id());
    let holder = holder.as_str();
    let fed = Arc::clone(&live);
    let (counts, abort) = drive(
        ports,
        service,
        holder,
        drain_timeout,
        Arc::clone(&live),
        |sent_tx, fatal| async move {
            let feed = read::Feed {
                service,
                holder,
                live: &fed,
                fatal: &fatal,
                sent_tx: &sent_tx,
            };
            let mut never = watch::channel(false).1;
            // The letters there are now, a page at a time: one that fails again
            // moves to the end of the list and waits for the next replay.
            let mut left = ports.state.dead_letter_count().await?;
            let mut after = None;
            let mut busy = Vec::new();
            while left > 0 {
                let limit = usize::try_from(left).unwrap_or(usize::MAX).min(REPLAY_PAGE);
                let replay = service.replayable(after, limit).await?;
                left = left.saturating_sub(replay.read as u64);
                fed.read(replay.messages.len() as u64 + replay.unusable);
                fed.unusable(replay.unusable);
                let decisions = service.decide_replay(replay.messages, holder).await?;
                busy.extend(feed.send_decided(decisions, &mut never).await?);
                match replay.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            read::send_busy(&feed, busy, &mut never).await
        },
    )
    .await;
    finish(ports, lease, &live, counts, abort, drain_timeout).await
}

/// Closes the Segment client and records how the run ended.
async fn finish(
    ports: &Ports,
    lease: RunLease,
    live: &LiveCounts,
    counts: RunCounts,
    abort: Option<Abort>,
    drain_timeout: Duration,
) -> Result<Report, Abort> {
    if let Err(error) = ports.segment.close_and_flush(drain_timeout).await {
        tracing::warn!(%error, "Segment client did not close cleanly");
    }
    live.finish();
    let report = Report {
        run_id: lease.id(),
        counts,
        abort,
        last_failure: live.last_failure(),
        rules_changed: false,
        compared_all: false,
        gone: None,
    };
    ports
        .state
        .finish_run(
            report.run_id,
            report.status(),
            counts,
            report.abort.as_ref().map(ToString::to_string),
        )
        .await?;
    // The lease ends only once the run's end is recorded.
    drop(lease);
    Ok(report)
}

/// Feeds messages to Segment with `feed` while a recorder task records their
/// outcomes, then flushes. The feed's sender is dropped when it returns, which
/// lets the recorder finish.
async fn drive<F, Fut>(
    ports: &Ports,
    service: &SyncService,
    holder: &str,
    drain_timeout: Duration,
    live: Arc<LiveCounts>,
    feed: F,
) -> (RunCounts, Option<Abort>)
where
    F: FnOnce(mpsc::Sender<InFlight>, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Abort>>,
{
    let fatal = Arc::new(AtomicBool::new(false));
    let (sent_tx, sent_rx) = mpsc::channel::<InFlight>(PENDING_CAPACITY);
    let recorder = tokio::spawn(record::record_outcomes(
        sent_rx,
        service.clone(),
        holder.to_owned(),
        Arc::clone(&live),
        Arc::clone(&fatal),
    ));
    let fed = feed(sent_tx, Arc::clone(&fatal)).await;
    let flushed = tokio::time::timeout(drain_timeout, ports.segment.flush()).await;
    // After a flush that ran out of time some outcomes are still unknown; the
    // recorder gets the same grace, then what it could not record is sent again
    // by the next run (Segment drops the repeated messageIds).
    let mut recorder = recorder;
    let recorded = match tokio::time::timeout(drain_timeout, &mut recorder).await {
        Ok(joined) => joined
            .unwrap_or_else(|e| Err(StateError::Storage(format!("recorder stopped: {e}"))))
            .map_err(Abort::State),
        Err(_) => {
            recorder.abort();
            Err(Abort::Unrecorded(drain_timeout))
        }
    };
    let abort = if fatal.load(Ordering::SeqCst) {
        Some(Abort::InvalidWriteKey)
    } else {
        fed.err()
            .or(recorded.err())
            .or(flush_abort(flushed, drain_timeout))
    };
    (live.snapshot(), abort)
}

fn flush_abort(
    flushed: Result<Result<(), SegmentError>, tokio::time::error::Elapsed>,
    drain_timeout: Duration,
) -> Option<Abort> {
    match flushed {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.into()),
        Err(_) => Some(Abort::Segment(SegmentError::DrainTimeout(drain_timeout))),
    }
}

#[cfg(test)]
mod tests;
