//! The webhook's senders, as its sender checks see them: tokens signed like
//! Google signs Pub/Sub push tokens, SNS messages signed like AWS signs them, and
//! local hosts (port 0) that publish the keys and certificate, counting fetches.
//!
//! The keys are test keys committed under `crates/testkit/test-keys/` (ring
//! cannot generate RSA keys); nothing but these tests trusts them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use serde_json::{json, Value};

use crate::http::{Answer, Handler, Request, Response, Running};
use crate::lock;

const GOOGLE_TEST_KEY_A: &str = include_str!("../test-keys/google-test-key-a.pem");
const GOOGLE_TEST_KEY_B: &str = include_str!("../test-keys/google-test-key-b.pem");
const SNS_TEST_KEY: &str = include_str!("../test-keys/aws-sns-test-key.pem");
/// The self-signed certificate of the SNS test key, as a certificate host serves it.
pub const SNS_TEST_CERT: &str = include_str!("../test-keys/aws-sns-test-cert.pem");
const SNS_V1_NOTIFICATION: &str =
    include_str!("../test-keys/sns-notification-v1-signed-by-test-key.json");

/// The issuer Google writes in Pub/Sub push tokens.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The DER of the one PEM block in `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).expect("a test key's PEM is base64")
}

fn key_pair(pem: &str) -> RsaKeyPair {
    RsaKeyPair::from_pkcs8(&pem_der(pem)).expect("a test key is an RSA PKCS#8 key")
}

fn rsa_sha256(key: &RsaKeyPair, message: &[u8]) -> Vec<u8> {
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message,
        &mut signature,
    )
    .expect("RSA signing works");
    signature
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Signs tokens as Google signs Pub/Sub push tokens: RS256, with a `kid`.
pub struct GoogleSigner {
    kid: &'static str,
    key: RsaKeyPair,
}

impl GoogleSigner {
    /// The first test key, `kid` `test-key-a`.
    pub fn key_a() -> Self {
        Self {
            kid: "test-key-a",
            key: key_pair(GOOGLE_TEST_KEY_A),
        }
    }

    /// The second test key, `kid` `test-key-b`: the key rotated to, or one the
    /// JWKS does not publish.
    pub fn key_b() -> Self {
        Self {
            kid: "test-key-b",
            key: key_pair(GOOGLE_TEST_KEY_B),
        }
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        self.kid
    }

    /// The public key as a JWKS entry.
    pub fn jwk(&self) -> Value {
        let RsaPublicKeyComponents { n, e }: RsaPublicKeyComponents<Vec<u8>> =
            self.key.public().into();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        })
    }

    /// A token of `claims`, signed RS256 with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// A token of `claims` under any header, signed RS256 with this key.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = rsa_sha256(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// The claims of a Pub/Sub push token for `audience` from service account
/// `email`, valid for an hour from now.
pub fn pubsub_claims(audience: &str, email: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": GOOGLE_ISSUER,
        "aud": audience,
        "sub": "112233445566778899000",
        "azp": "112233445566778899000",
        "email": email,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    })
}

/// A token with `alg: none` and no signature, as a forger would send it.
pub fn unsigned_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A local JWKS host: serves the public keys it is given at `/oauth2/v3/certs`
/// with `Cache-Control: public, max-age=…`, and counts fetches.
#[derive(Clone)]
pub struct FakeJwksHost {
    running: Running,
    shared: Arc<JwksShared>,
}

struct JwksShared {
    keys: Mutex<Vec<Value>>,
    max_age: u64,
    fetches: AtomicU64,
}

