use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use segment_sync_domain::batch::BatchBuilder;
use segment_sync_domain::{DeliveryError, Identify, Outcome};
use segment_sync_ports::{PendingOutcome, SegmentClient, SegmentError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use super::config::{SegmentConfig, SegmentSetupError};
use super::sender::{BatchSender, Queued, Shared};
use super::stats::SegmentStats;

/// The Segment port over the HTTP Tracking API.
///
/// `identify` puts a message in a bounded queue and returns at once unless the
/// queue is full; a background task packs the queue into batches and sends up to
/// `max_in_flight` of them at a time. Dropping the client lets that task finish
/// what it holds; [`SegmentClient::close_and_flush`] waits for it.
pub struct HttpSegmentClient {
    /// Kept for [`SelfCheck`](segment_sync_ports::SelfCheck)'s probe.
    pub(super) config: Arc<SegmentConfig>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    /// One permit per message that may still be queued: the queue's bound.
    space: Arc<Semaphore>,
}

enum Command {
    Message(Queued),
    /// Answer once every message sent before this command has its outcome.
    Flush(oneshot::Sender<()>),
    /// Take no more commands; finish what is held, then stop.
    Close,
}

impl HttpSegmentClient {
    /// Builds the client and starts its background task on the current tokio runtime.
    pub fn new(config: SegmentConfig) -> Result<Self, SegmentSetupError> {
        let url = config.batch_url()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SegmentSetupError::NoRuntime)?;
        let max_in_flight = config.max_in_flight.max(1);
        let queue_capacity = config.queue_capacity.clamp(1, Semaphore::MAX_PERMITS);
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .pool_max_idle_per_host(max_in_flight)
            .user_agent(concat!("segment-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SegmentSetupError::HttpClient)?;
        let shared = Arc::new(Shared::default());
        let space = Arc::new(Semaphore::new(queue_capacity));
        let sender = Arc::new(BatchSender::new(
            http,
            url,
            &config.write_key,
            config.gzip,
            config.retry,
            config.jitter_seed,
            Arc::clone(&shared),
        ));
        let (commands, receiver) = mpsc::unbounded_channel();
        let batcher = Batcher {
            shared: Arc::clone(&shared),
            space: Arc::clone(&space),
            sender,
            builder: BatchBuilder::new(config.limits),
            queue_capacity,
            max_in_flight,
            flush_interval: config.flush_interval,
            deadline: None,
            in_flight: JoinSet::new(),
            batch_of_task: HashMap::new(),
            open_batches: BTreeSet::new(),
            next_batch: 0,
            waiters: Vec::new(),
        };
        runtime.spawn(batcher.run(receiver));
        Ok(Self {
            config: Arc::new(config),
            shared,
            commands,
            space,
        })
    }

    /// What the client holds and has done so far.
    pub fn stats(&self) -> SegmentStats {
        self.shared.counters.snapshot()
    }

    fn refusal(&self) -> Option<SegmentError> {
        if self.shared.is_unauthorized() {
            Some(SegmentError::InvalidWriteKey)
        } else if self.shared.closed.load(Ordering::Acquire) {
            Some(SegmentError::Closed)
        } else {
            None
        }
    }

    /// Waits until every message sent before this call has its outcome.
    async fn drain(&self) -> Result<(), SegmentError> {
        let (done, finished) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .map_err(|_| SegmentError::Closed)?;
        finished.await.map_err(|_| SegmentError::Closed)
    }
}

impl fmt::Debug for HttpSegmentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSegmentClient")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SegmentClient for HttpSegmentClient {
    async fn identify(&self, message: Identify) -> Result<PendingOutcome, SegmentError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        let permit = self
            .space
            .acquire()
            .await
            .map_err(|_| SegmentError::Closed)?;
        // The state may have changed while this call waited for room.
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        // The permit is given back by the batcher when the message leaves the queue.
        permit.forget();
        self.shared.counters.enqueued(1);
        let (reply, outcome) = oneshot::channel();
        let queued = Queued {
            json: message.into_json(),
            reply,
        };
        if self.commands.send(Command::Message(queued)).is_err() {
            self.shared.counters.dequeued(1);
            self.space.add_permits(1);
            return Err(SegmentError::Closed);
        }
        Ok(PendingOutcome::new(async move {
            // Only a batcher that died (its runtime shut down) drops the sender.
            outcome
                .await
                .unwrap_or(Outcome::Failed(DeliveryError::ConnectionFailed))
        }))
    }

    async fn flush(&self) -> Result<(), SegmentError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SegmentError::Closed);
        }
        self.drain().await
    }

    async fn close_and_flush(&self, timeout: Duration) -> Result<(), SegmentError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Err(SegmentError::Closed);
        }
        let drained = tokio::time::timeout(timeout, self.drain()).await;
        // Messages that raced past the closed flag are still drained by the batcher.
        let _ = self.commands.send(Command::Close);
        match drained {
            Ok(result) => result,
            Err(_) => Err(SegmentError::DrainTimeout(timeout)),
        }
    }
}

