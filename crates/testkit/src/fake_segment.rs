//! A fake Segment Tracking API: `POST /v1/batch` on 127.0.0.1, port 0.
//!
//! The client always posts to `{base}/v1/batch` (it strips a trailing `/` or `/v1`
//! from the endpoint, see the adapter's `SegmentConfig::batch_url`), so that is
//! the only route; anything else is a 404 that fails the test that sent it.
//!
//! It checks the Basic-auth write key ([`WRITE_KEY`]), decodes gzip bodies, and
//! answers as its [`SegmentMode`] says — or as a script, one [`Reply`] per request,
//! which can also delay an answer or reset the connection. What it acknowledged
//! (a 2xx answer) is recorded: every message, parsed, with every request
//! ([`Recording::Messages`]), or only how many identify calls there were
//! ([`Recording::Counts`], for benchmarks: no parsing, no memory growth).

use std::collections::HashMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use crate::http::{self, Answer, Handler, Request, Response, Running};
use crate::lock;

/// The write key the fake accepts.
pub const WRITE_KEY: &str = "test-write-key";

/// The marker of one identify call in a compact batch body, which the client
/// writes (`"type":"identify"` appears once per message and nowhere else).
const IDENTIFY_MARKER: &str = r#""type":"identify""#;

/// How the fake answers a batch when no script does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentMode {
    /// 200 at once.
    Accept,
    /// 200 after this delay.
    Slow(Duration),
    /// For about this share of requests (0.0 to 1.0), half 500 and half 429 with
    /// `Retry-After: 0`; else 200. Deterministic: the same requests fail each run.
    Flaky(f64),
    /// Always 500.
    Down,
    /// Always 401 `Invalid write key`.
    Unauthorized,
    /// Closes every connection with a reset, without answering.
    Reset,
}

/// What the fake keeps of the batches it acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recording {
    /// Every request and every acknowledged message, parsed, for assertions.
    #[default]
    Messages,
    /// Only the number of identify calls acknowledged, counted without parsing:
    /// memory stays flat and the fake keeps up with a benchmark.
    Counts,
}

/// A scripted answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answers with this status, headers and body, after `delay`.
    Status {
        /// The HTTP status.
        status: u16,
        /// Extra headers, such as `Retry-After`.
        headers: Vec<(String, String)>,
        /// The body; `{"success":true}` when `None`.
        body: Option<String>,
        /// How long to wait before answering.
        delay: Duration,
    },
    /// Closes the connection with a TCP reset, without answering.
    Reset,
}

impl Reply {
    /// 200 `{"success":true}` at once.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// This status at once.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            headers: Vec::new(),
            body: None,
            delay: Duration::ZERO,
        }
    }

    /// The same answer with one more header (no effect on [`Reply::Reset`]).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        if let Self::Status { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.into()));
        }
        self
    }

    /// The same answer with this body (no effect on [`Reply::Reset`]).
    pub fn body(mut self, text: impl Into<String>) -> Self {
        if let Self::Status { body, .. } = &mut self {
            *body = Some(text.into());
        }
        self
    }

    /// The same answer, given after `delay` (no effect on [`Reply::Reset`]).
    pub fn after(mut self, wait: Duration) -> Self {
        if let Self::Status { delay, .. } = &mut self {
            *delay = wait;
        }
        self
    }

    fn of_mode(mode: SegmentMode, request: u64) -> Self {
        match mode {
            SegmentMode::Accept => Self::ok(),
            SegmentMode::Slow(delay) => Self::ok().after(delay),
            SegmentMode::Flaky(share) => {
                // A fixed scramble of the request number: deterministic, evenly spread.
                let roll = (request.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
                if roll < share / 2.0 {
                    Self::status(500).body("flaky")
                } else if roll < share {
                    Self::status(429)
                        .header("Retry-After", "0")
                        .body("slow down")
                } else {
                    Self::ok()
                }
            }
            SegmentMode::Down => Self::status(500).body("down"),
            SegmentMode::Unauthorized => Self::status(401).body("Invalid write key"),
            SegmentMode::Reset => Self::Reset,
        }
    }
}

/// One batch request as the fake received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// 1 for the first request the fake received, and so on.
    pub number: u64,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when it came compressed.
    pub body: Bytes,
    /// The body's size on the wire (compressed, if it was).
    pub wire_len: usize,
    /// The status answered; `None` while the answer is being decided or
    /// delayed, and for good when the connection was reset instead or the
    /// client went away first (its batch is then not acknowledged).
    pub status: Option<u16>,
}

