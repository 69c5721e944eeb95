//! Every envelope and message kind, and what each ends in: delivered, unchanged,
//! skipped, rejected (dead-lettered), ignored, or a 500 for the sender to retry.

use axum::http::StatusCode;
use segment_sync_domain::DeliveryError;
use segment_sync_ports::SegmentError;
use serde_json::{json, Value};

use super::ada;
use crate::serve_support::*;

#[tokio::test]
async fn customer_created_identify_carries_the_customer() {
    let app = TestApp::new();

    let response = app.post_json(&customer_created(&ada())).await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json(), json!({"status": "delivered"}));
    let sent = app.segment.sent_json();
    assert_eq!(sent.len(), 1);
    let identify = &sent[0];
    assert_eq!(identify["type"], "identify");
    assert_eq!(identify["userId"], "ada@example.com");
    assert_eq!(identify["timestamp"], "2024-05-01T10:00:00.000Z");
    assert_eq!(identify["context"]["library"]["name"], "segment-sync");
    let traits = &identify["traits"];
    assert_eq!(traits["email"], "ada@example.com");
    assert_eq!(traits["firstName"], "Ada");
    assert_eq!(traits["lastName"], "Lovelace");
    assert_eq!(traits["name"], "Ada Lovelace");
    assert_eq!(traits["phone"], "+44 20 7946 0000");
    assert_eq!(traits["address"]["city"], "London");
    assert_eq!(traits["commercetoolsId"], "c1");
    let message_id = identify["messageId"].as_str().expect("a messageId");
    let hash = message_id
        .strip_prefix("ctp-c1-1-")
        .unwrap_or_else(|| panic!("messageId {message_id} names customer c1 version 1"));
    assert_eq!(hash.len(), 32, "{message_id}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{message_id}");
    assert!(
        app.segment.sent()[0].fingerprint() == app.state.fingerprint("c1").expect("recorded"),
        "the delivery is recorded with the message's fingerprint"
    );
}

#[tokio::test]
async fn customer_created_is_delivered_from_every_envelope() {
    let payload = customer_created(&ada());
    let bodies = [
        ("Platform", payload.clone()),
        ("Pub/Sub", pubsub(&payload)),
        ("CloudEvents", cloudevent(&payload)),
        ("SNS", sns(&payload)),
    ];
    for (envelope, body) in bodies {
        let app = TestApp::new();

        let response = app.post_json(&body).await;

        assert_eq!(response.status, StatusCode::OK, "{envelope}");
        assert_eq!(
            response.json(),
            json!({"status": "delivered"}),
            "{envelope}"
        );
        let sent = app.segment.sent_json();
        assert_eq!(sent.len(), 1, "{envelope}");
        assert_eq!(sent[0]["userId"], "ada@example.com", "{envelope}");
        assert!(
            app.source.lookups().is_empty(),
            "{envelope}: no fetch needed"
        );
    }
}

#[tokio::test]
async fn other_customer_messages_fetch_the_customer_then_identify() {
    let bodies = [
        (
            "CustomerEmailChanged",
            message("CustomerEmailChanged", "customer", "c7"),
        ),
        (
            "ResourceUpdated",
            change("ResourceUpdated", "customer", "c7"),
        ),
        (
            "ResourceCreated",
            change("ResourceCreated", "customer", "c7"),
        ),
        (
            "Pub/Sub CustomerAddressAdded",
            pubsub(&message("CustomerAddressAdded", "customer", "c7")),
        ),
        (
            "CloudEvents ResourceUpdated",
            cloudevent(&change("ResourceUpdated", "customer", "c7")),
        ),
        (
            "SNS CustomerFirstNameSet",
            sns(&message("CustomerFirstNameSet", "customer", "c7")),
        ),
    ];
    for (what, body) in bodies {
        let app = TestApp::new();
        app.source.put(customer("c7", 4, Some("grace@example.com")));

        let response = app.post_json(&body).await;

        assert_eq!(response.status, StatusCode::OK, "{what}");
        assert_eq!(response.json(), json!({"status": "delivered"}), "{what}");
        assert_eq!(app.source.lookups(), ["c7"], "{what}");
        let sent = app.segment.sent_json();
        assert_eq!(sent.len(), 1, "{what}");
        assert_eq!(sent[0]["userId"], "grace@example.com", "{what}");
        assert!(
            sent[0]["messageId"]
                .as_str()
                .is_some_and(|id| id.starts_with("ctp-c7-4-")),
            "{what}: the fetched version names the message"
        );
    }
}