/// The background task: turns the queue into batches and keeps them in flight.
struct Batcher {
    shared: Arc<Shared>,
    space: Arc<Semaphore>,
    sender: Arc<BatchSender>,
    builder: BatchBuilder<Queued>,
    queue_capacity: usize,
    max_in_flight: usize,
    flush_interval: Duration,
    /// When the batch being built must go, full or not.
    deadline: Option<Instant>,
    in_flight: JoinSet<()>,
    batch_of_task: HashMap<Id, u64>,
    open_batches: BTreeSet<u64>,
    next_batch: u64,
    /// Flushes, each with the number of batches dispatched before it.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl Batcher {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut receiving = true;
        loop {
            let room = self.in_flight.len() < self.max_in_flight;
            // The builder holds queue permits: when it holds them all, or nothing
            // more can come, waiting for the deadline would only stall.
            if room
                && !self.builder.is_empty()
                && (!receiving || self.builder.len() >= self.queue_capacity)
            {
                self.dispatch_held();
                continue;
            }
            if !receiving && self.builder.is_empty() && self.in_flight.is_empty() {
                break;
            }
            let deadline = self.deadline;
            tokio::select! {
                Some(finished) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    self.finished(finished);
                }
                // While every slot is taken the queue is left to fill, so that
                // callers wait in `identify` instead of memory growing here.
                command = commands.recv(), if receiving && room => match command {
                    Some(Command::Message(message)) => self.hold(message),
                    Some(Command::Flush(waiter)) => {
                        self.dispatch_held();
                        self.waiters.push((self.next_batch, waiter));
                        self.wake_waiters();
                    }
                    Some(Command::Close) => commands.close(),
                    None => receiving = false,
                },
                () = sleep_until(deadline), if room && deadline.is_some() => self.dispatch_held(),
            }
        }
        for (_, waiter) in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    fn hold(&mut self, message: Queued) {
        let size = message.json.len();
        match self.builder.push(message, size) {
            Ok(None) => {}
            Ok(Some(full)) => self.dispatch(full),
            Err(oversize) => {
                self.release(1);
                self.shared.settle(
                    vec![oversize.item],
                    Outcome::Rejected(DeliveryError::PayloadTooLarge),
                );
            }
        }
        if self.deadline.is_none() && !self.builder.is_empty() {
            self.deadline = Some(Instant::now() + self.flush_interval);
        }
    }

    fn dispatch_held(&mut self) {
        if let Some(batch) = self.builder.take() {
            self.dispatch(batch);
        }
    }

    fn dispatch(&mut self, batch: Vec<Queued>) {
        self.deadline = None;
        let count = batch.len() as u64;
        self.release(count);
        if self.shared.is_unauthorized() {
            self.shared
                .settle(batch, Outcome::Failed(DeliveryError::Unauthorized));
            return;
        }
        self.shared.counters.sending(count);
        let id = self.next_batch;
        self.next_batch += 1;
        let task = self
            .in_flight
            .spawn(Arc::clone(&self.sender).deliver(batch));
        self.batch_of_task.insert(task.id(), id);
        self.open_batches.insert(id);
    }

    /// Messages leave the queue: their room goes back to `identify` callers.
    fn release(&self, count: u64) {
        self.shared.counters.dequeued(count);
        self.space.add_permits(count as usize);
    }

    fn finished(&mut self, finished: Result<(Id, ()), JoinError>) {
        let task = match finished {
            Ok((task, ())) => task,
            Err(error) => {
                // The batch's senders were dropped with the task: its messages
                // resolve as failed, and a flush must not wait for it forever.
                tracing::error!(%error, "a Segment batch task ended abnormally");
                error.id()
            }
        };
        if let Some(batch) = self.batch_of_task.remove(&task) {
            self.open_batches.remove(&batch);
        }
        self.wake_waiters();
    }

    fn wake_waiters(&mut self) {
        let oldest_open = self.open_batches.first().copied().unwrap_or(u64::MAX);
        let (ready, waiting) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(dispatched_before, _)| oldest_open >= *dispatched_before);
        self.waiters = waiting;
        for (_, waiter) in ready {
            let _ = waiter.send(());
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
