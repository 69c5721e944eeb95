//! The sync pipeline: source → transformation → diff against the state → Segment
//! → state, streaming page by page so memory does not grow with the number of
//! customers.
//!
//! The reading side transforms each page, drops what Segment already has, and
//! enqueues the rest; a recorder task awaits each message's outcome in order and
//! writes deliveries and dead letters to the state in batches. A delivery is
//! recorded only once Segment acknowledged its batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use segment_sync_domain::identify::{identify, NotSent, SkipReason};
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind, RunCounts};
use segment_sync_domain::{DeliveryError, Fingerprint, Identify, Outcome, UserIdStrategy};
use segment_sync_ports::{
    CustomerPages, CustomerQuery, CustomerSource, Delivered, Page, PendingOutcome, SegmentClient,
    SegmentError, SourceError, SourceRecord, StateError, SyncStateStore,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

/// How many outcomes may wait for the recorder; bounds the messages kept for
/// dead letters while their batches are in flight.
/// Enough for a full queue of the Segment client plus its batches in flight, so
/// the recorder's in-order waiting never holds back sending. The messages
/// themselves are shared with the client, not copied.
const PENDING_CAPACITY: usize = 16_384;
/// Pages read ahead of the one being processed, besides the one the reader holds.
const PAGES_AHEAD: usize = 1;
/// Deliveries and dead letters are written in transactions of about this many.
const RECORD_CHUNK: usize = 512;

/// Counters that move while a run goes on, for the progress display.
#[derive(Debug, Default)]
pub struct LiveCounts {
    read: AtomicU64,
    sent: AtomicU64,
    unchanged: AtomicU64,
    skipped: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

impl LiveCounts {
    /// A consistent-enough copy for display and for the final summary.
    pub fn snapshot(&self) -> RunCounts {
        RunCounts {
            read: self.read.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a run must do.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Which customers to read.
    pub query: CustomerQuery,
    /// Send every customer read, even those Segment already has.
    pub resend_unchanged: bool,
    /// How `userId` is chosen.
    pub strategy: UserIdStrategy,
    /// How long the final flush may take.
    pub drain_timeout: Duration,
}

/// Why a run stopped before reading everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineReport {
    /// What happened to the customers read.
    pub counts: RunCounts,
    /// Why it stopped early, if it did.
    pub abort: Option<Abort>,
}

struct Sent {
    customer_id: String,
    fingerprint: Fingerprint,
    payload: Arc<str>,
    outcome: PendingOutcome,
}

/// What becomes of one record before anything is sent.
#[derive(Debug)]
pub enum Classified {
    /// A message to send (or to find unchanged).
    Message(Identify),
    /// Not sent on purpose.
    Skipped(SkipReason),
    /// Cannot be sent as it is; this is its dead letter.
    Rejected(DeadLetter),
}

/// Transforms one record: a message, a skip, or a dead letter.
pub fn classify(record: SourceRecord, strategy: UserIdStrategy) -> Classified {
    match record {
        SourceRecord::Customer(customer) => match identify(&customer, strategy) {
            Ok(message) => Classified::Message(message),
            Err(NotSent::Skipped(reason)) => Classified::Skipped(reason),
            Err(NotSent::Rejected(error)) => Classified::Rejected(dead_letter(
                &customer.id,
                DeadLetterKind::Rejected,
                &error,
                None,
                None,
            )),
        },
        SourceRecord::Malformed {
            position,
            customer_id,
            reason,
        } => Classified::Rejected(DeadLetter {
            reason: format!("Invalid payload at {position}: {reason}"),
            ..dead_letter(
                customer_id.as_deref().unwrap_or(&position),
                DeadLetterKind::Rejected,
                &DeliveryError::InvalidPayload,
                None,
                None,
            )
        }),
    }
}

/// The ports a run uses.
#[derive(Clone)]
pub struct Ports {
    /// Where customers come from.
    pub source: Arc<dyn CustomerSource>,
    /// Where identify messages go.
    pub segment: Arc<dyn SegmentClient>,
    /// What is remembered between runs.
    pub state: Arc<dyn SyncStateStore>,
}

/// Runs one sync until the source is exhausted, a fatal error, or `interrupt`
/// turns true. Every message handed to Segment has its outcome recorded before
/// this returns.
pub async fn run(
    ports: &Ports,
    options: &PipelineOptions,
    live: Arc<LiveCounts>,
    mut interrupt: watch::Receiver<bool>,
) -> PipelineReport {
    drive(
        &ports.segment,
        &ports.state,
        live,
        options.drain_timeout,
        |sent_tx, live, fatal| async move {
            read_and_send(ports, options, &live, &fatal, &sent_tx, &mut interrupt).await
        },
    )
    .await
}

/// Feeds messages to Segment with `feed` while a recorder task records their
/// outcomes, then flushes and reports. The feed's sender is dropped when it
/// returns, which lets the recorder finish.
async fn drive<F, Fut>(
    segment: &Arc<dyn SegmentClient>,
    state: &Arc<dyn SyncStateStore>,
    live: Arc<LiveCounts>,
    drain_timeout: Duration,
    feed: F,
) -> PipelineReport
where
    F: FnOnce(mpsc::Sender<Sent>, Arc<LiveCounts>, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Abort>>,
{
    let fatal = Arc::new(AtomicBool::new(false));
    let (sent_tx, sent_rx) = mpsc::channel::<Sent>(PENDING_CAPACITY);
    let recorder = tokio::spawn(record_outcomes(
        sent_rx,
        Arc::clone(state),
        Arc::clone(&live),
        Arc::clone(&fatal),
    ));
    let fed = feed(sent_tx, Arc::clone(&live), Arc::clone(&fatal)).await;
    let flushed = tokio::time::timeout(drain_timeout, segment.flush()).await;
    // After a flush that ran out of time some outcomes are still unknown; the
    // recorder gets the same grace, then what it could not record is sent again
    // by the next run (Segment drops the repeated messageIds).
    let mut recorder = recorder;
    let recorded = match tokio::time::timeout(drain_timeout, &mut recorder).await {
        Ok(joined) => {
            joined.unwrap_or_else(|e| Err(StateError::Storage(format!("recorder stopped: {e}"))))
        }
        Err(_) => {
            recorder.abort();
            Ok(())
        }
    };
    let abort = if fatal.load(Ordering::SeqCst) {
        Some(Abort::InvalidWriteKey)
    } else {
        fed.err()
            .or(recorded.err().map(Abort::State))
            .or(flush_abort(flushed, drain_timeout))
    };
    PipelineReport {
        counts: live.snapshot(),
        abort,
    }
}

async fn read_and_send(
    ports: &Ports,
    options: &PipelineOptions,
    live: &LiveCounts,
    fatal: &AtomicBool,
    sent_tx: &mpsc::Sender<Sent>,
    interrupt: &mut watch::Receiver<bool>,
) -> Result<(), Abort> {
    let mut pages = read_ahead(ports.source.customers(options.query).await?);
    let mut letters = Vec::new();
    loop {
        if fatal.load(Ordering::SeqCst) {
            return Err(Abort::InvalidWriteKey);
        }
        let page = tokio::select! {
            page = pages.recv() => match page {
                Some(page) => page?,
                None => None,
            },
            () = interrupted(interrupt) => return Err(Abort::Interrupted),
        };
        let Some(page) = page else { break };
        LiveCounts::add(&live.read, page.records.len() as u64);

        let mut messages = Vec::with_capacity(page.records.len());
        for record in page.records {
            match classify(record, options.strategy) {
                Classified::Message(message) => messages.push(message),
                Classified::Skipped(_) => LiveCounts::add(&live.skipped, 1),
                Classified::Rejected(letter) => {
                    LiveCounts::add(&live.rejected, 1);
                    letters.push(letter);
                }
            }
        }
        if !letters.is_empty() {
            ports.state.add_dead_letters(&letters).await?;
            letters.clear();
        }

        let messages = if options.resend_unchanged {
            messages
        } else {
            drop_unchanged(ports.state.as_ref(), messages, live).await?
        };
        let mut messages = messages.into_iter();
        while let Some(message) = messages.next() {
            // Only the wait for room in Segment's queue is given up on an
            // interrupt: once a message is queued its outcome is recorded.
            let submitted = tokio::select! {
                submitted = submit(ports.segment.as_ref(), message) => submitted,
                () = interrupted(interrupt) => Err(Abort::Interrupted),
            };
            let sent = match submitted {
                Ok(sent) => sent,
                Err(abort) => {
                    // Never handed over: read again by the next run.
                    live.read
                        .fetch_sub(1 + messages.len() as u64, Ordering::Relaxed);
                    return Err(abort);
                }
            };
            if sent_tx.send(sent).await.is_err() {
                // The recorder stopped on a state error; it reports it.
                live.read
                    .fetch_sub(messages.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads pages on a task of their own, so that parsing the next page overlaps
/// with transforming and sending this one. The walk stops after an error, at the
/// end, or when the receiver is dropped.
fn read_ahead(
    mut pages: Box<dyn CustomerPages>,
) -> mpsc::Receiver<Result<Option<Page>, SourceError>> {
    let (page_tx, page_rx) = mpsc::channel(PAGES_AHEAD);
    tokio::spawn(async move {
        loop {
            let page = pages.next_page().await;
            let last = !matches!(page, Ok(Some(_)));
            if page_tx.send(page).await.is_err() || last {
                break;
            }
        }
    });
    page_rx
}

/// Hands a message to Segment, keeping what the recorder needs to record its
/// outcome: the message itself is shared, not copied, for a dead letter.
async fn submit(segment: &dyn SegmentClient, message: Identify) -> Result<Sent, Abort> {
    let customer_id = message.customer_id().to_owned();
    let fingerprint = message.fingerprint();
    let payload = message.shared_json();
    let outcome = segment
        .identify(message)
        .await
        .map_err(|error| match error {
            SegmentError::InvalidWriteKey => Abort::InvalidWriteKey,
            other => Abort::Segment(other),
        })?;
    Ok(Sent {
        customer_id,
        fingerprint,
        payload,
        outcome,
    })
}

/// Resolves once the interrupt flag is up; never when its sender is gone.
async fn interrupted(interrupt: &mut watch::Receiver<bool>) {
    if interrupt.wait_for(|up| *up).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn drop_unchanged(
    state: &dyn SyncStateStore,
    messages: Vec<Identify>,
    live: &LiveCounts,
) -> Result<Vec<Identify>, StateError> {
    if messages.is_empty() {
        return Ok(messages);
    }
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m.customer_id().to_owned())
        .collect();
    let known = state.delivered_fingerprints(&ids).await?;
    let (unchanged, changed): (Vec<Identify>, Vec<Identify>) = messages
        .into_iter()
        .partition(|m| known.get(m.customer_id()) == Some(&m.fingerprint()));
    if !unchanged.is_empty() {
        // Segment has these as they are now: an older failed attempt at them must
        // not be replayed over it.
        let unchanged_ids: Vec<String> = unchanged
            .iter()
            .map(|m| m.customer_id().to_owned())
            .collect();
        state.remove_dead_letters(&unchanged_ids).await?;
    }
    LiveCounts::add(&live.unchanged, unchanged.len() as u64);
    Ok(changed)
}

/// A dead letter recorded now.
pub(crate) fn dead_letter(
    customer_id: &str,
    kind: DeadLetterKind,
    error: &DeliveryError,
    payload: Option<String>,
    fingerprint: Option<Fingerprint>,
) -> DeadLetter {
    DeadLetter::from_error(
        customer_id,
        kind,
        error,
        payload,
        fingerprint.map(Fingerprint::to_hex),
        now_rfc3339(),
    )
}

/// Sends the failed dead letters again. Delivered ones leave the dead letters;
/// the others stay with their attempts counted up. Rejected ones are left for a
/// sync to resend once the customer's data is fixed.
pub async fn replay(
    segment: &Arc<dyn SegmentClient>,
    state: &Arc<dyn SyncStateStore>,
    live: Arc<LiveCounts>,
    drain_timeout: Duration,
) -> PipelineReport {
    drive(
        segment,
        state,
        live,
        drain_timeout,
        |sent_tx, live, _fatal| async move {
            replay_letters(segment.as_ref(), state.as_ref(), &live, &sent_tx).await
        },
    )
    .await
}

async fn replay_letters(
    segment: &dyn SegmentClient,
    state: &dyn SyncStateStore,
    live: &LiveCounts,
    sent_tx: &mpsc::Sender<Sent>,
) -> Result<(), Abort> {
    let letters = state.dead_letters().await?;
    let mut unusable = Vec::new();
    for letter in letters {
        let (DeadLetterKind::Failed, Some(payload)) = (&letter.kind, letter.payload) else {
            continue;
        };
        LiveCounts::add(&live.read, 1);
        let message = match Identify::from_json(&letter.customer_id, payload) {
            Ok(message) => message,
            Err(NotSent::Rejected(error)) => {
                LiveCounts::add(&live.rejected, 1);
                unusable.push(dead_letter(
                    &letter.customer_id,
                    DeadLetterKind::Rejected,
                    &error,
                    None,
                    None,
                ));
                continue;
            }
            Err(NotSent::Skipped(_)) => continue,
        };
        if sent_tx.send(submit(segment, message).await?).await.is_err() {
            break;
        }
    }
    if !unusable.is_empty() {
        state.add_dead_letters(&unusable).await?;
    }
    Ok(())
}

fn flush_abort(
    flushed: Result<Result<(), SegmentError>, tokio::time::error::Elapsed>,
    drain_timeout: Duration,
) -> Option<Abort> {
    match flushed {
        Ok(Ok(())) => None,
        Ok(Err(SegmentError::InvalidWriteKey)) => Some(Abort::InvalidWriteKey),
        Ok(Err(other)) => Some(Abort::Segment(other)),
        Err(_) => Some(Abort::Segment(SegmentError::DrainTimeout(drain_timeout))),
    }
}

/// Now, as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        // Formatting the current UTC time cannot fail; keep a dead letter even so.
        .unwrap_or_default()
}

/// Awaits outcomes in the order messages were sent and writes them to the state
/// in chunks, flushing a chunk whenever no further outcome is ready.
async fn record_outcomes(
    mut sent_rx: mpsc::Receiver<Sent>,
    state: Arc<dyn SyncStateStore>,
    live: Arc<LiveCounts>,
    fatal: Arc<AtomicBool>,
) -> Result<(), StateError> {
    let mut delivered: Vec<(String, Fingerprint)> = Vec::with_capacity(RECORD_CHUNK);
    let mut letters: Vec<DeadLetter> = Vec::new();
    loop {
        let next = match sent_rx.try_recv() {
            Ok(sent) => Some(sent),
            Err(mpsc::error::TryRecvError::Empty) => {
                write(state.as_ref(), &mut delivered, &mut letters).await?;
                sent_rx.recv().await
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        let Some(sent) = next else { break };
        match sent.outcome.await {
            Outcome::Delivered => {
                LiveCounts::add(&live.sent, 1);
                delivered.push((sent.customer_id, sent.fingerprint));
            }
            Outcome::Failed(DeliveryError::Unauthorized) => {
                // The whole run is void; a rerun with the right key sends it.
                fatal.store(true, Ordering::SeqCst);
                LiveCounts::add(&live.failed, 1);
            }
            Outcome::Rejected(error) => {
                LiveCounts::add(&live.rejected, 1);
                letters.push(dead_letter(
                    &sent.customer_id,
                    DeadLetterKind::Rejected,
                    &error,
                    Some(sent.payload.to_string()),
                    Some(sent.fingerprint),
                ));
            }
            Outcome::Failed(error) => {
                LiveCounts::add(&live.failed, 1);
                letters.push(dead_letter(
                    &sent.customer_id,
                    DeadLetterKind::Failed,
                    &error,
                    Some(sent.payload.to_string()),
                    Some(sent.fingerprint),
                ));
            }
        }
        if delivered.len() >= RECORD_CHUNK || letters.len() >= RECORD_CHUNK {
            write(state.as_ref(), &mut delivered, &mut letters).await?;
        }
    }
    write(state.as_ref(), &mut delivered, &mut letters).await
}

async fn write(
    state: &dyn SyncStateStore,
    delivered: &mut Vec<(String, Fingerprint)>,
    letters: &mut Vec<DeadLetter>,
) -> Result<(), StateError> {
    if !delivered.is_empty() {
        let rows: Vec<Delivered<'_>> = delivered
            .iter()
            .map(|(customer_id, fingerprint)| Delivered {
                customer_id,
                fingerprint: *fingerprint,
            })
            .collect();
        state.record_delivered(&rows).await?;
        delivered.clear();
    }
    if !letters.is_empty() {
        state.add_dead_letters(letters).await?;
        letters.clear();
    }
    Ok(())
}
