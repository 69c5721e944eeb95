use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::json;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/webhook/", $name))
    };
}

const CUSTOMER_CREATED: &str = fixture!("message_customer_created.json");
const CUSTOMER_EMAIL_CHANGED: &str = fixture!("message_customer_email_changed.json");
const CUSTOMER_ADDRESS_ADDED: &str = fixture!("message_customer_address_added.json");
const CUSTOMER_DELETED: &str = fixture!("message_customer_deleted.json");
const RESOURCE_CREATED: &str = fixture!("resource_created_customer.json");
const RESOURCE_UPDATED: &str = fixture!("resource_updated_customer.json");
const RESOURCE_DELETED: &str = fixture!("resource_deleted_customer.json");
const SUBSCRIPTION_TEST: &str = fixture!("subscription_test_message.json");
const ORDER_CREATED: &str = fixture!("message_order_created.json");
const CUSTOMER_GROUP_UPDATED: &str = fixture!("resource_updated_customer_group.json");
const PUBSUB_CUSTOMER_CREATED: &str = fixture!("pubsub_customer_created.json");
const CLOUDEVENTS_EMAIL_CHANGED: &str = fixture!("cloudevents_customer_email_changed.json");
const SNS_RESOURCE_UPDATED: &str = fixture!("sns_notification_resource_updated.json");
const SNS_CONFIRMATION: &str = fixture!("sns_subscription_confirmation.json");

const CUSTOMER_ID: &str = "9e5f0c2a-1b2c-4d3e-8f90-a1b2c3d4e5f6";

fn decoded(body: &str) -> Result<WebhookEvent, WebhookError> {
    decode(body.as_bytes())
}

fn value(body: &str) -> Value {
    serde_json::from_str(body).expect("fixture is JSON")
}

fn changed(version: i64) -> WebhookEvent {
    WebhookEvent::CustomerChanged {
        id: CUSTOMER_ID.into(),
        version: Some(version),
    }
}

fn deleted() -> WebhookEvent {
    WebhookEvent::CustomerDeleted {
        id: CUSTOMER_ID.into(),
    }
}

fn created_customer() -> Customer {
    serde_json::from_value(value(CUSTOMER_CREATED)["customer"].clone()).unwrap()
}

/// A Google Pub/Sub push request carrying `payload`.
fn pubsub(payload: &str) -> String {
    json!({
        "message": {
            "data": STANDARD.encode(payload),
            "messageId": "2070443601311540",
            "publishTime": "2024-05-01T10:00:01.123Z"
        },
        "subscription": "projects/my-project/subscriptions/ctp-customers-push"
    })
    .to_string()
}

/// A structured CloudEvent whose `data` is the payload object.
fn cloudevent(payload: &str) -> String {
    json!({
        "specversion": "1.0",
        "id": "e1",
        "type": "com.commercetools.customer.message",
        "source": "/my-shop/customers",
        "data": value(payload)
    })
    .to_string()
}

/// A structured CloudEvent whose `data` is the payload as a JSON string.
fn cloudevent_with_string_data(payload: &str) -> String {
    json!({
        "specversion": "1.0",
        "id": "e1",
        "type": "com.commercetools.customer.message",
        "source": "/my-shop/customers",
        "datacontenttype": "application/json",
        "data": payload
    })
    .to_string()
}

/// An AWS SNS notification whose `Message` is the payload text.
fn sns(payload: &str) -> String {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ctp-customers",
        "Message": payload,
        "Timestamp": "2024-05-05T16:30:01.000Z"
    })
    .to_string()
}

