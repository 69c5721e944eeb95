//! 400 isolates the refused messages; 401 stops everything.

use std::collections::HashMap;
use std::time::Duration;

use segment_sync_adapters::segment::SegmentConfig;
use segment_sync_domain::batch::BatchLimits;
use segment_sync_domain::{DeliveryError, Outcome};
use segment_sync_ports::{SegmentClient, SegmentError};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{
    body_json, client, config, enqueue, flush_and_settle, message, message_ids, messages, within,
};

const REFUSAL: &str = r#"{"error":"traits.email is invalid"}"#;

/// Refuses, with 400, every batch that holds the poisoned messageId.
struct RefusesBatchesHolding(String);

impl Respond for RefusesBatchesHolding {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if message_ids(&body_json(&request.body, false)).contains(&self.0) {
            ResponseTemplate::new(400).set_body_string(REFUSAL)
        } else {
            ResponseTemplate::new(200)
        }
    }
}

#[tokio::test]
async fn a_bad_request_is_split_until_only_the_refused_message_is_rejected() {
    let sent = messages(100);
    let poisoned = 37;
    let poisoned_id = sent[poisoned].message_id().to_string();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(RefusesBatchesHolding(poisoned_id.clone()))
        .mount(&server)
        .await;
    let client = client(config(&server.uri()));

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
    let requests = server.received_requests().await.unwrap();
    assert_eq!(message_ids(&body_json(&requests[0].body, false)).len(), 100);
    // Every good message went through in exactly one accepted request.
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        let ids = message_ids(&body_json(&request.body, false));
        if !ids.contains(&poisoned_id) {
            for id in ids {
                *accepted.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(accepted.len(), 99);
    assert!(accepted.values().all(|count| *count == 1));
    // Halving finds one message among 100 in about 2·log2(100) requests, not 100.
    assert!(requests.len() <= 16, "{} requests", requests.len());
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.rejected, stats.failed), (99, 1, 0));
}

#[tokio::test]
async fn an_invalid_write_key_fails_everything_queued_and_refuses_later_calls() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    // Ten-message batches, one at a time: the first answer arrives while the
    // other forty messages are still queued.
    let client = client(SegmentConfig {
        limits: BatchLimits {
            max_messages: 10,
            ..BatchLimits::default()
        },
        max_in_flight: 1,
        flush_interval: Duration::from_millis(5),
        ..config(&server.uri())
    });

    let outcomes = flush_and_settle(&client, enqueue(&client, messages(50)).await).await;

    assert_eq!(outcomes.len(), 50);
    for outcome in &outcomes {
        assert_eq!(outcome, &Outcome::Failed(DeliveryError::Unauthorized));
    }
    assert_eq!(DeliveryError::Unauthorized.to_string(), "Invalid write key");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 50, 0));
    assert_eq!(
        within(client.identify(message(51))).await.unwrap_err(),
        SegmentError::InvalidWriteKey
    );
}

#[tokio::test]
async fn forbidden_is_as_fatal_as_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    let client = client(config(&server.uri()));

    let outcomes = flush_and_settle(&client, enqueue(&client, [message(1)]).await).await;

    assert_eq!(outcomes, vec![Outcome::Failed(DeliveryError::Unauthorized)]);
    assert_eq!(
        client.identify(message(2)).await.unwrap_err(),
        SegmentError::InvalidWriteKey
    );
}
