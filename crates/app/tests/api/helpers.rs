//! Fakes on local ports and a runner for the real binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

pub const WRITE_KEY: &str = "test-write-key";
pub const PROJECT: &str = "test-shop";

/// Starts a router on 127.0.0.1, port 0, and returns its base URL.
pub async fn spawn(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Waits for a condition, polling, up to a deadline; panics with `what` after it.
pub async fn eventually(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How the fake Segment answers a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentMode {
    /// 200 at once.
    Accept,
    /// 200 after this delay.
    Slow(Duration),
    /// 500 or 429 for about this share of requests (deterministic), else 200.
    Flaky(f64),
    /// Always 500.
    Down,
    /// Always 401.
    Unauthorized,
}

#[derive(Debug)]
struct SegmentInner {
    mode: SegmentMode,
    /// Every message acknowledged, in order.
    messages: Vec<Value>,
    requests: u64,
    bad_auth: u64,
}

/// A fake Segment Tracking API.
#[derive(Clone)]
pub struct FakeSegment {
    pub url: String,
    inner: Arc<Mutex<SegmentInner>>,
}

impl FakeSegment {
    pub async fn start(mode: SegmentMode) -> Self {
        let inner = Arc::new(Mutex::new(SegmentInner {
            mode,
            messages: Vec::new(),
            requests: 0,
            bad_auth: 0,
        }));
        let router = Router::new()
            .route("/v1/batch", post(segment_batch))
            .with_state(Arc::clone(&inner));
        let url = spawn(router).await;
        Self { url, inner }
    }

    pub fn set_mode(&self, mode: SegmentMode) {
        self.inner.lock().unwrap().mode = mode;
    }

    /// Every acknowledged message.
    pub fn messages(&self) -> Vec<Value> {
        self.inner.lock().unwrap().messages.clone()
    }

    pub fn message_count(&self) -> usize {
        self.inner.lock().unwrap().messages.len()
    }

    pub fn requests(&self) -> u64 {
        self.inner.lock().unwrap().requests
    }

    /// How many times each userId was acknowledged.
    pub fn deliveries_by_user(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for message in self.inner.lock().unwrap().messages.iter() {
            *counts
                .entry(message["userId"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
        counts
    }
}

async fn segment_batch(
    State(inner): State<Arc<Mutex<SegmentInner>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"))
    );
    let (mode, request) = {
        let mut inner = inner.lock().unwrap();
        inner.requests += 1;
        (inner.mode, inner.requests)
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        inner.lock().unwrap().bad_auth += 1;
        return (StatusCode::UNAUTHORIZED, "bad auth").into_response();
    }
    match mode {
        SegmentMode::Accept => {}
        SegmentMode::Slow(delay) => tokio::time::sleep(delay).await,
        SegmentMode::Flaky(share) => {
            // A fixed scramble of the request number: deterministic, evenly spread.
            let roll = (request.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
            if roll < share / 2.0 {
                return (StatusCode::INTERNAL_SERVER_ERROR, "flaky").into_response();
            }
            if roll < share {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "0")],
                    "slow down",
                )
                    .into_response();
            }
        }
        SegmentMode::Down => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
        }
        SegmentMode::Unauthorized => {
            return (StatusCode::UNAUTHORIZED, "Invalid write key").into_response();
        }
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not json").into_response();
    };
    let batch = body["batch"].as_array().cloned().unwrap_or_default();
    inner.lock().unwrap().messages.extend(batch);
    (StatusCode::OK, Json(json!({"success": true}))).into_response()
}

/// How the fake commercetools answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtpMode {
    /// Tokens with `view_customers`, customers served.
    Healthy,
    /// The token endpoint refuses the client credentials.
    BadCredentials,
    /// Tokens without `view_customers`; the customers query answers 403.
    MissingScope,
}

#[derive(Clone)]
struct CtpState {
    customers: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<CtpMode>>,
}

/// A fake commercetools: OAuth token endpoint and the customers query.
#[derive(Clone)]
pub struct FakeCommercetools {
    pub url: String,
    customers: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<CtpMode>>,
}

impl FakeCommercetools {
    /// Serves these customers, which are kept sorted by id.
    pub async fn start(mut customers: Vec<Value>) -> Self {
        customers.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let state = CtpState {
            customers: Arc::new(Mutex::new(customers)),
            mode: Arc::new(Mutex::new(CtpMode::Healthy)),
        };
        let router = Router::new()
            .route("/oauth/token", post(token))
            .route(&format!("/{PROJECT}/customers"), get(query_customers))
            .with_state(state.clone());
        let url = spawn(router).await;
        Self {
            url,
            customers: state.customers,
            mode: state.mode,
        }
    }

