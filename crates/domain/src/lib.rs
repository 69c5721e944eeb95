//! The pure core of segment-sync: a commercetools Customer becomes a Segment
//! identify call.
//!
//! This crate does no I/O and cannot fail except by validation. It holds:
//! - [`customer`]: the commercetools Customer resource as serde types;
//! - [`identity`]: validated values ([`Email`], [`UserId`], [`WriteKey`], [`MessageId`]);
//! - [`identify`]: the transformation, [`identify::identify`] and
//!   [`IdentifyRules::identify`], and its outcome;
//! - [`mapping`]: the mapping file that chooses what goes to Segment ([`Mapping`]);
//! - [`batch`]: packing messages into Tracking API batches within Segment's limits;
//! - [`retry`]: which failures are retried and how long to wait;
//! - [`delivery`]: what became of a message, with the error messages and codes users see;
//! - [`webhook`]: commercetools Subscription payloads and their envelopes;
//! - [`sync`]: the records a sync keeps (dead letters, runs, counts);
//! - [`walk`]: how an API backfill splits the id space and paces its requests.
//!
//! ```
//! use segment_sync_domain::{identify::{identify, NotSent}, Customer, UserIdStrategy};
//!
//! let customer: Customer = serde_json::from_str(
//!     r#"{"id":"c1","version":3,"email":" Ada@Example.com ","firstName":"Ada",
//!         "lastModifiedAt":"2024-05-01T10:00:00.000Z"}"#,
//! ).unwrap();
//! let message = identify(&customer, UserIdStrategy::Email).unwrap();
//! assert_eq!(message.user_id().as_ref(), "ada@example.com");
//! let json: serde_json::Value = serde_json::from_str(message.json()).unwrap();
//! assert_eq!(json["traits"]["firstName"], "Ada");
//!
//! let no_email = Customer { id: "c2".into(), ..Customer::default() };
//! assert!(matches!(identify(&no_email, UserIdStrategy::Email), Err(NotSent::Skipped(_))));
//! ```

pub mod batch;
pub mod customer;
pub mod delivery;
pub mod identify;
pub mod identity;
pub mod mapping;
pub mod retry;
pub mod sync;
pub mod walk;
pub mod webhook;

pub use customer::Customer;
pub use delivery::{DeliveryError, Outcome};
pub use identify::{Fingerprint, Identify, IdentifyRules, NotSent, SkipReason};
pub use identity::{Email, EmailError, MessageId, UserId, UserIdStrategy, WriteKey, WriteKeyError};
pub use mapping::{Mapping, MappingError, MappingErrors, MappingProblem};

/// The library name this tool reports in every message's `context.library`.
pub const LIBRARY_NAME: &str = "segment-sync";
/// The library version reported in `context.library`: this crate's version.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The examples of `docs/api.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/api.md")]
pub struct ApiGuideExamples;
