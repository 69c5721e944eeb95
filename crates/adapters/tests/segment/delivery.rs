//! What goes over the wire when everything works.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use segment_sync_adapters::segment::SegmentConfig;
use segment_sync_domain::{Outcome, LIBRARY_NAME, LIBRARY_VERSION};
use segment_sync_ports::{SegmentClient, SegmentError};
use segment_sync_testkit::customers::{message, messages};
use segment_sync_testkit::fake_segment::{FakeSegment, SegmentMode};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{client, config, enqueue, flush_and_settle, within, WRITE_KEY};

#[tokio::test]
async fn one_identify_is_one_authenticated_batch_post_with_the_tracking_api_shape() {
    let server = MockServer::start().await;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"));
    Mock::given(method("POST"))
        .and(path("/v1/batch"))
        .and(header(
            "authorization",
            format!("Basic {credentials}").as_str(),
        ))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(config(&server.uri()));

    let sent = message(1);
    let outcomes = flush_and_settle(&client, enqueue(&client, [sent.clone()]).await).await;

    assert_eq!(outcomes, vec![Outcome::Delivered]);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].headers.get("content-encoding").is_none());
    assert!(requests[0].headers.get("x-retry-count").is_none());
    let body: Value = serde_json::from_slice(&requests[0].body).expect("a JSON body");
    let expected: Value = serde_json::from_str(sent.json()).unwrap();
    assert_eq!(body["batch"], Value::Array(vec![expected]));
    let sent_at = body["sentAt"].as_str().expect("sentAt");
    OffsetDateTime::parse(sent_at, &Rfc3339).expect("sentAt is RFC 3339");
    assert_eq!(body["context"]["library"]["name"], LIBRARY_NAME);
    assert_eq!(body["context"]["library"]["version"], LIBRARY_VERSION);
    let stats = client.stats();
    assert_eq!((stats.requests, stats.delivered, stats.queued), (1, 1, 0));
    assert!(!format!("{client:?}").contains(WRITE_KEY));
}

#[tokio::test]
async fn an_endpoint_with_a_trailing_slash_or_v1_posts_to_v1_batch() {
    for suffix in ["/", "/v1", "/v1/"] {
        // The fake serves only /v1/batch: any other path would fail the message.
        let segment = FakeSegment::start(SegmentMode::Accept).await;
        let client = client(config(&format!("{}{suffix}", segment.url())));

        let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

        assert_eq!(
            outcomes,
            vec![Outcome::Delivered],
            "endpoint suffix {suffix}"
        );
        assert_eq!(segment.requests(), 1, "endpoint suffix {suffix}");
    }
}

#[tokio::test]
async fn five_thousand_messages_go_in_batches_within_segments_limits_each_once() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let client = client(config(segment.url()));
    let sent = messages(5_000);
    let expected: Vec<String> = sent.iter().map(|m| m.message_id().to_string()).collect();

    let outcomes = flush_and_settle(&client, enqueue(&client, sent).await).await;

    assert!(outcomes.iter().all(Outcome::is_delivered));
    let requests = segment.received();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        let ids = request.message_ids();
        assert!(
            request.wire_len < 500_000,
            "body of {} bytes",
            request.wire_len
        );
        assert!(
            !ids.is_empty() && ids.len() <= 2_500,
            "{} messages",
            ids.len()
        );
        for id in ids {
            *seen.entry(id).or_default() += 1;
        }
    }
    // Messages of several hundred bytes: the body limit, not the count, must have
    // cut the batches.
    assert!(requests.len() >= 3, "{} requests", requests.len());
    assert_eq!(seen.len(), expected.len());
    for id in &expected {
        assert_eq!(seen.get(id.as_str()), Some(&1), "{id}");
    }
    assert_eq!(client.stats().delivered, 5_000);
}

#[tokio::test]
async fn gzip_bodies_decompress_to_the_same_json_and_say_so() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let client = client(SegmentConfig {
        gzip: true,
        ..config(segment.url())
    });
    let sent = messages(50);
    let expected: Vec<Value> = sent
        .iter()
        .map(|m| serde_json::from_str(m.json()).unwrap())
        .collect();

    let outcomes = flush_and_settle(&client, enqueue(&client, sent).await).await;

    assert!(outcomes.iter().all(Outcome::is_delivered));
    let requests = segment.received();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].is_gzip());
    assert!(requests[0].wire_len < requests[0].body.len() / 2);
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    let body = requests[0].json();
    assert_eq!(body["batch"], Value::Array(expected));
    assert_eq!(body["context"]["library"]["name"], LIBRARY_NAME);
}

#[tokio::test]
async fn a_partial_batch_goes_out_after_the_flush_interval_without_a_flush() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let client = client(SegmentConfig {
        flush_interval: Duration::from_millis(20),
        ..config(segment.url())
    });

    let mut pending = enqueue(&client, [message(1), message(2)]).await;

    assert_eq!(within(pending.remove(0)).await, Outcome::Delivered);
    assert_eq!(within(pending.remove(0)).await, Outcome::Delivered);
    assert_eq!(segment.requests(), 1);
}

#[tokio::test]
async fn close_and_flush_delivers_what_was_queued_then_refuses_every_call() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let client = client(config(segment.url()));
    let pending = enqueue(&client, messages(10)).await;

    within(client.close_and_flush(Duration::from_secs(10)))
        .await
        .expect("drained");

    for outcome in pending {
        assert_eq!(within(outcome).await, Outcome::Delivered);
    }
    assert_eq!(segment.message_count(), 10);
    assert_eq!(
        client.identify(message(11)).await.unwrap_err(),
        SegmentError::Closed
    );
    assert_eq!(client.flush().await.unwrap_err(), SegmentError::Closed);
    assert_eq!(
        client
            .close_and_flush(Duration::from_secs(1))
            .await
            .unwrap_err(),
        SegmentError::Closed
    );
}

#[tokio::test]
async fn close_and_flush_reports_a_drain_that_outlives_its_timeout() {
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_secs(2))).await;
    let client = client(config(segment.url()));
    let pending = enqueue(&client, [message(1)]).await;

    let result = within(client.close_and_flush(Duration::from_millis(50))).await;

    assert_eq!(
        result.unwrap_err(),
        SegmentError::DrainTimeout(Duration::from_millis(50))
    );
    // The batch still goes on in the background and gets its outcome.
    assert_eq!(
        within(pending.into_iter().next().unwrap()).await,
        Outcome::Delivered
    );
}
