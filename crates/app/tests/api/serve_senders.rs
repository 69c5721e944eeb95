//! `segment-sync serve` as a process, with its senders proving who they are:
//! Pub/Sub push OIDC tokens and SNS signatures, their keys on local hosts.

use std::process::{Child, Stdio};
use std::time::Duration;

use segment_sync_testkit::child_log::ChildLog;
use segment_sync_testkit::customers::customer_json;
use segment_sync_testkit::sender_auth::{
    pubsub_claims, FakeJwksHost, FakeSnsCertHost, GoogleSigner, SnsSigner,
};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::serve_support::pubsub;

const AUDIENCE: &str = "https://hooks.example.com/webhooks/commercetools";
const PUSHER: &str = "pubsub-push@my-project.iam.gserviceaccount.com";

/// A running `serve` and the base URL it answers on.
struct Served {
    /// `None` once stopped; killed on drop otherwise (a failed assertion).
    child: Option<Child>,
    /// `None` once stopped.
    log: Option<ChildLog>,
    base: String,
}

impl Served {
    /// Starts `serve` on port 0 with `app`'s environment, its JSON log copied to
    /// `log_file`.
    async fn start(app: &App, log_file: &std::path::Path) -> Self {
        let mut child = app
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let copy = std::fs::File::create(log_file).unwrap();
        let mut log = ChildLog::follow(child.stderr.take().unwrap(), Some(Box::new(copy)));
        let addr = log
            .listening_addr(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            child: Some(child),
            log: Some(log),
            base: format!("http://{addr}"),
        }
    }

    /// Posts `body` to the webhook with these headers; the status and JSON answer.
    async fn post(&self, query: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/webhooks/commercetools{query}", self.base))
            .json(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// SIGTERM, then waits for the exit and the end of the log.
    async fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let log = self.log.take().expect("followed");
        assert_eq!(exit.code(), Some(0), "{}", log.last_lines());
        log.wait_for_end();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn pubsub_push_with_an_oidc_token_is_let_in_without_a_shared_token() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let google = GoogleSigner::key_a();
    let jwks = FakeJwksHost::start(&[&google]).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("WEBHOOK_OIDC_AUDIENCE", AUDIENCE)
        .env("WEBHOOK_OIDC_JWKS_URL", &jwks.jwks_url())
        .env("WEBHOOK_OIDC_EMAIL", PUSHER);
    let log_file = app.dir.path().join("serve.log");
    let served = Served::start(&app, &log_file).await;
    let push = pubsub(&customer_created(&numbered_json(1)));

    let valid = google.sign(&pubsub_claims(AUDIENCE, PUSHER));
    let wrong_audience = google.sign(&pubsub_claims("https://elsewhere.example.com", PUSHER));
    let (status, body) = served.post("", Some(&valid), &push).await;
    assert_eq!((status, body), (200, json!({"status": "delivered"})));
    let (status, body) = served.post("", Some(&wrong_audience), &push).await;
    assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));
    let (status, _) = served.post("", None, &push).await;
    assert_eq!(status, 401);
    let (status, _) = served.post("", Some(&valid), &push).await;
    assert_eq!(status, 200);
    served.stop().await;

    assert_eq!(segment.message_count(), 1);
    assert_eq!(jwks.fetches(), 1);
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.contains("the OIDC token's audience is not WEBHOOK_OIDC_AUDIENCE"),
        "{log}"
    );
    assert!(!log.contains(&valid), "a token never reaches the log");
}

#[tokio::test]
async fn sns_messages_are_let_in_only_when_signed_by_sns() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    // The customer the SignatureVersion 1 fixture's message is about.
    let ctp =
        FakeCommercetools::start(vec![customer_json("c-sns-v1", 3, Some("v1@example.com"))]).await;
    let certs = FakeSnsCertHost::start().await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("WEBHOOK_TOKEN", "hook-token")
        .env("WEBHOOK_SNS_CERT_HOSTS", &certs.host());
    let log_file = app.dir.path().join("serve.log");
    let served = Served::start(&app, &log_file).await;
    let signer = SnsSigner::default();
    let token = "?token=hook-token";
    let payload = customer_created(&numbered_json(1)).to_string();
    let signed = signer.notification(&payload, &certs.cert_url());
    let mut altered = signed.clone();
    altered["Message"] = json!(customer_created(&numbered_json(2)).to_string());
    let off_host = signer.notification(
        &payload,
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
    );
    let confirm =
        |subscribe_url: &str| signer.subscription_confirmation(subscribe_url, &certs.cert_url());
    let verified =
        confirm("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=verified");
    let mut forged =
        confirm("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=verified");
    forged["SubscribeURL"] =
        json!("https://phish.example/?Action=ConfirmSubscription&Token=forged");

    assert_eq!(
        served.post(token, None, &signed).await,
        (200, json!({"status": "delivered"}))
    );
    assert_eq!(
        served
            .post(token, None, &SnsSigner::v1_notification(&certs.cert_url()))
            .await,
        (200, json!({"status": "delivered"})),
        "SignatureVersion 1"
    );
    assert_eq!(
        served.post(token, None, &altered).await,
        (401, json!({"error": "Unauthorized"}))
    );
    assert_eq!(served.post(token, None, &off_host).await.0, 401);
    assert_eq!(
        served.post(token, None, &verified).await,
        (200, json!({"status": "subscription_confirmation_logged"}))
    );
    assert_eq!(served.post(token, None, &forged).await.0, 401);
    // A signature never replaces the shared token.
    assert_eq!(served.post("", None, &signed).await.0, 401);
    served.stop().await;

    assert_eq!(segment.message_count(), 2, "only the signed notifications");
    assert_eq!(certs.fetches(), 1);
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("Token=verified"), "{log}");
    assert!(!log.contains("Token=forged"), "{log}");
    assert!(
        log.contains("the SNS message's signature does not verify"),
        "{log}"
    );
}

#[tokio::test]
async fn oidc_settings_are_checked_at_start_up() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("WEBHOOK_TOKEN", "hook-token")
        .env("WEBHOOK_OIDC_EMAIL", "not-an-email")
        .env("WEBHOOK_OIDC_JWKS_URL", "http://keys.example.com/certs")
        .env("WEBHOOK_SNS_CERT_HOSTS", "sns.*.amazonaws.com, bad/host");

    let output = app.run(&["serve", "--listen", "127.0.0.1:0"]).await;

    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output).trim_end(),
        "WEBHOOK_OIDC_JWKS_URL: http://keys.example.com/certs is plain http; use https (http is allowed only to a loopback host)\n\
         WEBHOOK_OIDC_EMAIL: `not-an-email` is not a service account's email address\n\
         WEBHOOK_SNS_CERT_HOSTS: `bad/host` is not a host pattern (host names whose labels may be `*`, each with an optional :port, separated by commas)"
    );
}
