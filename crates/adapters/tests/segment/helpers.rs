//! Messages, configurations and a scriptable HTTP/1.1 server for the tests.

use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use segment_sync_adapters::segment::{HttpSegmentClient, SegmentConfig};
use segment_sync_domain::identify::identify;
use segment_sync_domain::retry::{RetryPolicy, RetryableStatuses};
use segment_sync_domain::{Customer, Identify, Outcome, UserIdStrategy, WriteKey};
use segment_sync_ports::{PendingOutcome, SegmentClient};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The write key every test client uses.
pub const WRITE_KEY: &str = "test-write-key";

/// The longest any single test step may take before the test fails.
pub const STEP_LIMIT: Duration = Duration::from_secs(40);

pub fn write_key() -> WriteKey {
    WriteKey::parse(Some(WRITE_KEY)).unwrap()
}

/// A generated customer with an email, so that it is always identified.
pub fn customer(index: usize) -> Customer {
    Customer {
        id: format!("cust-{index:06}"),
        version: 1,
        email: Some(format!("User{index}@Example.com")),
        first_name: Some("Ada".into()),
        last_name: Some(format!("Lovelace{index}")),
        created_at: Some("2024-01-01T00:00:00.000Z".into()),
        last_modified_at: Some("2024-05-01T10:00:00.000Z".into()),
        ..Customer::default()
    }
}

pub fn message(index: usize) -> Identify {
    identify(&customer(index), UserIdStrategy::Email).unwrap()
}

pub fn messages(count: usize) -> Vec<Identify> {
    (0..count).map(message).collect()
}

/// Retries in milliseconds, so that a test with many retries stays quick.
pub fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        statuses: RetryableStatuses::Segment,
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(300),
        time_budget: Duration::from_secs(60),
    }
}

/// A client configuration for a local server: quick retries, fixed jitter, and a
/// flush interval long enough that batches go out on `flush` or when full, which
/// makes batch boundaries predictable.
pub fn config(endpoint: &str) -> SegmentConfig {
    SegmentConfig {
        retry: quick_retries(5),
        jitter_seed: Some(7),
        flush_interval: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..SegmentConfig::new(endpoint, write_key())
    }
}

pub fn client(config: SegmentConfig) -> HttpSegmentClient {
    HttpSegmentClient::new(config).expect("client builds")
}

/// Runs a step with a deadline so that a hang fails the test instead of blocking it.
pub async fn within<T>(step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_LIMIT, step)
        .await
        .expect("step did not finish in time")
}

/// Enqueues every message and keeps their pending outcomes.
pub async fn enqueue(
    client: &HttpSegmentClient,
    messages: impl IntoIterator<Item = Identify>,
) -> Vec<PendingOutcome> {
    let mut pending = Vec::new();
    for message in messages {
        pending.push(within(client.identify(message)).await.expect("accepted"));
    }
    pending
}

/// Flushes, then reads every outcome, which `flush` promises are all known by now.
pub async fn flush_and_settle(
    client: &HttpSegmentClient,
    pending: Vec<PendingOutcome>,
) -> Vec<Outcome> {
    within(client.flush()).await.expect("flush");
    pending
        .into_iter()
        .map(|outcome| {
            // Unconstrained: tokio's cooperative budget would otherwise report a
            // ready outcome as pending after a hundred or so polls.
            tokio::task::unconstrained(outcome)
                .now_or_never()
                .expect("every outcome is known once flush returns")
        })
        .collect()
}

/// The JSON of a request body, gunzipped when it is compressed.
pub fn body_json(body: &[u8], gzip: bool) -> Value {
    let mut text = Vec::new();
    if gzip {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut text)
            .expect("gzip body");
    } else {
        text = body.to_vec();
    }
    serde_json::from_slice(&text).expect("JSON body")
}

/// The messageIds in a batch body, in order.
pub fn message_ids(body: &Value) -> Vec<String> {
    body["batch"]
        .as_array()
        .expect("batch array")
        .iter()
        .map(|message| message["messageId"].as_str().unwrap().to_owned())
        .collect()
}

/// One request as the scripted server saw it.
pub struct SeenRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What the scripted server does with a request.
pub enum Reply {
    /// Answer with this status and headers, after `delay`.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        delay: Duration,
    },
    /// Reset the connection without answering.
    Reset,
}

impl Reply {
    pub fn ok() -> Self {
        Self::status(200)
    }

    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

/// A minimal HTTP/1.1 server on a local port whose answers a closure scripts.
/// It can do what wiremock cannot: reset a connection mid-request.
pub struct ScriptedServer {
    pub url: String,
    requests: Arc<AtomicUsize>,
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

impl ScriptedServer {
    pub async fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&handler),
                    Arc::clone(&counter),
                ));
            }
        });
        Self { url, requests }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve_connection(stream: TcpStream, handler: Arc<Handler>, counter: Arc<AtomicUsize>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        counter.fetch_add(1, Ordering::SeqCst);
        match handler(&SeenRequest { headers, body }) {
            Reply::Reset => {
                let stream = reader.into_inner();
                let _ = stream.set_zero_linger();
                return;
            }
            Reply::Status {
                status,
                headers,
                delay,
            } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let body = r#"{"success":true}"#;
                let mut answer = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    answer.push_str(&format!("{name}: {value}\r\n"));
                }
                answer.push_str("\r\n");
                answer.push_str(body);
                if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}
