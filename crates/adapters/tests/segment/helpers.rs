//! Client configurations and the steps every test takes. The server is the
//! testkit's fake Segment (or wiremock, where a test pins exact matchers), and
//! the messages are the testkit's numbered customers'.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use segment_sync_adapters::segment::{HttpSegmentClient, SegmentConfig};
use segment_sync_domain::retry::{RetryPolicy, RetryableStatuses};
use segment_sync_domain::{Identify, Outcome, WriteKey};
use segment_sync_ports::{PendingOutcome, SegmentClient};
pub use segment_sync_testkit::fake_segment::WRITE_KEY;

/// The longest any single test step may take before the test fails.
pub const STEP_LIMIT: Duration = Duration::from_secs(40);

pub fn write_key() -> WriteKey {
    WriteKey::parse(Some(WRITE_KEY)).unwrap()
}

/// Retries in milliseconds, so that a test with many retries stays quick.
pub fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        statuses: RetryableStatuses::Segment,
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(300),
        time_budget: Duration::from_secs(60),
    }
}

/// A client configuration for a local server: quick retries, fixed jitter, and a
/// flush interval long enough that batches go out on `flush` or when full, which
/// makes batch boundaries predictable.
pub fn config(endpoint: &str) -> SegmentConfig {
    SegmentConfig {
        retry: quick_retries(5),
        jitter_seed: Some(7),
        flush_interval: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..SegmentConfig::new(endpoint, write_key())
    }
}

pub fn client(config: SegmentConfig) -> HttpSegmentClient {
    HttpSegmentClient::new(config).expect("client builds")
}

/// Runs a step with a deadline so that a hang fails the test instead of blocking it.
pub async fn within<T>(step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_LIMIT, step)
        .await
        .expect("step did not finish in time")
}

/// Enqueues every message and keeps their pending outcomes.
pub async fn enqueue(
    client: &HttpSegmentClient,
    messages: impl IntoIterator<Item = Identify>,
) -> Vec<PendingOutcome> {
    let mut pending = Vec::new();
    for message in messages {
        pending.push(within(client.identify(message)).await.expect("accepted"));
    }
    pending
}

/// Flushes, then reads every outcome, which `flush` promises are all known by now.
pub async fn flush_and_settle(
    client: &HttpSegmentClient,
    pending: Vec<PendingOutcome>,
) -> Vec<Outcome> {
    within(client.flush()).await.expect("flush");
    pending
        .into_iter()
        .map(|outcome| {
            // Unconstrained: tokio's cooperative budget would otherwise report a
            // ready outcome as pending after a hundred or so polls.
            tokio::task::unconstrained(outcome)
                .now_or_never()
                .expect("every outcome is known once flush returns")
        })
        .collect()
}
