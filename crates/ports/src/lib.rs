//! The ports of segment-sync: what the application needs from the outside world,
//! said in domain types only.
//!
//! - [`SegmentClient`]: sends identify messages; each ends with one [`Outcome`].
//! - [`CustomerSource`]: reads commercetools customers, page by page or one by id.
//! - [`SyncStateStore`]: remembers what was delivered, the high-water mark, dead
//!   letters and run history.
//! - [`RegulationClient`]: asks Segment to delete or suppress users (workspace
//!   regulations of the Public API) and reads their status.
//! - [`SelfCheck`]: an adapter describes whether it works here, for `check`.
//!
//! Adapters implement them; `app` holds them as `Arc<dyn Port>`. With the `mocks`
//! feature each has a mockall mock (`MockSegmentClient`, …) for tests.

mod check;
mod regulations;
mod segment;
mod source;
mod state;

pub use check::{CheckLine, SelfCheck};
pub use regulations::{
    RegulationClient, RegulationError, RegulationType, MAX_SUBJECTS_PER_REGULATION,
    MONTHLY_REGULATED_USERS_LIMIT,
};
pub use segment::{PendingOutcome, SegmentClient, SegmentError};
pub use source::{
    CustomerPages, CustomerQuery, CustomerSource, Page, SourceCapabilities, SourceError,
    SourceRecord,
};
pub use state::{
    run_holder, Claimed, DeadLetterCursor, DeletionRecord, DeletionsSent, Delivered,
    DeliveredRecord, DeliveredRow, Forgotten, RunLease, RunStart, Settlement, StateError,
    StoredDeadLetter, Subject, SyncStateStore, RUN_HOLDER_PREFIX,
};

#[cfg(any(test, feature = "mocks"))]
pub use regulations::MockRegulationClient;
#[cfg(any(test, feature = "mocks"))]
pub use segment::MockSegmentClient;
#[cfg(any(test, feature = "mocks"))]
pub use source::{MockCustomerPages, MockCustomerSource};
#[cfg(any(test, feature = "mocks"))]
pub use state::MockSyncStateStore;

pub use segment_sync_domain::{Identify, Outcome};
