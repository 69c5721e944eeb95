//! The small HTTP/1.1 server under both fakes.
//!
//! Hand-rolled rather than hyper or axum for two reasons: a fake must be able to
//! reset a connection in the middle of a request (no framework lets a handler do
//! that), and the testkit stays a light dependency of every crate's tests. It
//! speaks just what the adapters' clients send: keep-alive connections, bodies by
//! `Content-Length` or chunked, answers with a `Content-Length`. Like hyper, it
//! drops a request's handler when the client goes away before the answer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest request head (request line and headers) the server reads.
const MAX_HEAD: usize = 64 * 1024;
/// The largest body it reads; Segment itself refuses batches over 500 KB.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path as sent, still percent-encoded.
    pub(crate) path: String,
    /// What follows `?`, still encoded; empty without a query.
    pub(crate) raw_query: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// The first header of that name (names are case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The query parameters, decoded as `application/x-www-form-urlencoded`.
    pub(crate) fn query(&self) -> Vec<(String, String)> {
        form_pairs(&self.raw_query)
    }
}

/// The first header of that name in a list (names are case-insensitive).
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// What a handler does with a request.
pub(crate) enum Answer {
    /// Writes this response; the connection stays open for the next request.
    Respond(Response),
    /// Closes the connection at once with a TCP reset, without answering.
    Reset,
}

/// A response; `Content-Length` is added when it is written.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub(crate) fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: body.into(),
        }
    }

    /// The same response with one more header.
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Answer::Respond(response)
    }
}

/// The application behind a server.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request. Requests on different connections run concurrently.
    fn handle(self: Arc<Self>, request: Request) -> impl Future<Output = Answer> + Send;
}

/// A server on 127.0.0.1; it stops accepting when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Server {
    /// Binds 127.0.0.1 port 0 and serves `handler` on its own tasks.
    pub(crate) async fn start<H: Handler>(handler: Arc<H>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, Arc::clone(&handler)));
            }
        });
        Ok(Self { addr, accept })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A started server and the base URL that reaches it; clones share the server,
/// which stops accepting when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    url: String,
    server: Arc<Server>,
}

impl Running {
    /// Starts `handler` on 127.0.0.1 port 0.
    ///
    /// # Panics
    /// When no local port can be bound; `what` names the fake in the message.
    pub(crate) async fn start<H: Handler>(handler: Arc<H>, what: &str) -> Self {
        let server = Server::start(handler)
            .await
            .unwrap_or_else(|e| panic!("the fake {what} cannot bind a local port: {e}"));
        Self {
            url: format!("http://{}", server.addr()),
            server: Arc::new(server),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn connection<H: Handler>(stream: TcpStream, handler: Arc<H>) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let request = match read_request(&mut reader).await {
            Ok(Some(request)) => request,
            // The client closed the connection, or sent something this server
            // does not speak: either way there is nobody to answer.
            Ok(None) | Err(_) => return,
        };
        let close = request
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        // A client that goes away stops its request's handler, as hyper does: a
        // fake must not acknowledge (and record) what nobody was waiting for.
        let answer = tokio::select! {
            answer = Arc::clone(&handler).handle(request) => answer,
            () = peer_gone(&mut reader) => return,
        };
        match answer {
            Answer::Reset => {
                let _ = reader.get_ref().set_zero_linger();
                return;
            }
            Answer::Respond(response) => {
                let bytes = encode(&response, close);
                if reader.get_mut().write_all(&bytes).await.is_err() || close {
                    return;
                }
            }
        }
    }
}

/// Resolves when the client closes or resets the connection; never, if it
/// sends more (a pipelined request, which waits in the buffer for its turn).
async fn peer_gone(reader: &mut BufReader<TcpStream>) {
    match reader.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Reads one request; `None` when the connection ends before one starts.
async fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut head_size = line.len();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid("malformed request line"));
    };
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let (method, path, raw_query) = (method.to_owned(), path.to_owned(), raw_query.to_owned());

    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(invalid("connection closed inside the head"));
        }
        head_size += line.len();
        if head_size > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }

    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader).await?
    } else {
        let length = match header(&headers, "content-length") {
            Some(value) => value
                .parse::<usize>()
                .map_err(|_| invalid("bad content-length"))?,
            None => 0,
        };
        if length > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        body
    };
    Ok(Some(Request {
        method,
        path,
        raw_query,
        headers,
        body,
    }))
}

async fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if body.len() + size > MAX_BODY {
            return Err(invalid("body too large"));
        }
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        line.clear();
        reader.read_line(&mut line).await?;
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The response's bytes on the wire: one buffer, so one write.
fn encode(response: &Response, close: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&response.body);
    bytes
}

/// The reason phrase of the domain's status line (`503 Service Unavailable`),
/// or a neutral one for a status it does not name.
fn reason(status: u16) -> String {
    let line = segment_sync_domain::delivery::status_line(status);
    match line.split_once(' ') {
        Some((code, reason)) if code == status.to_string() => reason.to_owned(),
        _ => "Unnamed".to_owned(),
    }
}

/// Sleeps for `delay`, unless it is zero (a zero sleep still yields to the executor).
pub(crate) async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (forms).
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                out.push(hex_value(bytes[i + 1]) << 4 | hex_value(bytes[i + 2]));
                i += 3;
                continue;
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// `a=1&b=x%20y` as decoded pairs, in order.
pub(crate) fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_plus_signs_decode() {
        assert_eq!(percent_decode("id%20%3E%20%22a%22", true), r#"id > "a""#);
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("c%2F1%20x", false), "c/1 x");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("%+f", false), "%+f");
        assert_eq!(percent_decode("%C3%BC", false), "ü");
    }

    #[test]
    fn a_form_is_pairs_in_order() {
        assert_eq!(
            form_pairs("limit=500&sort=id+asc&where=id%20%3E%20%22x%22&flag"),
            [
                ("limit".to_owned(), "500".to_owned()),
                ("sort".to_owned(), "id asc".to_owned()),
                ("where".to_owned(), r#"id > "x""#.to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert!(form_pairs("").is_empty());
    }
}