    pub fn set_mode(&self, mode: CtpMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Changes a customer in place (bumping version and lastModifiedAt).
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Value)) {
        let mut customers = self.customers.lock().unwrap();
        let customer = customers
            .iter_mut()
            .find(|c| c["id"] == id)
            .expect("no such customer");
        change(customer);
        customer["version"] = json!(customer["version"].as_i64().unwrap_or(1) + 1);
        customer["lastModifiedAt"] = json!(now_rfc3339());
    }
}

async fn token(State(state): State<CtpState>) -> axum::response::Response {
    let scope = match *state.mode.lock().unwrap() {
        CtpMode::BadCredentials => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"statusCode": 401, "error": "invalid_client"})),
            )
                .into_response()
        }
        CtpMode::MissingScope => format!("view_orders:{PROJECT}"),
        CtpMode::Healthy => format!("view_customers:{PROJECT}"),
    };
    Json(json!({
        "access_token": "fake-token",
        "token_type": "Bearer",
        "expires_in": 172800,
        "scope": scope,
    }))
    .into_response()
}

async fn query_customers(
    State(state): State<CtpState>,
    Query(params): Query<HashMap<String, String>>,
) -> axum::response::Response {
    if *state.mode.lock().unwrap() == CtpMode::MissingScope {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"statusCode": 403, "message": "Insufficient scope"})),
        )
            .into_response();
    }
    let customers = &state.customers;
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20);
    let predicate = params.get("where").cloned().unwrap_or_default();
    let after = quoted_after(&predicate, "id > ");
    let since = quoted_after(&predicate, "lastModifiedAt >= ");
    let customers = customers.lock().unwrap();
    let results: Vec<Value> = customers
        .iter()
        .filter(|c| {
            after
                .as_deref()
                .is_none_or(|a| c["id"].as_str().unwrap_or("") > a)
        })
        .filter(|c| {
            since
                .as_deref()
                .is_none_or(|s| c["lastModifiedAt"].as_str().unwrap_or("") >= s)
        })
        .take(limit)
        .cloned()
        .collect();
    Json(json!({
        "limit": limit,
        "offset": 0,
        "count": results.len(),
        "results": results,
    }))
    .into_response()
}

fn quoted_after(predicate: &str, prefix: &str) -> Option<String> {
    let start = predicate.find(prefix)? + prefix.len();
    let rest = predicate[start..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A realistic customer; every `no_email_every`-th one has no email.
pub fn customer(i: usize, no_email_every: usize) -> Value {
    let mut customer = json!({
        "id": format!("cust-{i:08}"),
        "version": 1,
        "firstName": format!("First{i}"),
        "lastName": "Müller",
        "createdAt": "2024-01-01T00:00:00.000Z",
        "lastModifiedAt": "2024-01-02T00:00:00.000Z",
        "addresses": [{"id": "a1", "streetName": "Hauptstraße", "streetNumber": "1",
                        "city": "Berlin", "postalCode": "10115", "country": "DE",
                        "phone": "+49 30 1234"}],
        "defaultBillingAddressId": "a1",
        "isEmailVerified": true,
        "custom": {"type": {"typeId": "type", "id": "t1"},
                    "fields": {"loyaltyTier": {"key": "gold", "label": "Gold"}, "newsletter": true}},
    });
    if no_email_every == 0 || i % no_email_every != 0 {
        customer["email"] = json!(format!("Customer{i}@Example.com"));
    }
    customer
}

/// The real binary, in its own working directory, with a clean environment.
pub struct App {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl App {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Segment and commercetools fakes wired in, with the write key set.
    pub fn with_fakes(self, segment: &FakeSegment, ctp: Option<&FakeCommercetools>) -> Self {
        let app = self
            .env("SEGMENT_WRITE_KEY", WRITE_KEY)
            .env("SEGMENT_ENDPOINT", &segment.url);
        match ctp {
            Some(ctp) => app
                .env("CTP_PROJECT_KEY", PROJECT)
                .env("CTP_CLIENT_ID", "client")
                .env("CTP_CLIENT_SECRET", "client-secret-value")
                .env("CTP_AUTH_URL", &ctp.url)
                .env("CTP_API_URL", &ctp.url),
            None => app,
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("segment-sync.db")
    }

    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_segment-sync"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                if std::env::var_os("TEST_LOG").is_some() {
                    "debug"
                } else {
                    "warn"
                },
            )
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Runs the binary to completion off the async executor.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `--json` summary: the last stdout line.
pub fn summary(output: &Output) -> Value {
    let text = stdout(output);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(output)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {line}"))
}

/// Writes customers as NDJSON.
pub fn ndjson(customers: &[Value]) -> String {
    customers.iter().map(|c| format!("{c}\n")).collect()
}

pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