type Envelope = (&'static str, fn(&str) -> String);

const ENVELOPES: [Envelope; 5] = [
    ("bare", str::to_owned),
    ("Pub/Sub", pubsub),
    ("CloudEvents", cloudevent),
    ("CloudEvents string data", cloudevent_with_string_data),
    ("SNS", sns),
];

/// Every Platform payload, and what it must decode to whatever carries it.
fn platform_cases() -> Vec<(&'static str, WebhookEvent)> {
    vec![
        (
            CUSTOMER_CREATED,
            WebhookEvent::CustomerUpserted(Box::new(created_customer())),
        ),
        (CUSTOMER_EMAIL_CHANGED, changed(2)),
        (CUSTOMER_ADDRESS_ADDED, changed(3)),
        (CUSTOMER_DELETED, deleted()),
        (RESOURCE_CREATED, changed(1)),
        (RESOURCE_UPDATED, changed(5)),
        (RESOURCE_DELETED, deleted()),
    ]
}

#[test]
fn customer_created_carries_the_customer() {
    let Ok(WebhookEvent::CustomerUpserted(customer)) = decoded(CUSTOMER_CREATED) else {
        panic!("{:?}", decoded(CUSTOMER_CREATED));
    };
    assert_eq!(customer.id, CUSTOMER_ID);
    assert_eq!(customer.version, 1);
    assert_eq!(customer.email.as_deref(), Some("Ada.Lovelace@Example.COM"));
    assert_eq!(customer.first_name.as_deref(), Some("Ada"));
}

#[test]
fn other_customer_messages_ask_for_a_fetch_at_the_resource_version() {
    assert_eq!(decoded(CUSTOMER_EMAIL_CHANGED), Ok(changed(2)));
    assert_eq!(decoded(CUSTOMER_ADDRESS_ADDED), Ok(changed(3)));
    let mut other = value(CUSTOMER_EMAIL_CHANGED);
    other["type"] = json!("CustomerFirstNameSet");
    other.as_object_mut().unwrap().remove("resourceVersion");
    assert_eq!(
        decoded(&other.to_string()),
        Ok(WebhookEvent::CustomerChanged {
            id: CUSTOMER_ID.into(),
            version: None
        })
    );
}

#[test]
fn customer_deleted_message_is_a_deletion() {
    assert_eq!(decoded(CUSTOMER_DELETED), Ok(deleted()));
}

#[test]
fn change_payloads_carry_the_id_and_version() {
    assert_eq!(decoded(RESOURCE_CREATED), Ok(changed(1)));
    assert_eq!(decoded(RESOURCE_UPDATED), Ok(changed(5)));
    assert_eq!(decoded(RESOURCE_DELETED), Ok(deleted()));
}

#[test]
fn every_payload_decodes_the_same_in_every_envelope() {
    for (payload, expected) in platform_cases() {
        for (envelope, wrap) in ENVELOPES {
            let body = wrap(payload);
            assert_eq!(decoded(&body), Ok(expected.clone()), "{envelope}: {body}");
        }
    }
}

#[test]
fn envelope_fixtures_decode_to_their_payload() {
    assert_eq!(
        decoded(PUBSUB_CUSTOMER_CREATED),
        Ok(WebhookEvent::CustomerUpserted(Box::new(created_customer())))
    );
    assert_eq!(decoded(CLOUDEVENTS_EMAIL_CHANGED), Ok(changed(2)));
    assert_eq!(decoded(SNS_RESOURCE_UPDATED), Ok(changed(5)));
}

#[test]
fn pubsub_data_in_url_safe_base64_is_accepted() {
    // `?` and `>` encode to `/` and `+` in standard base64, `_` and `-` in URL-safe.
    let payload = value(RESOURCE_UPDATED);
    let mut with_odd_bytes = payload.clone();
    with_odd_bytes["projectKey"] = json!("shop??>>");
    let text = with_odd_bytes.to_string();
    let encoded = URL_SAFE.encode(&text);
    assert!(encoded.contains('_') || encoded.contains('-'), "{encoded}");
    let body = json!({ "message": { "data": encoded }, "subscription": "s" }).to_string();
    assert_eq!(decoded(&body), Ok(changed(5)));
}

#[test]
fn envelopes_inside_envelopes_are_unwrapped() {
    let body = pubsub(&sns(&cloudevent(RESOURCE_UPDATED)));
    assert_eq!(decoded(&body), Ok(changed(5)));
}

#[test]
fn sns_subscription_confirmation_hands_back_the_url() {
    assert_eq!(
        decoded(SNS_CONFIRMATION),
        Ok(WebhookEvent::SnsSubscriptionConfirmation {
            subscribe_url: value(SNS_CONFIRMATION)["SubscribeURL"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    );
    let unsubscribed = json!({ "Type": "UnsubscribeConfirmation", "SubscribeURL": "u" });
    assert!(matches!(
        decoded(&unsubscribed.to_string()),
        Ok(WebhookEvent::NotForUs { .. })
    ));
}

#[test]
fn subscription_test_message_is_not_for_us_in_any_envelope() {
    for (envelope, wrap) in ENVELOPES {
        let Ok(WebhookEvent::NotForUs { why }) = decoded(&wrap(SUBSCRIPTION_TEST)) else {
            panic!("{envelope}: {:?}", decoded(&wrap(SUBSCRIPTION_TEST)));
        };
        assert!(why.contains("Subscription test"), "{envelope}: {why}");
    }
}

#[test]
fn other_resource_types_are_not_for_us() {
    for (payload, type_id) in [
        (ORDER_CREATED, "order"),
        (CUSTOMER_GROUP_UPDATED, "customer-group"),
    ] {
        for (envelope, wrap) in ENVELOPES {
            let Ok(WebhookEvent::NotForUs { why }) = decoded(&wrap(payload)) else {
                panic!("{envelope} {type_id}: {:?}", decoded(&wrap(payload)));
            };
            assert!(why.contains(type_id), "{envelope}: {why}");
        }
    }
}

/// Asserts the error, then that its message contains each of `words`.
fn assert_error(body: &str, matches: impl Fn(&WebhookError) -> bool, words: &[&str]) {
    let err = decoded(body).expect_err(body);
    assert!(matches(&err), "{body}: unexpected {err:?}");
    let message = err.to_string();
    for word in words {
        assert!(message.contains(word), "`{message}` does not name `{word}`");
    }
}

fn field(err: &WebhookError) -> bool {
    matches!(err, WebhookError::Field(_))
}

fn inner(
    envelope: &'static str,
    matches: fn(&WebhookError) -> bool,
) -> impl Fn(&WebhookError) -> bool {
    move |err| match err {
        WebhookError::Inner {
            envelope: outer,
            source,
        } => *outer == envelope && matches(source),
        _ => false,
    }
}

#[test]
fn a_body_that_is_not_json_is_refused() {
    for body in ["", "not json", "{\"notificationType\":"] {
        assert_error(
            body,
            |e| matches!(e, WebhookError::NotJson(_)),
            &["not valid JSON"],
        );
    }
    let err = decode(&[0xff, 0xfe, b'{']).unwrap_err();
    assert!(matches!(err, WebhookError::NotJson(_)), "{err:?}");
}

#[test]
fn a_json_array_or_scalar_is_refused() {
    let array = format!("[{CUSTOMER_CREATED}]");
    for body in [array.as_str(), "42", "\"text\"", "null"] {
        assert_error(
            body,
            |e| matches!(e, WebhookError::Unrecognised(_)),
            &["expected a JSON object"],
        );
    }
}

#[test]
fn an_unknown_shape_is_refused_naming_the_shapes_we_know() {
    assert_error(
        r#"{"hello":"world","message":"hi"}"#,
        |e| matches!(e, WebhookError::Unrecognised(_)),
        &["notificationType", "Pub/Sub", "CloudEvents", "SNS"],
    );
}

#[test]
fn pubsub_data_missing_or_wrong_is_refused() {
    let subscription = "projects/my-project/subscriptions/ctp";
    let missing = json!({ "message": { "messageId": "1" }, "subscription": subscription });
    assert_error(
        &missing.to_string(),
        |e| *e == WebhookError::PubSubData("missing"),
        &["Pub/Sub message.data is missing"],
    );

    let number = json!({ "message": { "data": 42 }, "subscription": subscription });
    assert_error(
        &number.to_string(),
        |e| *e == WebhookError::PubSubData("not a string"),
        &["Pub/Sub message.data is not a string"],
    );

    let garbage =
        json!({ "message": { "data": "%%% not base64 %%%" }, "subscription": subscription });
    assert_error(
        &garbage.to_string(),
        |e| *e == WebhookError::PubSubData("not valid base64"),
        &["Pub/Sub message.data is not valid base64"],
    );

    let prose = json!({ "message": { "data": STANDARD.encode("hello, world") }, "subscription": subscription });
    assert_error(
        &prose.to_string(),
        inner("Pub/Sub", |e| matches!(e, WebhookError::NotJson(_))),
        &["Pub/Sub", "not valid JSON"],
    );
}

#[test]
fn cloudevents_without_usable_data_are_refused() {
    let no_data = json!({ "specversion": "1.0", "id": "e1", "type": "t", "source": "/s" });
    assert_error(&no_data.to_string(), field, &["CloudEvents", "no data"]);

    let number = json!({ "specversion": "1.0", "id": "e1", "data": 7 });
    assert_error(
        &number.to_string(),
        field,
        &["CloudEvents data is not an object"],
    );

    let prose = json!({ "specversion": "1.0", "id": "e1", "data": "hello" });
    assert_error(
        &prose.to_string(),
        inner("CloudEvents", |e| matches!(e, WebhookError::NotJson(_))),
        &["CloudEvents", "not valid JSON"],
    );
}

#[test]
fn sns_messages_missing_their_fields_are_refused() {
    let no_message = json!({ "Type": "Notification", "MessageId": "m1" });
    assert_error(
        &no_message.to_string(),
        field,
        &["SNS Notification has no Message"],
    );

    let no_url = json!({ "Type": "SubscriptionConfirmation", "MessageId": "m1" });
    assert_error(
        &no_url.to_string(),
        field,
        &["SNS SubscriptionConfirmation has no SubscribeURL"],
    );

    assert_error(
        &sns("not json"),
        inner("SNS", |e| matches!(e, WebhookError::NotJson(_))),
        &["SNS", "not valid JSON"],
    );

    let unknown = json!({ "Type": "Telegram", "Message": "{}" });
    assert_error(
        &unknown.to_string(),
        |e| matches!(e, WebhookError::Unrecognised(_)),
        &["unknown SNS Type `Telegram`"],
    );
}

#[test]
fn a_message_without_type_is_refused() {
    let mut payload = value(CUSTOMER_EMAIL_CHANGED);
    payload.as_object_mut().unwrap().remove("type");
    assert_error(&payload.to_string(), field, &["Message has no type"]);
    // Inside an envelope, the error says which envelope it came in.
    assert_error(
        &pubsub(&payload.to_string()),
        inner("Pub/Sub", field),
        &["Pub/Sub payload: ", "Message has no type"],
    );
}

#[test]
fn customer_created_without_its_customer_is_refused() {
    let mut payload = value(CUSTOMER_CREATED);
    payload.as_object_mut().unwrap().remove("customer");
    assert_error(
        &payload.to_string(),
        field,
        &["CustomerCreated has no customer"],
    );

    payload["customer"] = Value::Null;
    assert_error(
        &payload.to_string(),
        field,
        &["CustomerCreated has no customer"],
    );

    payload["customer"] = json!({ "id": CUSTOMER_ID, "version": "seven" });
    assert_error(
        &payload.to_string(),
        field,
        &["CustomerCreated customer is invalid", "customer.version"],
    );

    payload["customer"] = json!({ "id": "someone-else", "version": 1 });
    assert_error(
        &payload.to_string(),
        field,
        &["customer.id differs from resource.id"],
    );
}

#[test]
fn an_id_that_cannot_be_a_customer_id_is_refused_before_it_reaches_a_url() {
    let long = "x".repeat(257);
    for (id, says) in [
        ("", "is empty"),
        ("  ", "is empty"),
        (long.as_str(), "longer than 256"),
        (r"a\u0000b", "control character"),
        (r"a\nb", "control character"),
        ("..", "path segment"),
        ("../orders", "path segment"),
        ("a/./b", "path segment"),
    ] {
        let id: Value = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        for fixture in [RESOURCE_UPDATED, CUSTOMER_CREATED, CUSTOMER_DELETED] {
            let mut payload = value(fixture);
            payload["resource"]["id"] = id.clone();
            assert_error(&payload.to_string(), field, &["resource.id", says]);
        }
    }
    let fine = "x".repeat(256);
    assert!(check_customer_id(&fine).is_ok());
    assert!(check_customer_id("c0ffee00-1234-4abc-8def-0123456789ab").is_ok());
    assert!(
        check_customer_id("a.b..c").is_ok(),
        "dots inside a segment are fine"
    );
    let mut payload = value(RESOURCE_UPDATED);
    payload.as_object_mut().unwrap().remove("resource");
    assert_error(&payload.to_string(), field, &["no resource"]);
}

#[test]
fn an_unknown_notification_type_is_refused() {
    let mut payload = value(RESOURCE_UPDATED);
    payload["notificationType"] = json!("ResourceRenamed");
    assert_error(
        &payload.to_string(),
        |e| matches!(e, WebhookError::Unrecognised(_)),
        &["unknown notificationType `ResourceRenamed`"],
    );
    payload["notificationType"] = json!(5);
    assert_error(&payload.to_string(), field, &["notificationType"]);
}

#[test]
fn envelopes_nested_without_end_are_refused() {
    let mut body = RESOURCE_UPDATED.to_owned();
    for _ in 0..6 {
        body = pubsub(&body);
    }
    assert_error(
        &body,
        |e| matches!(e, WebhookError::Inner { .. }),
        &["nested too deep"],
    );
}

#[test]
fn only_a_bare_sns_message_is_the_bodys_sns_message() {
    let bare = sns(RESOURCE_UPDATED);
    assert_eq!(
        sns_message(bare.as_bytes()).map(|message| message["Type"].clone()),
        Some(Value::from("Notification"))
    );
    for (what, body) in [
        ("wrapped in Pub/Sub", pubsub(&bare)),
        ("a Platform payload", RESOURCE_UPDATED.to_owned()),
        ("a CloudEvent", cloudevent(RESOURCE_UPDATED)),
        ("not JSON", "Type".to_owned()),
        ("Type not a string", r#"{"Type": 1}"#.to_owned()),
    ] {
        assert_eq!(sns_message(body.as_bytes()), None, "{what}");
    }
}
