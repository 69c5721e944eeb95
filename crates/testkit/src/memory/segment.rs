//! [`MemorySegment`]: a Segment client that keeps what it is given and answers as
//! scripted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use segment_sync_domain::{DeliveryError, Identify, Outcome};
use segment_sync_ports::{PendingOutcome, SegmentClient, SegmentError};
use serde_json::Value;
use tokio::sync::watch;

use crate::DEADLINE;

/// What [`MemorySegment`] does with a message given to `identify`.
#[derive(Debug, Clone)]
pub enum SegmentBehaviour {
    /// Delivered at once.
    Deliver,
    /// Ends as [`Outcome::Failed`] with this error.
    Fail(DeliveryError),
    /// Ends as [`Outcome::Rejected`] with this error.
    Reject(DeliveryError),
    /// `identify` itself returns this error; the message is not kept.
    Refuse(SegmentError),
    /// Delivered once the gate opens; a flush waits for it.
    Gated(Gate),
    /// Delivered after this long (on tokio's clock, so a paused clock skips it).
    DeliverAfter(Duration),
    /// Segment answers 401: the message ends as `Failed(Unauthorized)` and every
    /// later `identify` returns [`SegmentError::InvalidWriteKey`].
    Unauthorized,
}

/// A gate that holds [`SegmentBehaviour::Gated`] messages until it opens. Clones
/// share one gate; once open it stays open.
#[derive(Debug, Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Opens the gate: every message held by it, and every later one, is delivered.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the gate is open.
    pub async fn opened(&self) {
        let mut open = self.0.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _ = open.wait_for(|open| *open).await;
    }
}

/// A [`SegmentClient`] in memory that records every message it accepts and gives
/// each the outcome its [`SegmentBehaviour`] says.
///
/// - The standing behaviour ([`MemorySegment::behave`], [`SegmentBehaviour::Deliver`]
///   at first) applies to every message unless behaviours were queued for the next
///   ones ([`MemorySegment::behave_next`]).
/// - `flush` resolves once every message accepted before it has its outcome (a
///   message held by a closed [`Gate`] holds the flush too).
/// - `close_and_flush` flushes within its timeout (else
///   [`SegmentError::DrainTimeout`]), and every later call returns
///   [`SegmentError::Closed`].
/// - After a [`SegmentBehaviour::Unauthorized`] answer every `identify` returns
///   [`SegmentError::InvalidWriteKey`].
///
/// Outcomes that are not known at once are settled by a tokio task, so they come
/// whether or not anyone awaits them. It passes [`crate::contract::segment`].
#[derive(Debug)]
pub struct MemorySegment {
    held: Mutex<Held>,
    /// How many messages were accepted, for waiters.
    accepted: watch::Sender<usize>,
    closed: AtomicBool,
    unauthorized: AtomicBool,
}

#[derive(Debug)]
struct Held {
    sent: Vec<Identify>,
    standing: SegmentBehaviour,
    next: VecDeque<SegmentBehaviour>,
    /// Outcomes being settled by a task; settled ones are pruned now and then.
    unsettled: Vec<watch::Receiver<Option<Outcome>>>,
}

impl Default for MemorySegment {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySegment {
    /// A client that delivers everything.
    pub fn new() -> Self {
        Self {
            held: Mutex::new(Held {
                sent: Vec::new(),
                standing: SegmentBehaviour::Deliver,
                next: VecDeque::new(),
                unsettled: Vec::new(),
            }),
            accepted: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            unauthorized: AtomicBool::new(false),
        }
    }

    /// A client whose standing behaviour is `behaviour`.
    pub fn behaving(behaviour: SegmentBehaviour) -> Self {
        let segment = Self::new();
        segment.behave(behaviour);
        segment
    }

    /// Sets what happens to every later message (after those queued with
    /// [`MemorySegment::behave_next`]).
    pub fn behave(&self, behaviour: SegmentBehaviour) {
        self.held().standing = behaviour;
    }

    /// Queues what happens to the next message; queued behaviours are used in
    /// order, one per `identify`, before the standing one.
    pub fn behave_next(&self, behaviour: SegmentBehaviour) {
        self.held().next.push_back(behaviour);
    }

    /// Every message accepted, in order (refused ones are not kept).
    pub fn sent(&self) -> Vec<Identify> {
        self.held().sent.clone()
    }

