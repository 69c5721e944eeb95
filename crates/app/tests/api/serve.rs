//! The webhook, driven through its router (and once through a real socket).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use segment_sync::serve::{check_auth_config, serve, ServeError, ServeOptions, WebhookToken};
use segment_sync_domain::DeliveryError;
use segment_sync_ports::SegmentError;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::serve_support::*;

fn ada() -> Value {
    customer_json("c1", 1, Some(" Ada@Example.COM "))
}

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
async fn an_oversize_identify_is_a_400_and_dead_lettered() {
    let app = TestApp::new();
    let mut big = ada();
    big["custom"] = json!({"type": {"typeId": "type", "id": "t"},
                           "fields": {"notes": "x".repeat(40 * 1024)}});

    let response = app.post_json(&customer_created(&big)).await;

    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json(), json!({"error": "message over 32 KB"}));
    assert!(app.segment.sent().is_empty());
    let letters = app.state.snapshot().dead_letters;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].customer_id, "c1");
    assert_eq!(letters[0].code, "payload_too_large");
}

#[tokio::test]
async fn a_message_segment_rejects_is_a_400_and_dead_lettered() {
    let app = TestApp::new();
    app.segment
        .behave(SegmentBehaviour::Reject(DeliveryError::BadRequest {
            detail: None,
        }));

    let response = app.post_json(&customer_created(&ada())).await;

    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json(), json!({"error": "400 Bad Request"}));
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
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.state.snapshot().dead_letters.len(), 1);

    let delivered = app.post_json(&body).await;

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
async fn missing_or_wrong_tokens_are_refused_and_nothing_is_sent() {
    let app = TestApp::new();
    let body = customer_created(&ada()).to_string();
    let requests = [
        ("no token", webhook_request(body.clone(), None)),
        (
            "wrong bearer",
            webhook_request(body.clone(), Some("test-webhook-tokem")),
        ),
        (
            "bearer prefix of the token",
            webhook_request(body.clone(), Some("test-webhook")),
        ),
        (
            "wrong query token",
            Request::post("/webhooks/commercetools?token=nope")
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
        (
            "token in another scheme",
            Request::post("/webhooks/commercetools")
                .header("authorization", format!("Basic {TOKEN}"))
                .body(Body::from(body.clone()))
                .unwrap(),
        ),
    ];
    for (what, request) in requests {
        let response = app.request(request).await;

        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(response.json(), json!({"error": "Unauthorized"}), "{what}");
    }
    assert!(app.segment.sent().is_empty());
}

#[tokio::test]
async fn the_token_is_accepted_in_the_header_or_the_query() {
    let app = TestApp::new();
    let body = customer_created(&ada()).to_string();

    let header = app
        .request(webhook_request(body.clone(), Some(TOKEN)))
        .await;
    let query = app
        .request(
            Request::post(format!("/webhooks/commercetools?foo=1&token={TOKEN}"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await;

    assert_eq!(header.status, StatusCode::OK);
    assert_eq!(header.json(), json!({"status": "delivered"}));
    assert_eq!(query.status, StatusCode::OK);
    assert_eq!(query.json(), json!({"status": "unchanged"}));
}

#[tokio::test]
async fn without_a_configured_token_every_request_passes() {
    let app = TestApp::with(None, Duration::from_secs(10));

    let response = app
        .request(webhook_request(customer_created(&ada()).to_string(), None))
        .await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(app.segment.sent().len(), 1);
}

#[tokio::test]
async fn probes_and_metrics_need_no_token() {
    let app = TestApp::new();

    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(path).await.status, StatusCode::OK, "{path}");
    }
}

#[test]
fn serving_without_a_token_needs_the_explicit_flag() {
    let refused = check_auth_config(&None, false).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "WEBHOOK_TOKEN is not set: set it, or pass --allow-unauthenticated to accept unauthenticated requests"
    );
    assert!(matches!(refused, ServeError::MissingToken));
    assert!(check_auth_config(&None, true).is_ok());
    let token = Some(WebhookToken::parse("s3cret").unwrap());
    assert!(check_auth_config(&token, false).is_ok());
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_token() {
    let segment = Arc::new(MemorySegment::new());
    let deps = deps(
        &segment,
        &Arc::new(MemorySource::new()),
        &Arc::new(MemoryStateStore::new()),
        None,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();

    let result = serve(
        listener,
        deps,
        &ServeOptions::default(),
        std::future::pending(),
    )
    .await;

    assert!(
        matches!(result, Err(ServeError::MissingToken)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_body_over_1_mib_is_413() {
    let app = TestApp::new();
    let mut body = customer_created(&ada());
    body["padding"] = json!("x".repeat(1024 * 1024));

    let response = app.post_json(&body).await;

    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json(), json!({"error": "body over 1 MiB"}));
    assert!(app.segment.sent().is_empty());
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_reason() {
    let mut bad_pubsub = pubsub(&customer_created(&ada()));
    bad_pubsub["message"]["data"] = json!("not*base64!");
    let cases = [
        (
            "not JSON",
            "{\"notificationType\":".to_owned(),
            "body is not valid JSON",
        ),
        ("empty", String::new(), "body is not valid JSON"),
        (
            "bad base64",
            bad_pubsub.to_string(),
            "Pub/Sub message.data is not valid base64",
        ),
        (
            "unknown shape",
            json!({"hello": "world"}).to_string(),
            "unrecognised payload",
        ),
        (
            "no resource",
            json!({"notificationType": "Message", "type": "CustomerCreated"}).to_string(),
            "commercetools payload has no resource",
        ),
        (
            "CustomerCreated without its customer",
            message("CustomerCreated", "customer", "c1").to_string(),
            "CustomerCreated has no customer",
        ),
        (
            "SNS without Message",
            json!({"Type": "Notification"}).to_string(),
            "SNS Notification has no Message",
        ),
    ];
    let app = TestApp::new();
    for (what, body, reason) in cases {
        let response = app.post(body).await;

        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{what}");
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: an error string"))
            .to_owned();
        assert!(error.contains(reason), "{what}: {error:?} names {reason:?}");
    }
    assert!(app.segment.sent().is_empty());
}

/// A tiny deterministic generator, so a failure replays exactly.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn json_pointers(value: &Value, at: String, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                json_pointers(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    into,
                );
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                json_pointers(child, format!("{at}/{index}"), into);
            }
        }
        _ => {}
    }
    into.push(at);
}

fn random_value(rng: &mut SplitMix) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => json!(rng.next() as i64),
        2 => json!(rng.below(2) == 0),
        3 => json!(""),
        4 => json!("   "),
        5 => json!([1, "two", null]),
        6 => json!({"id": "x", "typeId": "customer"}),
        _ => json!(format!("s{}", rng.next())),
    }
}

