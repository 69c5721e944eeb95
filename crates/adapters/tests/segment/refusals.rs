//! 400 isolates the refused messages; 401 stops everything.

use std::time::Duration;

use segment_sync_adapters::segment::SegmentConfig;
use segment_sync_domain::batch::BatchLimits;
use segment_sync_domain::{DeliveryError, Outcome};
use segment_sync_ports::{SegmentClient, SegmentError};
use segment_sync_testkit::customers::{message, messages};
use segment_sync_testkit::fake_segment::{FakeSegment, Reply, SegmentMode};

use crate::helpers::{client, config, enqueue, flush_and_settle, within};

const REFUSAL: &str = r#"{"error":"traits.email is invalid"}"#;

#[tokio::test]
async fn a_bad_request_is_split_until_only_the_refused_message_is_rejected() {
    let sent = messages(100);
    let poisoned = 37;
    let poisoned_id = sent[poisoned].message_id().to_string();
    let refused = poisoned_id.clone();
    // Refuses, with 400, every batch that holds the poisoned messageId.
    let segment = FakeSegment::scripted(move |request| {
        if request.message_ids().contains(&refused) {
            Reply::status(400).body(REFUSAL)
        } else {
            Reply::ok()
        }
    })
    .await;
    let client = client(config(segment.url()));

    let outcomes = flush_and_settle(&client, enqueue(&client, sent.clone()).await).await;

    for (index, outcome) in outcomes.iter().enumerate() {
        if index == poisoned {
            assert_eq!(
                outcome,
                &Outcome::Rejected(DeliveryError::BadRequest {
                    detail: Some(REFUSAL.to_owned())
                })
            );
        } else {
            assert_eq!(outcome, &Outcome::Delivered, "message {index}");
        }
    }
    let requests = segment.received();
    assert_eq!(requests[0].message_ids().len(), 100);
    // Every good message went through in exactly one accepted request.
    let accepted = segment.deliveries_by_message_id();
    assert_eq!(accepted.len(), 99);
    assert!(!accepted.contains_key(&poisoned_id));
    assert!(accepted.values().all(|count| *count == 1));
    // Halving finds one message among 100 in about 2·log2(100) requests, not 100.
    assert!(requests.len() <= 16, "{} requests", requests.len());
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.rejected, stats.failed), (99, 1, 0));
}

#[tokio::test]
async fn an_invalid_write_key_fails_everything_queued_and_refuses_later_calls() {
    let segment = FakeSegment::start(SegmentMode::Unauthorized).await;
    // Ten-message batches, one at a time: the first answer arrives while the
    // other forty messages are still queued.
    let client = client(SegmentConfig {
        limits: BatchLimits {
            max_messages: 10,
            ..BatchLimits::default()
        },
        max_in_flight: 1,
        flush_interval: Duration::from_millis(5),
        ..config(segment.url())
    });

    let outcomes = flush_and_settle(&client, enqueue(&client, messages(50)).await).await;

    assert_eq!(outcomes.len(), 50);
    for outcome in &outcomes {
        assert_eq!(outcome, &Outcome::Failed(DeliveryError::Unauthorized));
    }
    assert_eq!(DeliveryError::Unauthorized.to_string(), "Invalid write key");
    assert_eq!(segment.requests(), 1);
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 50, 0));
    assert_eq!(
        within(client.identify(message(51))).await.unwrap_err(),
        SegmentError::InvalidWriteKey
    );
}

#[tokio::test]
async fn forbidden_is_as_fatal_as_unauthorized() {
    let segment = FakeSegment::scripted(|_| Reply::status(403)).await;
    let client = client(config(segment.url()));

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Failed(DeliveryError::Unauthorized)]);
    assert_eq!(
        client.identify(message(2)).await.unwrap_err(),
        SegmentError::InvalidWriteKey
    );
}
