//! Volume: nothing lost under faults, memory bounded under a slow server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use segment_sync_adapters::segment::SegmentConfig;
use segment_sync_domain::batch::BatchLimits;
use segment_sync_domain::Outcome;
use segment_sync_ports::SegmentClient;

use segment_sync_testkit::customers::{message, messages};
use segment_sync_testkit::fake_segment::{FakeSegment, Reply, SegmentMode};

use crate::helpers::{client, config, enqueue, flush_and_settle, quick_retries, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_thirty_percent_faults_every_message_is_delivered_exactly_once() {
    // Seeded, so that the run is the same fault pattern each time (up to the
    // order in which concurrent requests reach the server).
    let faults = Mutex::new(fastrand::Rng::with_seed(0x5eed));
    let segment = FakeSegment::scripted(move |_| {
        let roll = faults.lock().unwrap().f64();
        if roll < 0.10 {
            Reply::status(500)
        } else if roll < 0.20 {
            Reply::status(429).header("Retry-After", "0")
        } else if roll < 0.30 {
            Reply::Reset
        } else {
            Reply::ok()
        }
    })
    .await;
    let client = client(SegmentConfig {
        limits: BatchLimits {
            max_messages: 100,
            ..BatchLimits::default()
        },
        retry: quick_retries(30),
        flush_interval: Duration::from_millis(10),
        ..config(segment.url())
    });
    let sent = messages(10_000);
    let expected: Vec<String> = sent.iter().map(|m| m.message_id().to_string()).collect();

    let outcomes = flush_and_settle(&client, enqueue(&client, sent).await).await;

    let lost: Vec<&Outcome> = outcomes.iter().filter(|o| !o.is_delivered()).collect();
    assert!(
        lost.is_empty(),
        "{} not delivered: {:?}",
        lost.len(),
        lost.first()
    );
    let accepted = segment.deliveries_by_message_id();
    assert_eq!(accepted.len(), 10_000);
    for id in &expected {
        assert_eq!(accepted.get(id), Some(&1), "{id}");
    }
    let stats = client.stats();
    assert_eq!(
        (stats.delivered, stats.failed, stats.rejected),
        (10_000, 0, 0)
    );
    // The faults really happened: about 30 of every 100 requests were retries.
    assert!(stats.retries >= 20, "{stats:?}");
    assert_eq!(stats.requests, segment.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_makes_callers_wait_instead_of_memory_grow() {
    const CAPACITY: usize = 2_000;
    const IN_FLIGHT: usize = 2;
    // The first answers are slow enough for any producer to fill the queue while
    // they are awaited; the rest are merely slow. Counts only: a hundred thousand
    // parsed messages would be memory for nothing.
    let segment = FakeSegment::builder()
        .counts_only()
        .script(|request| {
            let slow = request.number <= IN_FLIGHT as u64;
            Reply::ok().after(Duration::from_millis(if slow { 500 } else { 5 }))
        })
        .start()
        .await;
    let client = Arc::new(client(SegmentConfig {
        queue_capacity: CAPACITY,
        max_in_flight: IN_FLIGHT,
        flush_interval: Duration::from_millis(10),
        ..config(segment.url())
    }));

    let producer = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            let mut pending = Vec::with_capacity(100_000);
            for index in 0..100_000 {
                pending.push(client.identify(message(index)).await.expect("accepted"));
            }
            pending
        })
    };
    let pending = within(producer).await.expect("producer");
    let outcomes = flush_and_settle(&client, pending).await;

    assert!(outcomes.iter().all(Outcome::is_delivered));
    let stats = client.stats();
    assert_eq!(stats.delivered, 100_000);
    assert_eq!(segment.message_count(), 100_000);
    assert_eq!(stats.queued, 0);
    // The queue filled (the producer really was held back) and never overflowed.
    assert_eq!(stats.max_queued, CAPACITY as u64);
    assert!(
        stats.max_in_flight <= (IN_FLIGHT * CAPACITY) as u64,
        "{stats:?}"
    );
}

#[tokio::test]
async fn flush_waits_for_batches_already_in_flight() {
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(100))).await;
    let client = client(SegmentConfig {
        limits: BatchLimits {
            max_messages: 5,
            ..BatchLimits::default()
        },
        ..config(segment.url())
    });

    let pending = enqueue(&client, messages(23)).await;
    let outcomes = flush_and_settle(&client, pending).await;

    assert_eq!(outcomes.len(), 23);
    assert!(outcomes.iter().all(Outcome::is_delivered));
    assert_eq!(client.stats().settled(), 23);
    within(client.flush())
        .await
        .expect("an idle flush returns at once");
}
