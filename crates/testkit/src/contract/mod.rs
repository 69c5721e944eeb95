//! Contract suites: every documented rule of a port, as a test any implementation
//! can run.
//!
//! One suite per port — [`state`] for [`SyncStateStore`], [`source`] for
//! [`CustomerSource`], [`segment`] for [`SegmentClient`], [`regulations`] for
//! [`RegulationClient`] — each a set of public
//! async functions, one per rule, in the manner of `object_store`'s
//! `integration` module. Every implementation runs its port's suite from its own
//! tests: the real adapters in `segment-sync-adapters`, the in-memory ports of
//! [`crate::memory`] in this crate's tests, and the next team's adapter too.
//!
//! # Running a suite against a new adapter
//!
//! 1. Add the testkit to the crate's dev-dependencies
//!    (`segment-sync-testkit.workspace = true`); the test crate also needs
//!    `tokio` with its `macros` and `rt-multi-thread` features.
//! 2. Write a factory: an async function that returns a fresh instance, as
//!    anything that converts into a [`Subject`] (the adapter itself, or a
//!    [`Subject`] that keeps a temporary directory or a fake server alive with
//!    [`Subject::keeping`]):
//!    - state store: `async fn() -> impl Into<Subject<dyn SyncStateStore>>`, an
//!      empty store each time;
//!    - source: `async fn(SourceFixture) -> impl Into<Subject<dyn CustomerSource>>`,
//!      a source holding exactly the fixture's records, in pages of (about) its
//!      page size;
//!    - Segment client: `async fn(SegmentScript) -> impl Into<Subject<dyn SegmentClient>>`,
//!      a client whose Segment answers as the script says;
//!    - regulation client: `async fn(RegulationScript) -> impl Into<RegulationSubject>`,
//!      a client and the Segment it talks to, answering as the script says.
//! 3. Instantiate the suite with one line in a test file, here for the
//!    in-memory store:
//!
//! ```
//! use segment_sync_testkit::memory::MemoryStateStore;
//!
//! async fn empty_store() -> MemoryStateStore {
//!     MemoryStateStore::new()
//! }
//!
//! segment_sync_testkit::state_store_contract!(empty_store);
//! # fn main() {}
//! ```
//!
//! The others are alike: `customer_source_contract!(factory)`,
//! `segment_client_contract!(factory)` and `regulation_client_contract!(factory)`. The adapters' instantiations
//! (`crates/adapters/tests/contracts`) show factories that keep a temporary
//! directory or a fake server alive; `crates/testkit/tests/contract.rs` those of
//! the in-memory ports.
//!
//! Each macro expands to a module `contract` holding one `#[tokio::test]` per
//! rule, so every test's name contains `contract` (`cargo test contract` runs
//! them all). To instantiate one suite twice in a file, put each line in its own
//! module. A rule that fails names what it expected in its panic message.
//!
//! A new rule is a new public function in its suite's module plus one line in its
//! macro; it then runs against every implementation at once.
//!
//! [`SyncStateStore`]: segment_sync_ports::SyncStateStore
//! [`CustomerSource`]: segment_sync_ports::CustomerSource
//! [`SegmentClient`]: segment_sync_ports::SegmentClient
//! [`RegulationClient`]: segment_sync_ports::RegulationClient

pub mod regulations;
pub mod segment;
pub mod source;
pub mod state;

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use segment_sync_ports::{CustomerSource, RegulationClient, SegmentClient, SyncStateStore};

use crate::DEADLINE;

/// Awaits `future`, failing the rule if it takes longer than [`DEADLINE`].
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {DEADLINE:?}"))
}

/// An implementation of a port under test, with what must live as long as it
/// does (a temporary directory, a fake server, a gate).
///
/// It dereferences to the port. The port is dropped before what it keeps.
pub struct Subject<P: ?Sized> {
    port: Arc<P>,
    kept: Vec<Box<dyn Any + Send + Sync>>,
}

impl<P: ?Sized> Subject<P> {
    /// A subject that keeps nothing else.
    pub fn new(port: Arc<P>) -> Self {
        Self {
            port,
            kept: Vec::new(),
        }
    }

    /// Keeps `guard` alive for as long as the subject.
    pub fn keeping(mut self, guard: impl Any + Send + Sync) -> Self {
        self.kept.push(Box::new(guard));
        self
    }

    /// The port, shared, for a rule that hands it to other tasks.
    pub fn port(&self) -> Arc<P> {
        Arc::clone(&self.port)
    }
}

impl<P: ?Sized> Deref for Subject<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.port
    }
}

impl<P: ?Sized> fmt::Debug for Subject<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("kept", &self.kept.len())
            .finish_non_exhaustive()
    }
}

impl<S: SyncStateStore + 'static> From<S> for Subject<dyn SyncStateStore> {
    fn from(store: S) -> Self {
        Self::new(Arc::new(store))
    }
}

impl<S: CustomerSource + 'static> From<S> for Subject<dyn CustomerSource> {
    fn from(source: S) -> Self {
        Self::new(Arc::new(source))
    }
}

impl<S: SegmentClient + 'static> From<S> for Subject<dyn SegmentClient> {
    fn from(client: S) -> Self {
        Self::new(Arc::new(client))
    }
}

impl<S: RegulationClient + 'static> From<S> for Subject<dyn RegulationClient> {
    fn from(client: S) -> Self {
        Self::new(Arc::new(client))
    }
}
