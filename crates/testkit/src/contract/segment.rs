//! The [`SegmentClient`] contract: what every Segment client must do, one public
//! function per rule.
//!
//! Each rule asks a factory for a fresh client whose Segment answers as a
//! [`SegmentScript`] says. Instantiate the whole suite with
//! [`segment_client_contract!`](crate::segment_client_contract):
//!
//! ```
//! use std::time::Duration;
//!
//! use segment_sync_domain::DeliveryError;
//! use segment_sync_ports::SegmentClient;
//! use segment_sync_testkit::contract::segment::SegmentScript;
//! use segment_sync_testkit::contract::Subject;
//! use segment_sync_testkit::memory::{Gate, MemorySegment, SegmentBehaviour};
//!
//! async fn scripted(script: SegmentScript) -> Subject<dyn SegmentClient> {
//!     let never_opened = Gate::new();
//!     let behaviour = match script {
//!         SegmentScript::Accepting => SegmentBehaviour::Deliver,
//!         SegmentScript::Slow => SegmentBehaviour::DeliverAfter(Duration::from_millis(50)),
//!         SegmentScript::Failing => SegmentBehaviour::Fail(DeliveryError::ServerError { status: 503 }),
//!         SegmentScript::Rejecting => SegmentBehaviour::Reject(DeliveryError::BadRequest { detail: None }),
//!         SegmentScript::Unauthorized => SegmentBehaviour::Unauthorized,
//!         SegmentScript::Unresponsive => SegmentBehaviour::Gated(never_opened.clone()),
//!     };
//!     Subject::from(MemorySegment::behaving(behaviour)).keeping(never_opened)
//! }
//!
//! segment_sync_testkit::segment_client_contract!(scripted);
//! # fn main() {}
//! ```
//!
//! A client over HTTP starts a fake Segment server answering as the script says,
//! points the client at it with quick retries, and keeps the server with
//! [`Subject::keeping`].
//!
//! The client should send a partial batch on its own well within
//! [`DEADLINE`](crate::DEADLINE) and give up retrying well within it too, so that
//! every outcome can be awaited without a flush.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use segment_sync_domain::identify::identify;
use segment_sync_domain::{Customer, DeliveryError, Identify, Outcome, UserIdStrategy};
use segment_sync_ports::{PendingOutcome, SegmentClient, SegmentError};

use super::{within, Subject};

/// How the Segment behind a client under test answers.
///
/// Deliberately exhaustive: a new script breaks every factory's `match` until the
/// factory says how its Segment plays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentScript {
    /// Acknowledges every batch at once (200).
    Accepting,
    /// Acknowledges every batch, but only after a while: long enough that a
    /// flush starts while outcomes are pending (some tens of milliseconds), well
    /// under [`DEADLINE`](crate::DEADLINE).
    Slow,
    /// Fails every batch with a retryable error (a 5xx) until the client gives up.
    Failing,
    /// Refuses every message as malformed (400).
    Rejecting,
    /// Refuses the write key (401).
    Unauthorized,
    /// Holds every request without answering for longer than a rule waits.
    Unresponsive,
}

/// Makes a client whose Segment follows a script, fresh for each rule: an async
/// function or closure returning anything that converts into a
/// [`Subject<dyn SegmentClient>`].
pub trait SegmentFactory {
    /// A new client whose Segment answers as `script` says.
    fn make(&self, script: SegmentScript) -> impl Future<Output = Subject<dyn SegmentClient>>;
}

impl<F, Fut, T> SegmentFactory for F
where
    F: Fn(SegmentScript) -> Fut,
    Fut: Future<Output = T>,
    T: Into<Subject<dyn SegmentClient>>,
{
    fn make(&self, script: SegmentScript) -> impl Future<Output = Subject<dyn SegmentClient>> {
        let made = self(script);
        async move { made.await.into() }
    }
}

/// Runs the [`SegmentClient`] contract against a factory: one `#[tokio::test]`
/// per rule of [`crate::contract::segment`], in a module named `contract`.
///
/// The factory is an async function (or closure) taking a
/// [`SegmentScript`](crate::contract::segment::SegmentScript) and returning a
/// client, as anything that converts into a
/// [`Subject<dyn SegmentClient>`](crate::contract::Subject). The test crate
/// needs `tokio` with `macros` and `rt-multi-thread`.
///
/// ```text
/// segment_sync_testkit::segment_client_contract!(against_the_fake);
/// ```
#[macro_export]
macro_rules! segment_client_contract {
    ($factory:expr $(,)?) => {
        fn __segment_client_contract_factory() -> impl $crate::contract::segment::SegmentFactory {
            $factory
        }

        mod contract {
            $crate::__segment_client_rules!(
                every_message_gets_its_outcome_without_a_flush,
                failed_deliveries_are_outcomes_too,
                rejected_messages_are_outcomes_too,
                flush_waits_for_every_earlier_outcome,
                a_closed_client_refuses_every_call,
                close_and_flush_gives_up_after_its_timeout,
                an_invalid_write_key_latches,
            );
        }
    };
}

/// One test per Segment client rule.
#[doc(hidden)]
#[macro_export]
macro_rules! __segment_client_rules {
    ($($rule:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $rule() {
                $crate::contract::segment::$rule(&super::__segment_client_contract_factory()).await;
            }
        )*
    };
}

/// A distinct message per number.
fn message(n: usize) -> Identify {
    let customer = Customer {
        id: format!("customer-{n:03}"),
        version: 1,
        email: Some(format!("user{n}@example.com")),
        first_name: Some("Ada".to_owned()),
        last_modified_at: Some("2024-05-01T10:00:00.000Z".to_owned()),
        ..Customer::default()
    };
    identify(&customer, UserIdStrategy::Email).expect("a customer with an email is identified")
}

