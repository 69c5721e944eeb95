//! A customer deleted in commercetools: erased here and, with `SEGMENT_DELETION`
//! on, regulated in Segment.

use axum::http::StatusCode;
use segment_sync_ports::{RegulationType, SyncStateStore};
use serde_json::json;

use super::ada;
use crate::serve_support::{change, customer_created, message, pubsub, TestApp};

/// `c1` delivered as ada@example.com, through the webhook.
async fn delivered_ada(app: &TestApp) {
    let created = app.post_json(&customer_created(&ada())).await;
    assert_eq!(created.json(), json!({"status": "delivered"}));
}

#[tokio::test]
async fn a_deleted_customer_is_erased_and_its_user_id_regulated() {
    for body in [
        message("CustomerDeleted", "customer", "c1"),
        change("ResourceDeleted", "customer", "c1"),
        pubsub(&message("CustomerDeleted", "customer", "c1")),
    ] {
        let app = TestApp::deleting(RegulationType::SuppressWithDelete);
        delivered_ada(&app).await;

        let deleted = app.post_json(&body).await;

        assert_eq!(deleted.status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(deleted.json(), json!({"status": "queued"}));
        assert_eq!(app.state.fingerprint("c1"), None, "erased at once");
        let queued = app.state.queued_deletions(10).await.unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].subject, "ada@example.com");
        assert_eq!(queued[0].regulation_type, "SUPPRESS_WITH_DELETE");

        app.deletions.send_queued().await.unwrap();
        assert_eq!(app.regulations.regulated_subjects(), ["ada@example.com"]);
        assert!(app.state.queued_deletions(10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_customer_never_sent_is_acknowledged_with_nothing_to_do() {
    let app = TestApp::deleting(RegulationType::DeleteOnly);
    let deleted = app
        .post_json(&message("CustomerDeleted", "customer", "never-sent"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(app.state.queued_deletions(10).await.unwrap().is_empty());
    assert!(app.regulations.calls().is_empty());
}

#[tokio::test]
async fn with_deletion_off_the_profile_and_the_record_stay() {
    let app = TestApp::new();
    delivered_ada(&app).await;
    let deleted = app
        .post_json(&message("CustomerDeleted", "customer", "c1"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(app.state.fingerprint("c1").is_some());
    assert!(app.state.queued_deletions(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_state_that_fails_answers_500_so_the_deletion_comes_again() {
    let app = TestApp::deleting(RegulationType::SuppressWithDelete);
    delivered_ada(&app).await;
    app.state.set_failing(true);
    let deleted = app
        .post_json(&message("CustomerDeleted", "customer", "c1"))
        .await;
    assert_eq!(deleted.status, StatusCode::INTERNAL_SERVER_ERROR);
    app.state.set_failing(false);
    assert!(app.state.fingerprint("c1").is_some(), "nothing erased");
}
