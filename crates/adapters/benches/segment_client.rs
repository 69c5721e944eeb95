//! Throughput of the Segment client into a local server that acknowledges at once.
//!
//! `cargo bench -p segment-sync-adapters --bench segment_client [-- MESSAGES]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use segment_sync_adapters::segment::{HttpSegmentClient, SegmentConfig};
use segment_sync_domain::identify::identify;
use segment_sync_domain::{Customer, UserIdStrategy, WriteKey};
use segment_sync_ports::SegmentClient;

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(200_000);

    let bodies = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&bodies);
    let app = Router::new().route(
        "/v1/batch",
        post(move |body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(body.len() as u64, Ordering::Relaxed);
                (StatusCode::OK, r#"{"success":true}"#)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Built before the clock starts: the benchmark measures delivery, not the
    // transformation.
    let messages: Vec<_> = (0..total)
        .map(|index| {
            let customer = Customer {
                id: format!("cust-{index:07}"),
                version: 1,
                email: Some(format!("user{index}@example.com")),
                first_name: Some("Ada".into()),
                last_name: Some("Lovelace".into()),
                last_modified_at: Some("2024-05-01T10:00:00.000Z".into()),
                ..Customer::default()
            };
            identify(&customer, UserIdStrategy::Email).unwrap()
        })
        .collect();

    let key = WriteKey::parse(Some("bench-write-key")).unwrap();
    let client = HttpSegmentClient::new(SegmentConfig::new(url, key)).unwrap();
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

    let stats = client.stats();
    println!(
        "segment client: {:.0} messages/s ({total} messages in {:.2?}, {} requests, {:.1} MB sent, max queued {})",
        total as f64 / elapsed.as_secs_f64(),
        elapsed,
        stats.requests,
        bodies.load(Ordering::Relaxed) as f64 / 1e6,
        stats.max_queued,
    );
}
