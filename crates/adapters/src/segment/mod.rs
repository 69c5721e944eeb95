//! The [`SegmentClient`](segment_sync_ports::SegmentClient) port over Segment's
//! HTTP Tracking API (`POST {endpoint}/v1/batch`).
//!
//! [`HttpSegmentClient`] takes messages into a bounded queue, packs them into
//! batches within Segment's limits, keeps a bounded number of batches in flight and
//! retries them by the domain's [`RetryPolicy`](segment_sync_domain::retry::RetryPolicy).
//! Every accepted message ends with exactly one outcome. What it holds in memory is
//! bounded by `queue_capacity` messages plus `max_in_flight` batches, whatever the
//! volume: a caller that produces faster than Segment accepts waits in
//! [`identify`](segment_sync_ports::SegmentClient::identify).

mod client;
mod config;
mod probe;
mod sender;
mod stats;

pub use client::HttpSegmentClient;
pub use config::{SegmentConfig, SegmentSetupError, DEFAULT_ENDPOINT};
pub use probe::probe;
pub use stats::SegmentStats;
