//! Running it: metrics, probes, slow deliveries, concurrency and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use segment_sync::serve::{serve, ServeOptions};
use segment_sync_domain::DeliveryError;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{ada, raw_post, wait_until};
use crate::serve_support::*;

#[tokio::test]
async fn metrics_count_requests_by_outcome() {
    let app = TestApp::new();
    let before = app.get("/metrics").await;
    let before = String::from_utf8(before.body.to_vec()).unwrap();

    app.post_json(&customer_created(&ada())).await;
    app.post_json(&customer_created(&ada())).await;
    app.post("{").await;
    app.request(webhook_request("{}", None)).await;
    let after = app.get("/metrics").await;

    assert_eq!(after.status, StatusCode::OK);
    let after = String::from_utf8(after.body.to_vec()).unwrap();
    for outcome in ["delivered", "unchanged", "bad_request", "unauthorized"] {
        let series = format!("webhook_requests_total{{outcome=\"{outcome}\"}}");
        assert!(
            sample(&after, &series) >= sample(&before, &series) + 1.0,
            "{series} moved:\n{after}"
        );
    }
    let count = "webhook_request_duration_seconds_count";
    assert!(
        sample(&after, count) >= sample(&before, count) + 4.0,
        "{after}"
    );
    assert!(
        after.contains("# TYPE webhook_request_duration_seconds histogram"),
        "{after}"
    );
}

#[tokio::test]
async fn a_message_rejected_without_sending_counts_as_a_rejected_segment_message() {
    let app = TestApp::new();
    let series = "segment_messages_total{outcome=\"rejected\"}";
    let before = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    let mut big = ada();
    big["custom"] = json!({"type": {"typeId": "type", "id": "t"},
                           "fields": {"notes": "x".repeat(40 * 1024)}});

    let response = app.post_json(&customer_created(&big)).await;

    assert_eq!(response.json()["status"], "rejected");
    let after = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        sample(&after, series) >= sample(&before, series) + 1.0,
        "{series} moved:\n{after}"
    );

    // Content Segment refused before is answered rejected again, unsent: counted.
    app.segment
        .behave(SegmentBehaviour::Reject(DeliveryError::BadRequest {
            detail: None,
        }));
    let body = customer_created(&ada());
    app.post_json(&body).await;
    let before = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    let again = app.post_json(&body).await;
    assert_eq!(again.json()["status"], "rejected");
    let after = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        sample(&after, series) >= sample(&before, series) + 1.0,
        "{series} moved for the refused content:\n{after}"
    );
}

#[tokio::test]
async fn healthz_is_ok_and_readyz_follows_the_state_store() {
    let app = TestApp::new();

    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), json!({"status": "ready"}));

    // The store is asked in the background, so /readyz answers at once whatever
    // the store does; it turns unavailable with the next probe.
    app.state.set_failing(true);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let not_ready = loop {
        let answer = app.get("/readyz").await;
        if answer.status != StatusCode::OK || tokio::time::Instant::now() > deadline {
            break answer;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready.json(), json!({"status": "unavailable"}));
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_delivery_is_500_within_the_request_time_and_the_redelivery_records_it() {
    let app = TestApp::with(Some(TOKEN), Duration::from_millis(200));
    let gate = Gate::new();
    app.segment.behave(SegmentBehaviour::Gated(gate.clone()));

    let started = tokio::time::Instant::now();
    let response = app.post_json(&customer_created(&ada())).await;

    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.json(), json!({"error": "Internal server error"}));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the work stopped with the request: {:?}",
        started.elapsed()
    );
    assert_eq!(app.state.fingerprint("c1"), None, "nothing recorded unseen");
    assert!(
        app.state.snapshot().claims.is_empty(),
        "the claim was released"
    );

    gate.open();
    app.segment.behave(SegmentBehaviour::Deliver);
    let redelivered = app.post_json(&customer_created(&ada())).await;
    assert_eq!(redelivered.json(), json!({"status": "delivered"}));
    let sent = app.segment.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].message_id(),
        sent[1].message_id(),
        "Segment drops the repeat"
    );
    assert_eq!(app.state.fingerprint("c1"), Some(sent[1].fingerprint()));
}

#[tokio::test]
async fn concurrent_requests_share_one_client_and_each_awaits_its_own_outcome() {
    let app = Arc::new(TestApp::new());
    let gate = Gate::new();
    app.segment.behave(SegmentBehaviour::Gated(gate.clone()));

    let requests: Vec<_> = (0..20)
        .map(|n| {
            let app = Arc::clone(&app);
            let body = customer_created(&customer_json(
                &format!("c{n}"),
                1,
                Some(&format!("user{n}@example.com")),
            ));
            tokio::spawn(async move { app.post_json(&body).await })
        })
        .collect();
    app.segment.wait_for_sent(20).await;
    gate.open();

    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.json(), json!({"status": "delivered"}));
    }
    for n in 0..20 {
        assert!(app.state.fingerprint(&format!("c{n}")).is_some(), "c{n}");
    }
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_flushes() {
    init_logs();
    let segment = Arc::new(MemorySegment::new());
    let state = Arc::new(MemoryStateStore::new());
    let deps = deps(
        &segment,
        &Arc::new(MemorySource::new()),
        &state,
        Some(TOKEN),
    );
    let gate = Gate::new();
    segment.behave(SegmentBehaviour::Gated(gate.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions {
        listen: addr,
        ..ServeOptions::default()
    };
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve(listener, deps, &options, shutdown).await
    });
    let body = customer_created(&ada()).to_string();
    let client = tokio::spawn(async move { raw_post(addr, &body).await });
    segment.wait_for_sent(1).await;

    stop.send(()).unwrap();
    wait_until(|| std::net::TcpStream::connect(addr).is_err().then_some(())).await;
    assert!(
        !server.is_finished(),
        "serve waits for the request in flight"
    );
    assert!(
        !segment.is_closed(),
        "Segment is flushed only after the last request"
    );
    gate.open();

    let (status, answer) = tokio::time::timeout(DEADLINE, client)
        .await
        .expect("the request completes")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"status": "delivered"}));
    let served = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("serve returns")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    assert!(segment.is_closed());
    assert!(state.fingerprint("c1").is_some());
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_that_names_the_webhook() {
    let app = TestApp::new();
    let body = customer_created(&ada()).to_string();
    for path in ["/", "/webhook", "/webhooks/commercetools/extra"] {
        let response = app
            .request(
                Request::post(path)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        let error = response.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains("POST /webhooks/commercetools"),
            "{path}: {error}"
        );
    }
    assert!(app.segment.sent().is_empty());
}
