//! Failures worth another attempt are retried until delivered; the others are not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segment_sync_adapters::segment::SegmentConfig;
use segment_sync_domain::{DeliveryError, Outcome};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    body_json, client, config, enqueue, flush_and_settle, message, message_ids, quick_retries,
    Reply, ScriptedServer,
};

/// A server that answers `first` once, then 200.
async fn failing_once(first: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/batch"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/batch"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// The retry carries `X-Retry-Count: 1` and the same message; the first did not.
async fn assert_retried_once(server: &MockServer) {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].headers.get("x-retry-count").is_none());
    assert_eq!(requests[1].headers.get("x-retry-count").unwrap(), "1");
    assert_eq!(
        message_ids(&body_json(&requests[0].body, false)),
        message_ids(&body_json(&requests[1].body, false))
    );
}

#[tokio::test]
async fn retried_statuses_are_sent_again_until_delivered() {
    for status in [500, 502, 503, 504, 408, 410, 460] {
        let server = failing_once(ResponseTemplate::new(status)).await;
        let client = client(config(&server.uri()));

        let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

        assert_eq!(outcomes, vec![Outcome::Delivered], "status {status}");
        assert_retried_once(&server).await;
        let stats = client.stats();
        assert_eq!((stats.requests, stats.retries, stats.delivered), (2, 1, 1));
    }
}

#[tokio::test]
async fn rate_limiting_waits_as_long_as_retry_after_asks() {
    let server = failing_once(ResponseTemplate::new(429).insert_header("Retry-After", "1")).await;
    let client = client(config(&server.uri()));
    let started = Instant::now();

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Delivered]);
    assert_retried_once(&server).await;
    // The policy's own backoff is milliseconds: only Retry-After explains a second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_answer_slower_than_the_request_timeout_is_retried() {
    let server = failing_once(ResponseTemplate::new(200).set_delay(Duration::from_secs(2))).await;
    let client = client(SegmentConfig {
        request_timeout: Duration::from_millis(200),
        ..config(&server.uri())
    });

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Delivered]);
    assert_retried_once(&server).await;
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    let retry_counts: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = Arc::clone(&retry_counts);
    let server = ScriptedServer::start(move |request| {
        let mut seen = record.lock().unwrap();
        seen.push(request.header("x-retry-count").map(str::to_owned));
        if seen.len() == 1 {
            Reply::Reset
        } else {
            Reply::ok()
        }
    })
    .await;
    let client = client(config(&server.url));

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Delivered]);
    assert_eq!(
        *retry_counts.lock().unwrap(),
        vec![None, Some("1".to_owned())]
    );
    assert_eq!(client.stats().retries, 1);
}

#[tokio::test]
async fn not_implemented_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(501))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(config(&server.uri()));

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    let error = DeliveryError::ServerError { status: 501 };
    assert_eq!(outcomes, vec![Outcome::Failed(error.clone())]);
    assert_eq!(error.to_string(), "501 Not Implemented");
    assert_eq!(client.stats().failed, 1);
}

#[tokio::test]
async fn exhausted_attempts_fail_with_max_retries_exceeded_and_flush_still_returns() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let client = client(SegmentConfig {
        retry: quick_retries(3),
        ..config(&server.uri())
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
    let requests = server.received_requests().await.unwrap();
    let retry_counts: Vec<Option<String>> = requests
        .iter()
        .map(|r| {
            r.headers
                .get("x-retry-count")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        retry_counts,
        vec![None, Some("1".to_owned()), Some("2".to_owned())]
    );
    let stats = client.stats();
    assert_eq!((stats.failed, stats.delivered, stats.retries), (2, 0, 2));
}
