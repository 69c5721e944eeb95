//! The webhook's connections against clients that misbehave: idle ones, ones that
//! send their headers slowly or their body never, too many of them; a shutdown
//! bounded by one deadline whatever they do; and redeliveries arriving together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use segment_sync::serve::{serve, ServeError, ServeOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ada, raw_post};
use crate::serve_support::*;

/// A webhook served on 127.0.0.1 port 0 over fresh in-memory ports.
struct Served {
    addr: SocketAddr,
    segment: Arc<MemorySegment>,
    source: Arc<MemorySource>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), ServeError>>,
}

impl Served {
    async fn start(options: ServeOptions) -> Self {
        init_logs();
        let segment = Arc::new(MemorySegment::new());
        let source = Arc::new(MemorySource::new());
        let state = Arc::new(MemoryStateStore::new());
        let deps = deps(&segment, &source, &state, Some(TOKEN));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            serve(listener, deps, &options, shutdown).await
        });
        Self {
            addr,
            segment,
            source,
            stop: Some(stop),
            server,
        }
    }

    /// Signals shutdown and waits for `serve` to return, failing past `limit`.
    async fn shut_down_within(mut self, limit: Duration) -> (Duration, Arc<MemorySegment>) {
        let started = Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        let served = tokio::time::timeout(limit, self.server)
            .await
            .expect("serve returns within the deadline")
            .unwrap();
        assert!(served.is_ok(), "{served:?}");
        (started.elapsed(), self.segment)
    }
}

fn options(header_read_timeout: Duration) -> ServeOptions {
    ServeOptions {
        header_read_timeout,
        body_read_timeout: Duration::from_secs(1),
        shutdown_deadline: Duration::from_secs(3),
        request_timeout: Duration::from_secs(2),
        ..ServeOptions::default()
    }
}

/// Resolves when the server closes `stream` (a read returns 0 or an error).
async fn closed_by_server(mut stream: TcpStream) {
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_are_closed_by_their_timeout_and_do_not_hold_up_others() {
    let header_timeout = Duration::from_secs(2);
    let served = Served::start(options(header_timeout)).await;
    let addr = served.addr;

    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /webhooks/commercetools HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();

    let asked = Instant::now();
    let (status, answer) = raw_post(addr, &customer_created(&ada()).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"status": "delivered"}));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "answered in {:?} despite 2,050 idle and slow clients",
        asked.elapsed()
    );

    let closing: Vec<_> = idle
        .into_iter()
        .chain(slow)
        .map(|stream| tokio::spawn(closed_by_server(stream)))
        .collect();
    for closed in closing {
        tokio::time::timeout(header_timeout * 3, closed)
            .await
            .expect("each idle or slow connection is closed by its timeout")
            .unwrap();
    }
    assert!(
        opened.elapsed() >= header_timeout - Duration::from_millis(100),
        "not closed before the timeout"
    );
    served.shut_down_within(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_with_connections_open_ends_within_its_deadline_and_flushes() {
    let mut options = options(Duration::from_secs(60));
    options.shutdown_deadline = Duration::from_secs(3);
    let served = Served::start(options).await;
    let mut open = Vec::new();
    for _ in 0..100 {
        open.push(TcpStream::connect(served.addr).await.unwrap());
    }
    let mut half = TcpStream::connect(served.addr).await.unwrap();
    half.write_all(b"POST /webhooks/commercetools HTTP/1.1\r\n")
        .await
        .unwrap();

    let (took, segment) = served.shut_down_within(Duration::from_secs(5)).await;

    assert!(
        took <= Duration::from_secs(3) + Duration::from_millis(500),
        "took {took:?}"
    );
    assert!(segment.is_closed(), "Segment was flushed and closed");
}

#[tokio::test]
async fn a_body_that_never_comes_is_408() {
    let served = Served::start(options(Duration::from_secs(10))).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /webhooks/commercetools HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 100\r\n\r\n{{\"notif"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("answered after the body timeout")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..read]);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    served.shut_down_within(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_as_they_come() {
    let served = Served::start(ServeOptions {
        max_connections: 10,
        ..options(Duration::from_secs(60))
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(TcpStream::connect(served.addr).await.unwrap());
    }
    // Accepted in order: the eleventh finds the cap reached.
    let mut refused = TcpStream::connect(served.addr).await.unwrap();
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    tokio::time::timeout(Duration::from_secs(5), closed_by_server(refused))
        .await
        .expect("the connection over the cap is closed");

    drop(held);
    let healthy = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut stream = TcpStream::connect(served.addr).await.unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer).await;
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    healthy.await.expect("room again once connections close");
    served.shut_down_within(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_redeliveries_of_one_message_make_one_fetch_and_one_send() {
    let served = Served::start(options(Duration::from_secs(10))).await;
    served
        .source
        .put(customer("c7", 4, Some("grace@example.com")));
    let gate = Gate::new();
    served.segment.behave(SegmentBehaviour::Gated(gate.clone()));
    let body = message("CustomerFirstNameSet", "customer", "c7").to_string();

    let requests: Vec<_> = (0..50)
        .map(|_| {
            let body = body.clone();
            let addr = served.addr;
            tokio::spawn(async move { raw_post(addr, &body).await })
        })
        .collect();
    served.segment.wait_for_sent(1).await;
    // Every other request is in, waiting on the first one, before Segment answers.
    let addr = served.addr;
    tokio::time::timeout(Duration::from_secs(10), async move {
        loop {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut metrics = String::new();
            let _ = stream.read_to_string(&mut metrics).await;
            if sample(&metrics, "webhook_requests_coalesced_total") >= 49.0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("49 requests joined the first");
    gate.open();

    for request in requests {
        let (status, answer) = request.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            answer == json!({"status": "delivered"}) || answer == json!({"status": "unchanged"}),
            "{answer}"
        );
    }
    assert_eq!(served.source.lookups().len(), 1, "one commercetools fetch");
    assert_eq!(served.segment.sent().len(), 1, "one Segment send");
    served.shut_down_within(Duration::from_secs(5)).await;
}
