//! Bodies that can never be processed: too large, malformed, or generated at random.

use axum::http::StatusCode;
use segment_sync_testkit::generate::SplitMix64;
use serde_json::{json, Value};

use super::ada;
use crate::serve_support::*;

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

fn random_value(rng: &mut SplitMix64) -> Value {
    match rng.index(8) {
        0 => Value::Null,
        1 => json!(rng.next_u64() as i64),
        2 => json!(rng.index(2) == 0),
        3 => json!(""),
        4 => json!("   "),
        5 => json!([1, "two", null]),
        6 => json!({"id": "x", "typeId": "customer"}),
        _ => json!(format!("s{}", rng.next_u64())),
    }
}

fn mutate(rng: &mut SplitMix64, seeds: &[Value]) -> Vec<u8> {
    let seed = &seeds[rng.index(seeds.len())];
    let mut bytes = seed.to_string().into_bytes();
    match rng.index(6) {
        0 => (0..rng.index(300)).map(|_| rng.next_u64() as u8).collect(),
        1 => {
            bytes.truncate(rng.index(bytes.len()));
            bytes
        }
        2 => {
            for _ in 0..=rng.index(4) {
                let at = rng.index(bytes.len());
                bytes[at] = rng.next_u64() as u8;
            }
            bytes
        }
        3 => {
            const JSONISH: &[u8] = b"{}[]\":,0a\\ -e.";
            let at = rng.index(bytes.len() + 1);
            bytes.insert(at, JSONISH[rng.index(JSONISH.len())]);
            bytes
        }
        4 => {
            let from = rng.index(bytes.len());
            let to = from + rng.index(bytes.len() - from + 1);
            bytes.drain(from..to);
            bytes
        }
        _ => {
            let mut value = seed.clone();
            let mut pointers = Vec::new();
            json_pointers(&value, String::new(), &mut pointers);
            let pointer = &pointers[rng.index(pointers.len())];
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
    let mut rng = SplitMix64::new(0x5eed_2024);
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