async fn send(client: &dyn SegmentClient, count: usize) -> Vec<PendingOutcome> {
    let mut pending = Vec::with_capacity(count);
    for n in 0..count {
        let accepted = within("identify", client.identify(message(n))).await;
        pending.push(accepted.unwrap_or_else(|e| panic!("message {n} refused: {e}")));
    }
    pending
}

async fn outcomes(pending: Vec<PendingOutcome>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(pending.len());
    for outcome in pending {
        outcomes.push(within("an outcome", outcome).await);
    }
    outcomes
}

/// The outcome if it is already known, without waiting.
fn ready_now(pending: &mut PendingOutcome) -> Option<Outcome> {
    match Pin::new(pending).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(outcome) => Some(outcome),
        Poll::Pending => None,
    }
}

/// Every message accepted ends with its outcome, here `Delivered`, without
/// anyone calling `flush`.
pub async fn every_message_gets_its_outcome_without_a_flush(make: &impl SegmentFactory) {
    let client = make.make(SegmentScript::Accepting).await;

    let pending = send(&*client, 25).await;

    let ended = outcomes(pending).await;
    assert_eq!(
        ended,
        vec![Outcome::Delivered; 25],
        "every message delivered"
    );
}

/// When Segment keeps failing, each message ends as `Failed` — an outcome, not an
/// error of `identify` or a hang.
pub async fn failed_deliveries_are_outcomes_too(make: &impl SegmentFactory) {
    let client = make.make(SegmentScript::Failing).await;

    let pending = send(&*client, 5).await;

    for (n, outcome) in outcomes(pending).await.into_iter().enumerate() {
        assert!(
            matches!(outcome, Outcome::Failed(_)),
            "message {n} ended {outcome:?}, not Failed"
        );
    }
}

/// When Segment refuses messages as malformed, each ends as `Rejected`.
pub async fn rejected_messages_are_outcomes_too(make: &impl SegmentFactory) {
    let client = make.make(SegmentScript::Rejecting).await;

    let pending = send(&*client, 3).await;

    for (n, outcome) in outcomes(pending).await.into_iter().enumerate() {
        assert!(
            matches!(outcome, Outcome::Rejected(_)),
            "message {n} ended {outcome:?}, not Rejected"
        );
    }
}

/// `flush` returns once every message accepted before it has its outcome: right
/// after it, every earlier outcome is ready. With nothing sent it returns at once.
pub async fn flush_waits_for_every_earlier_outcome(make: &impl SegmentFactory) {
    let client = make.make(SegmentScript::Slow).await;
    within("flush with nothing sent", client.flush())
        .await
        .unwrap_or_else(|e| panic!("flush with nothing sent: {e}"));
    let mut pending = send(&*client, 10).await;

    within("flush", client.flush())
        .await
        .unwrap_or_else(|e| panic!("flush: {e}"));

    for (n, outcome) in pending.iter_mut().enumerate() {
        assert_eq!(
            ready_now(outcome),
            Some(Outcome::Delivered),
            "message {n}'s outcome is ready once flush returns"
        );
    }
}

/// `close_and_flush` delivers what was accepted before it; then `identify`,
/// `flush` and `close_and_flush` all return [`SegmentError::Closed`].
pub async fn a_closed_client_refuses_every_call(make: &impl SegmentFactory) {
    let client = make.make(SegmentScript::Accepting).await;
    let mut pending = send(&*client, 3).await;

    within("close_and_flush", client.close_and_flush(crate::DEADLINE))
        .await
        .unwrap_or_else(|e| panic!("close_and_flush: {e}"));

    for (n, outcome) in pending.iter_mut().enumerate() {
        assert_eq!(
            ready_now(outcome),
            Some(Outcome::Delivered),
            "message {n} delivered by close_and_flush"
        );
    }
    let refused = within("identify after close", client.identify(message(9))).await;
    assert_eq!(
        refused.err(),
        Some(SegmentError::Closed),
        "identify after close"
    );
    assert_eq!(
        within("flush after close", client.flush()).await,
        Err(SegmentError::Closed)
    );
    assert_eq!(
        within(
            "close after close",
            client.close_and_flush(Duration::from_secs(1))
        )
        .await,
        Err(SegmentError::Closed)
    );
}

/// When messages cannot get their outcome in time, `close_and_flush` returns
/// [`SegmentError::DrainTimeout`] with its timeout once that passed, and the
/// client is closed all the same.
pub async fn close_and_flush_gives_up_after_its_timeout(make: &impl SegmentFactory) {
    let client = make.make(SegmentScript::Unresponsive).await;
    let _pending = send(&*client, 1).await;
    let timeout = Duration::from_millis(200);

    let closed = within("close_and_flush", client.close_and_flush(timeout)).await;

    assert_eq!(closed, Err(SegmentError::DrainTimeout(timeout)));
    let refused = within("identify after close", client.identify(message(9))).await;
    assert_eq!(
        refused.err(),
        Some(SegmentError::Closed),
        "identify after close"
    );
}

/// Once Segment refuses the write key, the message ends `Failed(Unauthorized)` and
/// every later `identify` returns [`SegmentError::InvalidWriteKey`].
pub async fn an_invalid_write_key_latches(make: &impl SegmentFactory) {
    let client = make.make(SegmentScript::Unauthorized).await;
    let pending = send(&*client, 1).await;

    let ended = outcomes(pending).await;

    assert_eq!(ended, [Outcome::Failed(DeliveryError::Unauthorized)]);
    for n in 1..3 {
        let refused = within("identify after a 401", client.identify(message(n))).await;
        assert_eq!(
            refused.err(),
            Some(SegmentError::InvalidWriteKey),
            "identify {n} after the 401"
        );
    }
}
