//! In-memory implementations of the ports, for tests of what uses the ports.
//!
//! Each keeps exactly the rules its port documents — each passes its port's suite
//! in [`crate::contract`] — and adds what a test needs to drive and observe it:
//!
//! - [`MemoryStateStore`]: a [`SyncStateStore`](segment_sync_ports::SyncStateStore)
//!   that can be made to fail, looked into ([`MemoryStateStore::snapshot`]) and
//!   waited on ([`MemoryStateStore::wait_until`]);
//! - [`MemorySource`]: a [`CustomerSource`](segment_sync_ports::CustomerSource)
//!   over customers and malformed records, with a page size, an "unavailable"
//!   switch and a log of lookups and walks;
//! - [`MemorySegment`]: a [`SegmentClient`](segment_sync_ports::SegmentClient)
//!   that records every message and answers by a script of [`SegmentBehaviour`]s
//!   (deliver, fail, reject, refuse, held by a [`Gate`], late, 401);
//! - [`MemoryRegulations`]: a [`RegulationClient`](segment_sync_ports::RegulationClient)
//!   that records every regulation, serves a settable status and can be told to fail.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use segment_sync_domain::identify::identify;
//! use segment_sync_domain::{Customer, DeliveryError, Outcome, UserIdStrategy};
//! use segment_sync_ports::{SegmentClient, SegmentError};
//! use segment_sync_testkit::memory::{MemorySegment, SegmentBehaviour};
//!
//! let customer = Customer {
//!     id: "c1".into(),
//!     email: Some("ada@example.com".into()),
//!     ..Customer::default()
//! };
//! let message = || identify(&customer, UserIdStrategy::Email).unwrap();
//! let segment = MemorySegment::new();
//! segment.behave_next(SegmentBehaviour::Unauthorized);
//!
//! let outcome = segment.identify(message()).await.unwrap().await;
//! assert_eq!(outcome, Outcome::Failed(DeliveryError::Unauthorized));
//! let refused = segment.identify(message()).await.unwrap_err();
//! assert_eq!(refused, SegmentError::InvalidWriteKey);
//! assert_eq!(segment.sent().len(), 1);
//! # }
//! ```

mod regulations;
mod segment;
mod source;
mod state;

pub use regulations::{MemoryRegulation, MemoryRegulations};
pub use segment::{Gate, MemorySegment, SegmentBehaviour};
pub use source::{MemorySource, DEFAULT_PAGE_SIZE};
pub use state::{MemoryStateStore, StateSnapshot};