fn mutate(rng: &mut SplitMix, seeds: &[Value]) -> Vec<u8> {
    let seed = &seeds[rng.below(seeds.len())];
    let mut bytes = seed.to_string().into_bytes();
    match rng.below(6) {
        0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        1 => {
            bytes.truncate(rng.below(bytes.len()));
            bytes
        }
        2 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            bytes
        }
        3 => {
            const JSONISH: &[u8] = b"{}[]\":,0a\\ -e.";
            let at = rng.below(bytes.len() + 1);
            bytes.insert(at, JSONISH[rng.below(JSONISH.len())]);
            bytes
        }
        4 => {
            let from = rng.below(bytes.len());
            let to = from + rng.below(bytes.len() - from + 1);
            bytes.drain(from..to);
            bytes
        }
        _ => {
            let mut value = seed.clone();
            let mut pointers = Vec::new();
            json_pointers(&value, String::new(), &mut pointers);
            let pointer = &pointers[rng.below(pointers.len())];
            let replacement = random_value(rng);
            match value.pointer_mut(pointer) {
                Some(slot) => *slot = replacement,
                None => value = replacement,
            }
            value.to_string().into_bytes()
        }
    }
}

#[tokio::test]
async fn ten_thousand_generated_bodies_never_get_a_5xx() {
    let app = TestApp::new();
    app.source.put(customer("c1", 3, Some("ada@example.com")));
    let created = customer_created(&ada());
    let updated = message("CustomerEmailChanged", "customer", "c1");
    let seeds = [
        created.clone(),
        pubsub(&created),
        cloudevent(&created),
        sns(&created),
        updated.clone(),
        pubsub(&updated),
        sns(&change("ResourceUpdated", "customer", "c1")),
        change("ResourceDeleted", "customer", "c1"),
        subscription_test_message(),
        sns_subscription_confirmation(),
    ];
    let mut rng = SplitMix(0x5eed_2024);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();

    for case in 0..10_000 {
        let body = mutate(&mut rng, &seeds);
        let response = app.post(body.clone()).await;

        let status = response.status;
        *statuses.entry(status.as_u16()).or_default() += 1;
        let shown = || String::from_utf8_lossy(&body).into_owned();
        assert!(
            !status.is_server_error(),
            "case {case}: {status} for {}",
            shown()
        );
        if status != StatusCode::NO_CONTENT {
            let answer = response.json();
            assert!(
                answer["status"].is_string() || answer["error"].is_string(),
                "case {case}: {answer} for {}",
                shown()
            );
        }
    }
    // The generator must reach past the decoder, or the loop proves little.
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 1_000,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&204).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
}

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
async fn healthz_is_ok_and_readyz_follows_the_state_store() {
    let app = TestApp::new();

    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), json!({"status": "ready"}));

    app.state.set_failing(true);
    let not_ready = app.get("/readyz").await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready.json(), json!({"status": "unavailable"}));
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_delivery_is_500_and_still_recorded_once_segment_answers() {
    let app = TestApp::with(Some(TOKEN), Duration::from_millis(50));
    let gate = Gate::new();
    app.segment.behave(SegmentBehaviour::Gated(gate.clone()));

    let response = app.post_json(&customer_created(&ada())).await;

    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.json(), json!({"error": "Internal server error"}));
    gate.open();
    let recorded = app.state.wait_until(|state| state.fingerprint("c1")).await;
    assert_eq!(recorded, app.segment.sent()[0].fingerprint());
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

/// Polls `probe` until it gives a value, failing after [`DEADLINE`].
async fn wait_until<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One HTTP/1.1 request on a fresh connection: the status and the JSON body.
async fn raw_post(addr: SocketAddr, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /webhooks/commercetools HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, serde_json::from_str(body).expect("a JSON body"))
}