#[tokio::test]
async fn a_customer_gone_since_the_message_is_answered_204() {
    let app = TestApp::new();

    let response = app
        .post_json(&change("ResourceUpdated", "customer", "gone"))
        .await;

    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert!(response.body.is_empty());
    assert_eq!(app.source.lookups(), ["gone"]);
    assert!(app.segment.sent().is_empty());
}

#[tokio::test]
async fn deletions_other_resources_and_test_messages_send_nothing() {
    let bodies = [
        (
            "CustomerDeleted",
            message("CustomerDeleted", "customer", "c1"),
        ),
        (
            "ResourceDeleted",
            change("ResourceDeleted", "customer", "c1"),
        ),
        ("an order message", message("OrderCreated", "order", "o1")),
        (
            "a product change",
            change("ResourceUpdated", "product", "p1"),
        ),
        ("the Subscription test message", subscription_test_message()),
        (
            "Pub/Sub CustomerDeleted",
            pubsub(&message("CustomerDeleted", "customer", "c1")),
        ),
        ("SNS test message", sns(&subscription_test_message())),
    ];
    for (what, body) in bodies {
        let app = TestApp::new();
        app.source.put(customer("c1", 1, Some("ada@example.com")));

        let response = app.post_json(&body).await;

        assert_eq!(response.status, StatusCode::NO_CONTENT, "{what}");
        assert!(response.body.is_empty(), "{what}");
        assert!(app.segment.sent().is_empty(), "{what}");
        assert!(app.source.lookups().is_empty(), "{what}");
    }
}

#[tokio::test]
async fn sns_subscription_confirmation_is_answered_200_and_sends_nothing() {
    let app = TestApp::new();

    let response = app.post_json(&sns_subscription_confirmation()).await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.json(),
        json!({"status": "subscription_confirmation_logged"})
    );
    assert!(app.segment.sent().is_empty());
}

#[tokio::test]
async fn a_customer_without_email_is_skipped() {
    let app = TestApp::new();

    let response = app
        .post_json(&customer_created(&customer_json("c2", 1, None)))
        .await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.json(),
        json!({"status": "skipped", "reason": "customer has no email"})
    );
    assert!(app.segment.sent().is_empty());
}

#[tokio::test]
async fn an_oversize_identify_is_answered_rejected_and_dead_lettered() {
    let app = TestApp::new();
    let mut big = ada();
    big["custom"] = json!({"type": {"typeId": "type", "id": "t"},
                           "fields": {"notes": "x".repeat(40 * 1024)}});

    let response = app.post_json(&customer_created(&big)).await;

    assert_eq!(
        response.status,
        StatusCode::OK,
        "a 2xx stops Pub/Sub's redeliveries"
    );
    assert_eq!(
        response.json(),
        json!({"status": "rejected", "reason": "message over 32 KB"})
    );
    assert!(app.segment.sent().is_empty());
    let letters = app.state.snapshot().dead_letters;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].customer_id, "c1");
    assert_eq!(letters[0].code, "payload_too_large");
}

#[tokio::test]
async fn a_message_segment_rejects_is_answered_rejected_dead_lettered_and_not_sent_again() {
    let app = TestApp::new();
    app.segment
        .behave(SegmentBehaviour::Reject(DeliveryError::BadRequest {
            detail: None,
        }));
    let body = pubsub(&customer_created(&ada()));

    let response = app.post_json(&body).await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.json(),
        json!({"status": "rejected", "reason": "400 Bad Request"})
    );
    let again = app.post_json(&body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["status"], "rejected");
    assert_eq!(app.segment.sent().len(), 1, "Segment is not asked again");
    assert_eq!(
        app.state.fingerprint("c1"),
        None,
        "not recorded as delivered"
    );
    let letters = app.state.snapshot().dead_letters;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code, "bad_request");
    let payload: Value =
        serde_json::from_str(letters[0].payload.as_deref().expect("the payload is kept")).unwrap();
    assert_eq!(payload["userId"], "ada@example.com");
}

#[tokio::test]
async fn a_rejected_customer_delivered_later_leaves_no_dead_letter() {
    let app = TestApp::new();
    let body = customer_created(&ada());
    app.segment
        .behave_next(SegmentBehaviour::Reject(DeliveryError::BadRequest {
            detail: None,
        }));
    let rejected = app.post_json(&body).await;
    assert_eq!(rejected.json()["status"], "rejected");
    assert_eq!(app.state.snapshot().dead_letters.len(), 1);

    // The customer is fixed in commercetools: a new version, new content.
    let mut fixed = customer_json("c1", 2, Some("ada@example.com"));
    fixed["firstName"] = json!("Ada (fixed)");
    let delivered = app.post_json(&customer_created(&fixed)).await;

    assert_eq!(delivered.status, StatusCode::OK);
    assert_eq!(delivered.json(), json!({"status": "delivered"}));
    assert!(
        app.state.snapshot().dead_letters.is_empty(),
        "recording the delivery cleared the customer's dead letter"
    );
}

