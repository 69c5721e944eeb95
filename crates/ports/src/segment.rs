use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use segment_sync_domain::{Identify, Outcome};

/// The outcome of one enqueued message, to be awaited. Resolves exactly once.
pub struct PendingOutcome(Pin<Box<dyn Future<Output = Outcome> + Send>>);

impl PendingOutcome {
    /// Wraps whatever future the adapter resolves the outcome with.
    pub fn new(future: impl Future<Output = Outcome> + Send + 'static) -> Self {
        Self(Box::pin(future))
    }

    /// An outcome that is already known.
    pub fn ready(outcome: Outcome) -> Self {
        Self::new(std::future::ready(outcome))
    }
}

impl Future for PendingOutcome {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for PendingOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingOutcome")
    }
}

/// Why the client refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// Segment answered 401/403: nothing more will be sent this run.
    #[error("Invalid write key")]
    InvalidWriteKey,
    /// `close_and_flush` was called; the client takes no more messages.
    #[error("Segment client is closed")]
    Closed,
    /// `close_and_flush` ran out of time with messages still without an outcome.
    #[error("Segment client did not drain within {0:?}")]
    DrainTimeout(Duration),
}

/// Delivers identify messages to Segment.
///
/// Every message accepted by [`SegmentClient::identify`] ends with exactly one
/// [`Outcome`], which its [`PendingOutcome`] resolves to.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SegmentClient: Send + Sync {
    /// Enqueues a message; waits while the queue is full. The returned outcome
    /// resolves once the batch holding the message has a result.
    async fn identify(&self, message: Identify) -> Result<PendingOutcome, SegmentError>;

    /// Sends what is queued now and resolves when every message enqueued before
    /// the call has its outcome.
    async fn flush(&self) -> Result<(), SegmentError>;

    /// Flushes, waiting at most `timeout`, and refuses every later call.
    async fn close_and_flush(&self, timeout: Duration) -> Result<(), SegmentError>;
}
