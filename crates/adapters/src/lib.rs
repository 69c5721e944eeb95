//! The adapters of segment-sync: the ports implemented over real I/O.
//!
//! Each adapter owns its client library (reqwest, rusqlite, tokio-postgres,
//! tokio's file I/O) and translates that library's errors into its port's error
//! at its edge.
//!
//! - [`segment`]: `SegmentClient` over Segment's HTTP Tracking API.
//! - [`segment_public_api`]: `RegulationClient` over Segment's Public API
//!   (deletion and suppression of users).
//! - [`commercetools`]: `CustomerSource` over the commercetools HTTP API.
//! - [`file_source`]: `CustomerSource` over export files and stdin, streamed.
//! - [`sqlite_state`]: `SyncStateStore` on SQLite.
//! - [`postgres_state`]: `SyncStateStore` on PostgreSQL, shared by replicas.

pub mod commercetools;
pub mod file_source;
pub mod postgres_state;
mod record;
mod retry_after;
pub mod segment;
pub mod segment_public_api;
pub mod sqlite_state;
mod state_values;

mod url_display;

pub use url_display::without_credentials;