#[tokio::test]
async fn a_segment_failure_is_500_then_the_redelivery_succeeds_then_is_unchanged() {
    let app = TestApp::new();
    let body = customer_created(&ada());
    app.segment
        .behave(SegmentBehaviour::Fail(DeliveryError::MaxRetriesExceeded {
            last: Box::new(DeliveryError::ServerError { status: 503 }),
        }));

    let failed = app.post_json(&body).await;

    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.json(), json!({"error": "Internal server error"}));
    assert_eq!(app.state.fingerprint("c1"), None);

    app.segment.behave(SegmentBehaviour::Deliver);
    let delivered = app.post_json(&body).await;

    assert_eq!(delivered.status, StatusCode::OK);
    assert_eq!(delivered.json(), json!({"status": "delivered"}));
    let sent = app.segment.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].message_id(),
        sent[1].message_id(),
        "the redelivery carries the same messageId, so Segment keeps one"
    );

    let again = app.post_json(&body).await;

    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json(), json!({"status": "unchanged"}));
    assert_eq!(app.segment.sent().len(), 2, "nothing more sent");
}

#[tokio::test]
async fn every_other_failure_is_a_bare_500() {
    type Break = fn(&TestApp);
    let cases: [(&str, Break); 4] = [
        ("commercetools down", |app| app.source.set_unavailable(true)),
        ("state store broken", |app| app.state.set_failing(true)),
        ("Segment client closed", |app| {
            app.segment
                .behave(SegmentBehaviour::Refuse(SegmentError::Closed));
        }),
        ("write key refused", |app| {
            app.segment.behave(SegmentBehaviour::Unauthorized);
        }),
    ];
    for (what, break_it) in cases {
        let app = TestApp::new();
        app.source.put(customer("c1", 1, Some("ada@example.com")));
        break_it(&app);

        let response = app
            .post_json(&change("ResourceUpdated", "customer", "c1"))
            .await;

        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
        assert_eq!(
            response.body.as_ref(),
            br#"{"error":"Internal server error"}"#,
            "{what}: no detail in the body"
        );
        assert_eq!(app.state.fingerprint("c1"), None, "{what}");
    }
}

#[tokio::test]
async fn a_redelivered_older_customer_created_is_stale_and_not_sent() {
    let app = TestApp::new();
    let v1 = customer_json("c9", 1, Some("ada@example.com"));
    assert_eq!(
        app.post_json(&customer_created(&v1)).await.json(),
        json!({"status": "delivered"})
    );
    // The first name changes: version 2, fetched when its message arrives.
    let mut v2 = customer("c9", 2, Some("ada@example.com"));
    v2.first_name = Some("Augusta".to_owned());
    app.source.put(v2);
    let changed = app
        .post_json(&message("CustomerFirstNameSet", "customer", "c9"))
        .await;
    assert_eq!(changed.json(), json!({"status": "delivered"}));

    // Pub/Sub delivers the version 1 message again.
    let redelivered = app.post_json(&pubsub(&customer_created(&v1))).await;

    assert_eq!(redelivered.status, StatusCode::OK);
    assert_eq!(redelivered.json(), json!({"status": "stale"}));
    let sent = app.segment.sent_json();
    assert_eq!(sent.len(), 2, "version 1 is not sent again");
    assert_eq!(sent[1]["traits"]["firstName"], "Augusta");
    assert_eq!(
        app.state.snapshot().delivered["c9"].version,
        2,
        "the newer version stays recorded"
    );
}

#[tokio::test]
async fn a_newer_version_with_the_same_content_is_unchanged_and_remembered() {
    let app = TestApp::new();
    let v1 = customer_json("c3", 1, Some("ada@example.com"));
    app.post_json(&customer_created(&v1)).await;
    // Version 2 changed nothing Segment sees (a password change, say).
    app.source.put(customer("c3", 2, Some("ada@example.com")));

    let response = app
        .post_json(&message("CustomerPasswordUpdated", "customer", "c3"))
        .await;

    assert_eq!(response.json(), json!({"status": "unchanged"}));
    assert_eq!(app.segment.sent().len(), 1);
    assert_eq!(app.state.snapshot().delivered["c3"].version, 2);
    assert_eq!(
        app.post_json(&customer_created(&v1)).await.json(),
        json!({"status": "stale"}),
        "so that version 1 is now stale"
    );
}