    /// Every message accepted, parsed from the JSON that would be sent.
    pub fn sent_json(&self) -> Vec<Value> {
        self.held()
            .sent
            .iter()
            .map(|m| serde_json::from_str(m.json()).expect("an Identify holds JSON"))
            .collect()
    }

    /// Whether `close_and_flush` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether a [`SegmentBehaviour::Unauthorized`] answer latched.
    pub fn is_unauthorized(&self) -> bool {
        self.unauthorized.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages were accepted; panics after [`DEADLINE`].
    pub async fn wait_for_sent(&self, n: usize) {
        let mut accepted = self.accepted.subscribe();
        tokio::time::timeout(DEADLINE, accepted.wait_for(|accepted| *accepted >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{n} identify calls expected within {DEADLINE:?}, got {}",
                    *self.accepted.borrow()
                )
            })
            // The sender lives in `self`.
            .expect("the count outlives its waiters");
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for the outcome of every message accepted so far.
    async fn drain(&self) {
        let mut unsettled = {
            let mut held = self.held();
            held.unsettled.retain(|outcome| outcome.borrow().is_none());
            held.unsettled.clone()
        };
        for outcome in &mut unsettled {
            // An error means the settling task is gone (its runtime is shutting
            // down): that outcome will never come, and nobody is left to wait.
            let _ = outcome.wait_for(Option::is_some).await;
        }
    }
}

/// An outcome settled by a task, which runs whether or not anyone awaits it.
fn settled_by_task(
    settle: impl std::future::Future<Output = Outcome> + Send + 'static,
) -> (PendingOutcome, watch::Receiver<Option<Outcome>>) {
    let (slot, outcome) = watch::channel(None);
    tokio::spawn(async move {
        let settled = settle.await;
        slot.send_replace(Some(settled));
    });
    let mut waiting = outcome.clone();
    let pending = PendingOutcome::new(async move {
        match waiting.wait_for(Option::is_some).await {
            Ok(settled) => settled.clone().unwrap_or(Outcome::Delivered),
            // The task was dropped with its runtime.
            Err(_) => Outcome::Failed(DeliveryError::ConnectionFailed),
        }
    });
    (pending, outcome)
}

#[async_trait]
impl SegmentClient for MemorySegment {
    async fn identify(&self, message: Identify) -> Result<PendingOutcome, SegmentError> {
        if self.is_unauthorized() {
            return Err(SegmentError::InvalidWriteKey);
        }
        if self.is_closed() {
            return Err(SegmentError::Closed);
        }
        let mut held = self.held();
        let behaviour = held
            .next
            .pop_front()
            .unwrap_or_else(|| held.standing.clone());
        let pending = match behaviour {
            SegmentBehaviour::Refuse(error) => return Err(error),
            SegmentBehaviour::Deliver => PendingOutcome::ready(Outcome::Delivered),
            SegmentBehaviour::Fail(error) => PendingOutcome::ready(Outcome::Failed(error)),
            SegmentBehaviour::Reject(error) => PendingOutcome::ready(Outcome::Rejected(error)),
            SegmentBehaviour::Unauthorized => {
                self.unauthorized.store(true, Ordering::SeqCst);
                PendingOutcome::ready(Outcome::Failed(DeliveryError::Unauthorized))
            }
            SegmentBehaviour::Gated(gate) => {
                let (pending, outcome) = settled_by_task(async move {
                    gate.opened().await;
                    Outcome::Delivered
                });
                held.unsettled.push(outcome);
                pending
            }
            SegmentBehaviour::DeliverAfter(delay) => {
                let (pending, outcome) = settled_by_task(async move {
                    tokio::time::sleep(delay).await;
                    Outcome::Delivered
                });
                held.unsettled.push(outcome);
                pending
            }
        };
        held.sent.push(message);
        drop(held);
        self.accepted.send_modify(|n| *n += 1);
        Ok(pending)
    }

    async fn flush(&self) -> Result<(), SegmentError> {
        if self.is_closed() {
            return Err(SegmentError::Closed);
        }
        self.drain().await;
        Ok(())
    }

    async fn close_and_flush(&self, timeout: Duration) -> Result<(), SegmentError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(SegmentError::Closed);
        }
        tokio::time::timeout(timeout, self.drain())
            .await
            .map_err(|_| SegmentError::DrainTimeout(timeout))
    }
}
