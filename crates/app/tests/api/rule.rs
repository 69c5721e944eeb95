//! The per-customer rule is one rule, whichever way a customer comes in: a stale
//! dead letter does not survive the customer turning out unchanged.

use segment_sync_domain::DeliveryError;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::serve_support::{self, SegmentBehaviour, TestApp};

#[tokio::test]
async fn through_the_webhook_a_stale_dead_letter_goes_when_content_returns() {
    let app = TestApp::new();
    let content = |first_name: &str| {
        let mut customer = serve_support::customer_json("c-1", 1, Some("ada@example.com"));
        customer["firstName"] = json!(first_name);
        serve_support::customer_created(&customer)
    };
    let a = app.post_json(&content("A")).await;
    assert_eq!(a.json()["status"], "delivered");

    app.segment
        .behave(SegmentBehaviour::Fail(DeliveryError::ConnectionFailed));
    let b = app.post_json(&content("B")).await;
    assert_eq!(b.status, 500);
    assert_eq!(
        app.state.snapshot().dead_letters.len(),
        1,
        "B is a dead letter"
    );

    app.segment.behave(SegmentBehaviour::Deliver);
    let back = app.post_json(&content("A")).await;
    assert_eq!(back.json()["status"], "unchanged");
    assert!(
        app.state.snapshot().dead_letters.is_empty(),
        "B can no longer be replayed over A"
    );
}

#[tokio::test]
async fn through_sync_a_stale_dead_letter_goes_when_content_returns() {
    let mut customer = numbered_json(1);
    customer["lastModifiedAt"] = json!(timestamp_now());
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![customer]).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("SEGMENT_MAX_ATTEMPTS", "1");
    let id = numbered_id(1);
    let id = id.as_str();

    let first = app.run(&["sync", "--json"]).await;
    assert_eq!(summary(&first)["sent"], 1, "{}", stderr(&first));
    let first_name = segment.messages()[0]["traits"]["firstName"].clone();

    ctp.update(id, |c| c["firstName"] = json!("Changed"));
    segment.set_mode(SegmentMode::Down);
    let failed = app.run(&["sync", "--json"]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert_eq!(dead_letters(&app).await.len(), 1);

    segment.set_mode(SegmentMode::Accept);
    ctp.update(id, |c| c["firstName"] = first_name.clone());
    let back = app.run(&["sync", "--json"]).await;
    assert_eq!(back.status.code(), Some(0), "{}", stderr(&back));
    assert_eq!(summary(&back)["unchanged"], 1);
    assert_eq!(summary(&back)["sent"], 0);
    assert!(dead_letters(&app).await.is_empty());
}

async fn dead_letters(app: &App) -> Vec<Value> {
    let listed = app.run(&["dead-letters", "list", "--json"]).await;
    serde_json::from_str::<Value>(&stdout(&listed))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}
