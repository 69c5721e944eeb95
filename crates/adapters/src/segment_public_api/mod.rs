//! The [`RegulationClient`](segment_sync_ports::RegulationClient) port over
//! Segment's Public API (`https://api.segmentapis.com`): workspace regulations
//! that delete or suppress users by `userId`.
//!
//! - `POST {base}/regulations` with `{"regulationType", "subjectType": "USER_ID",
//!   "subjectIds"}` answers `{"data":{"regulateId"}}`;
//! - `GET {base}/regulations/{id}` answers `{"data":{"regulation":{"overallStatus"}}}`;
//! - `GET {base}/regulations?pagination.count=1` is `check`'s probe: it needs the
//!   same access as creating one, and changes nothing.
//!
//! Requests carry `Authorization: Bearer {token}`; the token is a
//! [`SecretString`](secrecy::SecretString) and a sensitive header, never printed.
//! 429 (with its `Retry-After`), 5xx and network failures are retried by the
//! domain's [`RetryPolicy::segment_public_api`](segment_sync_domain::retry::RetryPolicy::segment_public_api);
//! a 401/403 is final and latches: every later call fails without a request.

mod client;
mod config;

pub use client::SegmentPublicApi;
pub use config::{PublicApiConfig, PublicApiSetupError, DEFAULT_PUBLIC_API_URL};
