//! Failures worth another attempt are retried until delivered; the others are not.

use std::time::{Duration, Instant};

use segment_sync_adapters::segment::SegmentConfig;
use segment_sync_domain::{DeliveryError, Outcome};
use segment_sync_testkit::customers::message;
use segment_sync_testkit::fake_segment::{FakeSegment, Reply, SegmentMode};

use crate::helpers::{client, config, enqueue, flush_and_settle, quick_retries};

/// A fake that answers `first` to the first request, then 200.
async fn failing_once(first: Reply) -> FakeSegment {
    FakeSegment::scripted(move |request| {
        if request.number == 1 {
            first.clone()
        } else {
            Reply::ok()
        }
    })
    .await
}

/// The `X-Retry-Count` of every request, in order.
fn retry_counts(segment: &FakeSegment) -> Vec<Option<String>> {
    segment
        .received()
        .iter()
        .map(|r| r.header("x-retry-count").map(str::to_owned))
        .collect()
}

/// The retry carries `X-Retry-Count: 1` and the same message; the first did not.
fn assert_retried_once(segment: &FakeSegment) {
    let requests = segment.received();
    assert_eq!(requests.len(), 2);
    assert_eq!(retry_counts(segment), [None, Some("1".to_owned())]);
    assert_eq!(requests[0].message_ids(), requests[1].message_ids());
}

#[tokio::test]
async fn retried_statuses_are_sent_again_until_delivered() {
    for status in [500, 502, 503, 504, 408, 410, 460] {
        let segment = failing_once(Reply::status(status)).await;
        let client = client(config(segment.url()));

        let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

        assert_eq!(outcomes, vec![Outcome::Delivered], "status {status}");
        assert_retried_once(&segment);
        let stats = client.stats();
        assert_eq!((stats.requests, stats.retries, stats.delivered), (2, 1, 1));
    }
}

#[tokio::test]
async fn rate_limiting_waits_as_long_as_retry_after_asks() {
    let segment = failing_once(Reply::status(429).header("Retry-After", "1")).await;
    let client = client(config(segment.url()));
    let started = Instant::now();

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Delivered]);
    assert_retried_once(&segment);
    // The policy's own backoff is milliseconds: only Retry-After explains a second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_answer_slower_than_the_request_timeout_is_retried() {
    let segment = failing_once(Reply::ok().after(Duration::from_secs(2))).await;
    let client = client(SegmentConfig {
        request_timeout: Duration::from_millis(200),
        ..config(segment.url())
    });

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Delivered]);
    assert_retried_once(&segment);
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    let segment = failing_once(Reply::Reset).await;
    let client = client(config(segment.url()));

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Delivered]);
    assert_eq!(retry_counts(&segment), [None, Some("1".to_owned())]);
    assert_eq!(
        segment
            .received()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [None, Some(200)],
        "the first connection was reset unanswered"
    );
    assert_eq!(client.stats().retries, 1);
}

#[tokio::test]
async fn not_implemented_is_not_retried() {
    let segment = FakeSegment::scripted(|_| Reply::status(501)).await;
    let client = client(config(segment.url()));

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    let error = DeliveryError::ServerError { status: 501 };
    assert_eq!(outcomes, vec![Outcome::Failed(error.clone())]);
    assert_eq!(error.to_string(), "501 Not Implemented");
    assert_eq!(client.stats().failed, 1);
    assert_eq!(segment.requests(), 1);
}

#[tokio::test]
async fn exhausted_attempts_fail_with_max_retries_exceeded_and_flush_still_returns() {
    let segment = FakeSegment::start(SegmentMode::Down).await;
    let client = client(SegmentConfig {
        retry: quick_retries(3),
        ..config(segment.url())
    });

    let outcomes =
        flush_and_settle(&client, enqueue(&client, [message(1), message(2)]).await).await;

    let expected = Outcome::Failed(DeliveryError::MaxRetriesExceeded {
        last: Box::new(DeliveryError::ServerError { status: 500 }),
    });
    assert_eq!(outcomes, vec![expected.clone(), expected.clone()]);
    if let Outcome::Failed(error) = &expected {
        assert_eq!(
            error.to_string(),
            "Max retries exceeded (last: 500 Internal Server Error)"
        );
        assert_eq!(error.code(), "max_retries_exceeded");
    }
    assert_eq!(
        retry_counts(&segment),
        [None, Some("1".to_owned()), Some("2".to_owned())]
    );
    let stats = client.stats();
    assert_eq!((stats.failed, stats.delivered, stats.retries), (2, 0, 2));
}