impl SeenRequest {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }

    /// Whether the body came gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.header("content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a batch body is JSON")
    }

    /// The messages of the batch, in order.
    pub fn batch(&self) -> Vec<Value> {
        match self.json().get_mut("batch").map(Value::take) {
            Some(Value::Array(messages)) => messages,
            _ => Vec::new(),
        }
    }

    /// The `messageId`s of the batch, in order.
    pub fn message_ids(&self) -> Vec<String> {
        self.batch()
            .iter()
            .map(|m| m["messageId"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Decides the answer to each request instead of the mode.
type Script = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

/// Sets up a [`FakeSegment`] before it starts.
#[must_use]
pub struct FakeSegmentBuilder {
    mode: SegmentMode,
    recording: Recording,
    script: Option<Arc<Script>>,
}

impl FakeSegmentBuilder {
    /// How it answers (default [`SegmentMode::Accept`]).
    pub fn mode(mut self, mode: SegmentMode) -> Self {
        self.mode = mode;
        self
    }

    /// Keeps only counts ([`Recording::Counts`]).
    pub fn counts_only(mut self) -> Self {
        self.recording = Recording::Counts;
        self
    }

    /// Answers every request (with the right write key) as `script` says.
    pub fn script(
        mut self,
        script: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.script = Some(Arc::new(script));
        self
    }

    /// Binds 127.0.0.1 port 0 and starts serving.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(self) -> FakeSegment {
        let (messages, _) = watch::channel(0);
        let (requests, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            expected_authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"))
            ),
            recording: self.recording,
            mode: Mutex::new(self.mode),
            script: Mutex::new(self.script),
            request_number: AtomicU64::new(0),
            bad_auth: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            messages,
            requests,
            log: Mutex::new(Log::default()),
        });
        FakeSegment {
            running: Running::start(Arc::clone(&shared), "Segment").await,
            shared,
        }
    }
}

/// A running fake Segment; clones share it, and it stops when the last is dropped.
#[derive(Clone)]
pub struct FakeSegment {
    running: Running,
    shared: Arc<Shared>,
}

struct Shared {
    expected_authorization: String,
    recording: Recording,
    mode: Mutex<SegmentMode>,
    script: Mutex<Option<Arc<Script>>>,
    request_number: AtomicU64,
    bad_auth: AtomicU64,
    wire_bytes: AtomicU64,
    /// Identify calls acknowledged.
    messages: watch::Sender<u64>,
    /// Requests received, whatever their answer.
    requests: watch::Sender<u64>,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    requests: Vec<SeenRequest>,
    messages: Vec<Value>,
}

impl FakeSegment {
    /// A fake that answers as `mode` says and records every message.
    pub async fn start(mode: SegmentMode) -> Self {
        Self::builder().mode(mode).start().await
    }

    /// A fake whose every answer `script` decides, recording every message.
    pub async fn scripted(script: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Self {
        Self::builder().script(script).start().await
    }

    /// Set-up beyond a mode: counts only, a script.
    pub fn builder() -> FakeSegmentBuilder {
        FakeSegmentBuilder {
            mode: SegmentMode::Accept,
            recording: Recording::default(),
            script: None,
        }
    }

    /// The base URL to configure as the Segment endpoint (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        self.running.url()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// Changes how the next requests are answered (a script, if any, still decides).
    pub fn set_mode(&self, mode: SegmentMode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Every acknowledged message, in order ([`Recording::Messages`] only).
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.shared.log).messages.clone()
    }

    /// How many identify calls it acknowledged (in either recording).
    pub fn message_count(&self) -> u64 {
        *self.shared.messages.borrow()
    }

    /// How many requests it received, whatever it answered.
    pub fn requests(&self) -> u64 {
        *self.shared.requests.borrow()
    }

    /// The bytes of every batch body received, as sent (compressed, if it was).
    pub fn bytes_received(&self) -> u64 {
        self.shared.wire_bytes.load(Ordering::SeqCst)
    }

    /// How many requests carried another write key (answered 401).
    pub fn bad_auth(&self) -> u64 {
        self.shared.bad_auth.load(Ordering::SeqCst)
    }