impl Handler for JwksShared {
    async fn handle(self: Arc<Self>, request: Request) -> Answer {
        if request.method != "GET" || request.path != "/oauth2/v3/certs" {
            return Response::json(404, r#"{"error":"not found"}"#).into();
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let body = json!({"keys": *lock(&self.keys)}).to_string();
        Response::json(200, body)
            .header(
                "cache-control",
                format!(
                    "public, max-age={}, must-revalidate, no-transform",
                    self.max_age
                ),
            )
            .into()
    }
}

impl FakeJwksHost {
    /// Publishes the keys of `signers`, with a max-age of an hour.
    pub async fn start(signers: &[&GoogleSigner]) -> Self {
        Self::with_max_age(signers, 3600).await
    }

    /// Publishes the keys of `signers` with this `max-age` in seconds.
    pub async fn with_max_age(signers: &[&GoogleSigner], max_age: u64) -> Self {
        let shared = Arc::new(JwksShared {
            keys: Mutex::new(signers.iter().map(|signer| signer.jwk()).collect()),
            max_age,
            fetches: AtomicU64::new(0),
        });
        Self {
            running: Running::start(Arc::clone(&shared), "JWKS host").await,
            shared,
        }
    }

    /// The JWKS's URL, for `WEBHOOK_OIDC_JWKS_URL`.
    pub fn jwks_url(&self) -> String {
        format!("{}/oauth2/v3/certs", self.running.url())
    }

    /// Publishes these keys from now on (a rotation).
    pub fn publish(&self, signers: &[&GoogleSigner]) {
        *lock(&self.shared.keys) = signers.iter().map(|signer| signer.jwk()).collect();
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::SeqCst)
    }
}

/// Signs SNS messages as AWS does: the string to sign of the message's `Type`,
/// RSA with SHA256 (`SignatureVersion` 2), with the SNS test key.
pub struct SnsSigner {
    key: RsaKeyPair,
}

impl Default for SnsSigner {
    fn default() -> Self {
        Self {
            key: key_pair(SNS_TEST_KEY),
        }
    }
}

impl SnsSigner {
    /// A `Notification` whose `Message` is `payload`, signed, its certificate at
    /// `cert_url`.
    pub fn notification(&self, payload: &str, cert_url: &str) -> Value {
        let mut message = json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:commercetools",
            "Subject": "commercetools",
            "Message": payload,
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "SigningCertURL": cert_url,
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        });
        self.sign(&mut message);
        message
    }

    /// A `SubscriptionConfirmation` asking that `subscribe_url` be visited, signed.
    pub fn subscription_confirmation(&self, subscribe_url: &str, cert_url: &str) -> Value {
        let mut message = json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e2425",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:commercetools",
            "Message": "You have chosen to subscribe to the topic arn:aws:sns:eu-west-1:123456789012:commercetools.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": subscribe_url,
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "SigningCertURL": cert_url,
        });
        self.sign(&mut message);
        message
    }

    /// Signs `message` (an object) in place with `SignatureVersion` 2.
    pub fn sign(&self, message: &mut Value) {
        let signature = rsa_sha256(&self.key, string_to_sign(message).as_bytes());
        message["SignatureVersion"] = json!("2");
        message["Signature"] = json!(STANDARD.encode(signature));
    }

    /// A `Notification` signed with `SignatureVersion` 1 (SHA1withRSA) by the same
    /// key, its certificate at `cert_url`; its `Message` is a `ResourceUpdated` of
    /// customer `c-sns-v1`.
    pub fn v1_notification(cert_url: &str) -> Value {
        let mut message: Value =
            serde_json::from_str(SNS_V1_NOTIFICATION).expect("the v1 fixture is JSON");
        message["SigningCertURL"] = json!(cert_url);
        message
    }
}

/// The string AWS signs: `Name\nvalue\n` for each signed field, in its order.
fn string_to_sign(message: &Value) -> String {
    let fields: &[&str] = if message["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    fields
        .iter()
        .filter_map(|name| Some(format!("{name}\n{}\n", message.get(*name)?.as_str()?)))
        .collect()
}

/// A local host of the SNS test certificate, counting fetches.
#[derive(Clone)]
pub struct FakeSnsCertHost {
    running: Running,
    shared: Arc<CertShared>,
}

struct CertShared {
    fetches: AtomicU64,
}

impl Handler for CertShared {
    async fn handle(self: Arc<Self>, request: Request) -> Answer {
        if request.method != "GET" || request.path != "/SimpleNotificationService-test.pem" {
            return Response::json(404, r#"{"error":"not found"}"#).into();
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Response {
            status: 200,
            headers: vec![(
                "content-type".to_owned(),
                "application/x-pem-file".to_owned(),
            )],
            body: SNS_TEST_CERT.as_bytes().to_vec(),
        }
        .into()
    }
}

impl FakeSnsCertHost {
    /// Starts on 127.0.0.1 port 0, on the test's runtime.
    pub async fn start() -> Self {
        let shared = Arc::new(CertShared {
            fetches: AtomicU64::new(0),
        });
        Self {
            running: Running::start(Arc::clone(&shared), "SNS certificate host").await,
            shared,
        }
    }

    /// One host for the whole test binary, on a thread and runtime of its own, so
    /// that tests on different runtimes can sign with the same URL.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<FakeSnsCertHost> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the shared certificate host");
                runtime.block_on(async move {
                    let host = FakeSnsCertHost::start().await;
                    let _ = sender.send(host);
                    std::future::pending::<()>().await;
                });
            });
            receiver.recv().expect("the shared certificate host starts")
        })
    }

    /// `127.0.0.1:<port>`, the host pattern that allows it alone.
    pub fn host(&self) -> String {
        self.running.addr().to_string()
    }

    /// The certificate's URL, for a message's `SigningCertURL`.
    pub fn cert_url(&self) -> String {
        format!("{}/SimpleNotificationService-test.pem", self.running.url())
    }

    /// How many times the certificate was fetched.
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::SeqCst)
    }
}
