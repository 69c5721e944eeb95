//! Throughput of the Segment client into the testkit's fake Segment, which
//! acknowledges at once and only counts what it receives.
//!
//! `cargo bench -p segment-sync-adapters --bench segment_client [-- MESSAGES]`

use std::time::{Duration, Instant};

use segment_sync_adapters::segment::{HttpSegmentClient, SegmentConfig};
use segment_sync_domain::WriteKey;
use segment_sync_ports::SegmentClient;
use segment_sync_testkit::customers::message;
use segment_sync_testkit::fake_segment::{FakeSegment, WRITE_KEY};

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(200_000);

    let segment = FakeSegment::builder().counts_only().start().await;

    // Built before the clock starts: the benchmark measures delivery, not the
    // transformation.
    let messages: Vec<_> = (0..total).map(message).collect();

    let key = WriteKey::parse(Some(WRITE_KEY)).unwrap();
    let client = HttpSegmentClient::new(SegmentConfig::new(segment.url(), key)).unwrap();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(total);
    for message in messages {
        pending.push(client.identify(message).await.unwrap());
    }
    client
        .close_and_flush(Duration::from_secs(120))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let mut delivered = 0usize;
    for outcome in pending {
        delivered += usize::from(outcome.await.is_delivered());
    }
    assert_eq!(delivered, total, "every message delivered");
    assert_eq!(
        segment.message_count(),
        total as u64,
        "the fake counted them all"
    );

    let stats = client.stats();
    println!(
        "segment client: {:.0} messages/s ({total} messages in {:.2?}, {} requests, {:.1} MB sent, max queued {})",
        total as f64 / elapsed.as_secs_f64(),
        elapsed,
        stats.requests,
        segment.bytes_received() as f64 / 1e6,
        stats.max_queued,
    );
}
