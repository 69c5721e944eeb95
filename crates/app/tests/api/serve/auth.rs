//! The token in front of the webhook, and serving without one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use segment_sync::serve::{
    check_auth_config, serve, OidcConfig, ServeError, ServeOptions, WebhookToken, GOOGLE_JWKS_URL,
};
use segment_sync_testkit::sender_auth::{
    pubsub_claims, unix_now, unsigned_token, FakeJwksHost, GoogleSigner,
};
use serde_json::json;
use tokio::net::TcpListener;

use super::ada;
use crate::serve_support::*;

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
async fn the_bearer_scheme_is_matched_in_any_case() {
    let app = TestApp::new();
    let body = customer_created(&ada()).to_string();
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let request = Request::post("/webhooks/commercetools")
            .header("authorization", format!("{scheme} {TOKEN}"))
            .body(Body::from(body.clone()))
            .unwrap();
        assert_eq!(
            app.request(request).await.status,
            StatusCode::OK,
            "{scheme}"
        );
    }
    let basic = Request::post("/webhooks/commercetools")
        .header("authorization", format!("Basic {TOKEN}"))
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app.request(basic).await.status, StatusCode::UNAUTHORIZED);
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
    let refused = check_auth_config(&None, &None, false).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "WEBHOOK_TOKEN is not set: set it, or pass --allow-unauthenticated to accept unauthenticated requests"
    );
    assert!(matches!(refused, ServeError::MissingToken));
    assert!(check_auth_config(&None, &None, true).is_ok());
    let token = Some(WebhookToken::parse("s3cret").unwrap());
    assert!(check_auth_config(&token, &None, false).is_ok());
    // Pub/Sub push tokens authenticate on their own.
    let oidc = Some(OidcConfig {
        audience: "https://hooks.example.com".to_owned(),
        jwks_url: GOOGLE_JWKS_URL.to_owned(),
        email: None,
    });
    assert!(check_auth_config(&None, &oidc, false).is_ok());
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

const AUDIENCE: &str = "https://hooks.example.com/webhooks/commercetools";
const PUSHER: &str = "pubsub-push@my-project.iam.gserviceaccount.com";

fn oidc_config(jwks: &FakeJwksHost) -> OidcConfig {
    OidcConfig {
        audience: AUDIENCE.to_owned(),
        jwks_url: jwks.jwks_url(),
        email: Some(PUSHER.to_owned()),
    }
}

#[tokio::test]
async fn a_pubsub_push_token_or_the_shared_token_each_authenticates() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let app = TestApp::with_oidc(Some(TOKEN), oidc_config(&jwks));
    let push = pubsub(&customer_created(&ada())).to_string();
    let valid = google.sign(&pubsub_claims(AUDIENCE, PUSHER));
    let mut expired = pubsub_claims(AUDIENCE, PUSHER);
    expired["exp"] = json!(unix_now() - 600);

    let by_oidc = app
        .request(webhook_request(push.clone(), Some(&valid)))
        .await;
    let by_token = app
        .request(webhook_request(push.clone(), Some(TOKEN)))
        .await;
    let refused = app
        .request(webhook_request(push.clone(), Some(&google.sign(&expired))))
        .await;
    let again = app.request(webhook_request(push, Some(&valid))).await;

    assert_eq!(by_oidc.status, StatusCode::OK);
    assert_eq!(by_oidc.json(), json!({"status": "delivered"}));
    assert_eq!(by_token.status, StatusCode::OK);
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json(), json!({"error": "Unauthorized"}));
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 1, "the keys are kept between requests");
}

#[tokio::test]
async fn pubsub_push_tokens_alone_protect_the_webhook() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let app = TestApp::with_oidc(None, oidc_config(&jwks));
    let push = pubsub(&customer_created(&ada())).to_string();

    let none = app.request(webhook_request(push.clone(), None)).await;
    let unsigned = app
        .request(webhook_request(
            push.clone(),
            Some(&unsigned_token(&pubsub_claims(AUDIENCE, PUSHER))),
        ))
        .await;
    let unknown_key = app
        .request(webhook_request(
            push.clone(),
            Some(&GoogleSigner::key_b().sign(&pubsub_claims(AUDIENCE, PUSHER))),
        ))
        .await;

    for (what, response) in [
        ("none", none),
        ("alg none", unsigned),
        ("unknown key", unknown_key),
    ] {
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    assert!(app.segment.sent().is_empty());
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_500_so_that_pubsub_delivers_again() {
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let mut config = oidc_config(&jwks);
    config.jwks_url = format!("{}/gone", config.jwks_url);
    let app = TestApp::with_oidc(None, config);

    let response = app
        .request(webhook_request(
            pubsub(&customer_created(&ada())).to_string(),
            Some(&google.sign(&pubsub_claims(AUDIENCE, PUSHER))),
        ))
        .await;

    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn an_unsigned_or_altered_sns_message_is_401_even_with_the_token() {
    let app = TestApp::new();
    let mut altered = sns(&customer_created(&ada()));
    altered["Message"] =
        json!(customer_created(&customer_json("c2", 1, Some("eve@example.com"))).to_string());
    let mut unsigned = sns(&customer_created(&ada()));
    unsigned.as_object_mut().unwrap().remove("Signature");

    for (what, body) in [
        ("altered", altered),
        ("unsigned", unsigned),
        ("no fields at all", json!({"Type": "Notification"})),
    ] {
        let response = app.post_json(&body).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    assert!(app.segment.sent().is_empty());
    assert_eq!(
        app.post_json(&sns(&customer_created(&ada()))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_subscription_confirmation_is_confirmed_only_when_its_signature_was_checked() {
    let app = TestApp::new();

    let direct = app.post_json(&sns_subscription_confirmation()).await;
    let wrapped = app
        .post_json(&pubsub(&sns_subscription_confirmation()))
        .await;

    assert_eq!(direct.status, StatusCode::OK);
    assert_eq!(
        direct.json(),
        json!({"status": "subscription_confirmation_logged"})
    );
    // Inside Pub/Sub nothing vouches for it: its SubscribeURL is not logged.
    assert_eq!(wrapped.status, StatusCode::NO_CONTENT);
}
