//! The webhook router, in process with `oneshot` over the in-memory ports, and served
//! on a local listener where a test needs a real connection.

mod auth;
mod bodies;
mod connections;
mod deletions;
mod messages;
mod operations;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::serve_support::{customer_json, DEADLINE, TOKEN};

/// The customer most tests send: an email with spaces and capitals to clean.
fn ada() -> Value {
    customer_json("c1", 1, Some(" Ada@Example.COM "))
}

/// Polls `probe` until it gives a value, failing after [`DEADLINE`].
pub(super) async fn wait_until<T>(mut probe: impl FnMut() -> Option<T>) -> T {
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
pub(super) async fn raw_post(addr: SocketAddr, body: &str) -> (u16, Value) {
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