    /// Every batch request with the right write key, in order of arrival, with
    /// the status it got ([`Recording::Messages`] only).
    pub fn received(&self) -> Vec<SeenRequest> {
        lock(&self.shared.log).requests.clone()
    }

    /// How many times each `userId` was acknowledged.
    pub fn deliveries_by_user(&self) -> HashMap<String, usize> {
        self.count_by("userId")
    }

    /// How many times each `messageId` was acknowledged.
    pub fn deliveries_by_message_id(&self) -> HashMap<String, usize> {
        self.count_by("messageId")
    }

    fn count_by(&self, field: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for message in &lock(&self.shared.log).messages {
            *counts
                .entry(message[field].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
        counts
    }

    /// Waits until at least `count` identify calls were acknowledged.
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub async fn wait_for_messages(&self, count: u64, timeout: Duration) {
        wait_for(
            &self.shared.messages,
            count,
            timeout,
            "acknowledged messages",
        )
        .await;
    }

    /// Waits until at least `count` requests were received.
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub async fn wait_for_requests(&self, count: u64, timeout: Duration) {
        wait_for(&self.shared.requests, count, timeout, "requests").await;
    }
}

async fn wait_for(counter: &watch::Sender<u64>, count: u64, timeout: Duration, what: &str) {
    let mut seen = counter.subscribe();
    let reached = tokio::time::timeout(timeout, seen.wait_for(|n| *n >= count)).await;
    if reached.is_err() {
        panic!(
            "{count} {what} expected within {timeout:?}, got {}",
            *counter.borrow()
        );
    }
}

impl Handler for Shared {
    async fn handle(self: Arc<Self>, request: Request) -> Answer {
        self.answer(request).await
    }
}

impl Shared {
    async fn answer(&self, request: Request) -> Answer {
        let number = self.request_number.fetch_add(1, Ordering::SeqCst) + 1;
        let counted = || self.requests.send_modify(|n| *n += 1);
        if request.method != "POST" || request.path != "/v1/batch" {
            counted();
            return text(404, "not found").into();
        }
        if request.header("authorization") != Some(self.expected_authorization.as_str()) {
            self.bad_auth.fetch_add(1, Ordering::SeqCst);
            counted();
            return text(401, "bad auth").into();
        }
        let wire_len = request.body.len();
        self.wire_bytes
            .fetch_add(wire_len as u64, Ordering::Relaxed);
        let gzip = request
            .header("content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let body = if gzip {
            let mut plain = Vec::with_capacity(wire_len * 8);
            if flate2::read::GzDecoder::new(&request.body[..])
                .read_to_end(&mut plain)
                .is_err()
            {
                counted();
                return text(400, "bad gzip").into();
            }
            plain
        } else {
            request.body
        };
        let seen = SeenRequest {
            number,
            headers: request.headers,
            body: Bytes::from(body),
            wire_len,
            status: None,
        };
        // Logged on arrival, so the log is in arrival order and shows a request
        // whose answer is still delayed.
        let entry = (self.recording == Recording::Messages).then(|| {
            let mut log = lock(&self.log);
            log.requests.push(seen.clone());
            log.requests.len() - 1
        });
        // Counted once logged: whoever waited for the count finds it in the log.
        counted();

        let script = lock(&self.script).clone();
        let reply = match script {
            Some(script) => script(&seen),
            None => Reply::of_mode(*lock(&self.mode), number),
        };
        let answer = match reply {
            Reply::Reset => Answer::Reset,
            Reply::Status {
                status,
                headers,
                body,
                delay,
            } => {
                http::pause(delay).await;
                // Recorded once the answer is due, as Segment acknowledges a batch
                // only by answering.
                let status = if (200..300).contains(&status) {
                    match self.acknowledge(&seen) {
                        Ok(()) => status,
                        Err(status) => status,
                    }
                } else {
                    status
                };
                if let Some(entry) = entry {
                    lock(&self.log).requests[entry].status = Some(status);
                }
                let mut response = Response::json(
                    status,
                    body.unwrap_or_else(|| r#"{"success":true}"#.to_owned()),
                );
                for (name, value) in headers {
                    response = response.header(&name, value);
                }
                Answer::Respond(response)
            }
        };
        answer
    }

    /// Records an acknowledged batch; `Err(400)` when its body is not a batch.
    fn acknowledge(&self, seen: &SeenRequest) -> Result<(), u16> {
        let count = match self.recording {
            Recording::Counts => {
                let text = std::str::from_utf8(&seen.body).map_err(|_| 400u16)?;
                text.matches(IDENTIFY_MARKER).count()
            }
            Recording::Messages => {
                let Ok(mut body) = serde_json::from_slice::<Value>(&seen.body) else {
                    return Err(400);
                };
                let Some(Value::Array(batch)) = body.get_mut("batch").map(Value::take) else {
                    return Err(400);
                };
                let count = batch.iter().filter(|m| m["type"] == "identify").count();
                lock(&self.log).messages.extend(batch);
                count
            }
        };
        self.messages.send_modify(|n| *n += count as u64);
        Ok(())
    }
}

fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
        body: body.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(user_ids: &[&str]) -> String {
        let messages: Vec<String> = user_ids
            .iter()
            .enumerate()
            .map(|(i, u)| {
                format!(r#"{{"type":"identify","userId":"{u}","messageId":"m-{u}-{i}"}}"#)
            })
            .collect();
        format!(r#"{{"batch":[{}]}}"#, messages.join(","))
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    /// POSTs `body` to `path` with the write key `key`, labelled gzip or not.
    async fn send(
        segment: &FakeSegment,
        path: &str,
        key: &str,
        gzipped: bool,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", segment.url()))
            .basic_auth(key, Some(""))
            .header("content-type", "application/json");
        if gzipped {
            request = request.header("content-encoding", "gzip");
        }
        request.body(body).send().await
    }

    /// A plain batch to `/v1/batch`, which must get an answer.
    async fn post(
        segment: &FakeSegment,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        send(segment, "/v1/batch", key, false, body).await.unwrap()
    }

    #[tokio::test]
    async fn acknowledged_messages_are_recorded_plain_and_gzipped() {
        let segment = FakeSegment::start(SegmentMode::Accept).await;
        let plain = post(&segment, WRITE_KEY, batch(&["a", "b"])).await;
        assert_eq!(plain.status(), 200);
        assert_eq!(plain.text().await.unwrap(), r#"{"success":true}"#);
        let zipped = send(
            &segment,
            "/v1/batch",
            WRITE_KEY,
            true,
            gzip(&batch(&["a", "c"])),
        )
        .await
        .unwrap();
        assert_eq!(zipped.status(), 200);

        assert_eq!(segment.message_count(), 4);
        assert_eq!(segment.requests(), 2);
        let by_user = segment.deliveries_by_user();
        assert_eq!((by_user["a"], by_user["b"], by_user["c"]), (2, 1, 1));
        let received = segment.received();
        assert!(!received[0].is_gzip() && received[1].is_gzip());
        assert!(received[1].wire_len < received[1].body.len() + 30);
        assert_eq!(received[1].message_ids(), ["m-a-0", "m-c-1"]);
        assert_eq!(received[1].status, Some(200));
        assert_eq!(segment.messages()[3]["userId"], "c");
    }

    #[tokio::test]
    async fn counts_only_counts_identify_calls_without_keeping_them() {
        let segment = FakeSegment::builder().counts_only().start().await;
        post(&segment, WRITE_KEY, batch(&["a", "b", "c"])).await;
        post(&segment, WRITE_KEY, gzip(&batch(&["d"]))).await;
        // The second body was sent compressed but not labelled: it is not text.
        assert_eq!(segment.message_count(), 3);
        assert!(segment.messages().is_empty() && segment.received().is_empty());
        assert!(segment.bytes_received() > batch(&["a", "b", "c"]).len() as u64);
    }

    #[tokio::test]
    async fn another_write_key_or_path_is_refused() {
        let segment = FakeSegment::start(SegmentMode::Accept).await;
        assert_eq!(
            post(&segment, "other-key", batch(&["a"])).await.status(),
            401
        );
        let elsewhere = send(&segment, "/batch", WRITE_KEY, false, batch(&["a"]))
            .await
            .unwrap();
        assert_eq!(elsewhere.status(), 404);
        assert_eq!(segment.bad_auth(), 1);
        assert_eq!(segment.message_count(), 0);
    }

    #[tokio::test]
    async fn modes_answer_as_named() {
        let segment = FakeSegment::start(SegmentMode::Down).await;
        assert_eq!(post(&segment, WRITE_KEY, batch(&["a"])).await.status(), 500);
        segment.set_mode(SegmentMode::Unauthorized);
        let refused = post(&segment, WRITE_KEY, batch(&["a"])).await;
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.text().await.unwrap(), "Invalid write key");
        segment.set_mode(SegmentMode::Reset);
        let reset = send(&segment, "/v1/batch", WRITE_KEY, false, batch(&["a"])).await;
        assert!(reset.is_err(), "{reset:?}");
        segment.set_mode(SegmentMode::Slow(Duration::from_millis(50)));
        let started = std::time::Instant::now();
        assert_eq!(post(&segment, WRITE_KEY, batch(&["a"])).await.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(segment.message_count(), 1);
        let statuses: Vec<Option<u16>> = segment.received().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Some(500), Some(401), None, Some(200)]);
    }

    #[test]
    fn flaky_fails_about_its_share_with_retry_after_on_the_429s() {
        let replies: Vec<Reply> = (1..=1000)
            .map(|n| Reply::of_mode(SegmentMode::Flaky(0.3), n))
            .collect();
        let failed = replies.iter().filter(|r| r != &&Reply::ok()).count();
        assert!((250..=350).contains(&failed), "{failed}");
        let limited: Vec<&Reply> = replies
            .iter()
            .filter(|r| matches!(r, Reply::Status { status: 429, .. }))
            .collect();
        assert!(!limited.is_empty());
        assert!(limited
            .iter()
            .all(|r| matches!(r, Reply::Status { headers, .. }
            if headers == &[("Retry-After".to_owned(), "0".to_owned())])));
        assert_eq!(
            replies,
            (1..=1000)
                .map(|n| Reply::of_mode(SegmentMode::Flaky(0.3), n))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_script_decides_each_answer_and_only_2xx_is_acknowledged() {
        let segment = FakeSegment::scripted(|request| match request.number {
            1 => Reply::status(429).header("Retry-After", "7").body("later"),
            2 => Reply::Reset,
            _ => Reply::ok().after(Duration::from_millis(1)),
        })
        .await;
        let limited = post(&segment, WRITE_KEY, batch(&["a"])).await;
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "7");
        assert_eq!(limited.text().await.unwrap(), "later");
        let reset = send(&segment, "/v1/batch", WRITE_KEY, false, batch(&["a"])).await;
        assert!(reset.is_err());
        assert_eq!(post(&segment, WRITE_KEY, batch(&["a"])).await.status(), 200);
        assert_eq!(segment.deliveries_by_message_id()["m-a-0"], 1);
        segment.wait_for_requests(3, Duration::from_secs(5)).await;
        segment.wait_for_messages(1, Duration::from_secs(5)).await;
    }

    #[tokio::test]
    #[should_panic(expected = "2 acknowledged messages expected")]
    async fn waiting_for_what_never_comes_fails_at_the_deadline() {
        let segment = FakeSegment::start(SegmentMode::Accept).await;
        post(&segment, WRITE_KEY, batch(&["a"])).await;
        segment
            .wait_for_messages(2, Duration::from_millis(50))
            .await;
    }

    #[tokio::test]
    async fn a_batch_whose_client_went_away_is_not_acknowledged() {
        use tokio::io::AsyncWriteExt as _;
        let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(100))).await;
        let body = batch(&["gone"]);
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"));
        let mut stream = tokio::net::TcpStream::connect(segment.addr())
            .await
            .unwrap();
        let head = format!(
            "POST /v1/batch HTTP/1.1\r\nhost: x\r\nauthorization: Basic {credentials}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        segment.wait_for_requests(1, Duration::from_secs(5)).await;
        drop(stream);

        // Sent after the first arrived, with the same delay: answered after the
        // first would have been.
        assert_eq!(
            post(&segment, WRITE_KEY, batch(&["stays"])).await.status(),
            200
        );
        assert_eq!(segment.message_count(), 1);
        assert_eq!(segment.messages()[0]["userId"], "stays");
        let statuses: Vec<Option<u16>> = segment.received().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [None, Some(200)]);
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_batch_is_a_400() {
        let segment = FakeSegment::start(SegmentMode::Accept).await;
        assert_eq!(post(&segment, WRITE_KEY, "not json").await.status(), 400);
        assert_eq!(
            post(&segment, WRITE_KEY, r#"{"batch":7}"#).await.status(),
            400
        );
        assert_eq!(segment.message_count(), 0);
    }
}
