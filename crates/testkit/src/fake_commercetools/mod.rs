//! A fake commercetools API on 127.0.0.1, port 0: the OAuth token endpoint and
//! the customer endpoints the adapter uses.
//!
//! - `POST /oauth/token`: client credentials with Basic auth ([`CLIENT_ID`],
//!   [`CLIENT_SECRET`]); the token's scope is `view_customers:{project}`, unless
//!   the [`AuthMode`] says otherwise.
//! - `GET /{project}/customers` with `limit` (1–500, default 20), `offset`,
//!   `sort=id asc` (the only order it serves), `withTotal` and `where` (see
//!   [`predicate`]).
//! - `GET /{project}/customers/{id}`: the customer, or 404.
//!
//! Customers come from a list ([`FakeCommercetools::start`], changeable while it
//! runs) or are generated on request ([`FakeCommercetools::generated`]), which
//! keeps memory flat whatever the count. For walks that run several cursors at
//! once it can answer each page after a latency, count how many requests are in
//! flight at most, fail requests as scripted, and log every request.

mod population;
pub mod predicate;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::watch;

use self::population::{PageQuery, Population};
use self::predicate::Predicate;
use crate::http::{self, Answer, Handler, Request, Response, Running};
use crate::lock;

/// The project key of a fake unless its builder names another.
pub const PROJECT: &str = "test-shop";
/// The API client id the token endpoint accepts.
pub const CLIENT_ID: &str = "test-client";
/// The API client secret the token endpoint accepts.
pub const CLIENT_SECRET: &str = "test-client-secret";

/// The largest `limit` commercetools accepts.
const MAX_LIMIT: usize = 500;
/// The largest `offset` commercetools accepts.
const MAX_OFFSET: usize = 10_000;

/// How the token endpoint and the scope checks behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Tokens with `view_customers:{project}`; customers served.
    #[default]
    Healthy,
    /// The token endpoint refuses every client: 401 `invalid_client`.
    BadCredentials,
    /// Tokens with `view_orders:{project}` only; customer requests answer 403.
    MissingScope,
}

/// A scripted failure: the status, its `Retry-After`, its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// The body; commercetools' error shape for the status when `None`.
    pub body: Option<String>,
}

impl Failure {
    /// This status, with commercetools' error body and no `Retry-After`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            body: None,
        }
    }

    /// 429 with `Retry-After: seconds`.
    pub fn too_many_requests(seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::status(429)
        }
    }

    /// 401 `invalid_token`, as commercetools answers a token that expired or
    /// was revoked: a client should fetch a new token once and try again.
    pub fn invalid_token() -> Self {
        let body = json!({
            "statusCode": 401,
            "message": "invalid_token",
            "errors": [{"code": "invalid_token", "message": "invalid_token"}],
            "error": "invalid_token"
        });
        Self::status(401).body(body.to_string())
    }

    /// The same failure with this body.
    pub fn body(mut self, text: impl Into<String>) -> Self {
        self.body = Some(text.into());
        self
    }

    fn response(&self) -> Response {
        let body = self
            .body
            .clone()
            .unwrap_or_else(|| error_body(self.status, "scripted failure", "ScriptedFailure"));
        let response = Response::json(self.status, body);
        match self.retry_after {
            Some(seconds) => response.header("retry-after", seconds.to_string()),
            None => response,
        }
    }
}

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `POST /oauth/token`.
    Token,
    /// `GET /{project}/customers`.
    CustomerQuery,
    /// `GET /{project}/customers/{id}`.
    CustomerById,
    /// Anything else (answered 404).
    Other,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// What it was for.
    pub kind: RequestKind,
    /// The HTTP method.
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The query string as sent (still encoded).
    pub raw_query: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body as text (the token request's form).
    pub body: String,
    /// The status answered; `None` while it is being answered.
    pub status: Option<u16>,
}

impl ApiRequest {
    /// The first query parameter of that name, decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }

    /// The body as a decoded form (the token request's fields).
    pub fn form(&self) -> Vec<(String, String)> {
        http::form_pairs(&self.body)
    }
}

/// Decides whether a request fails, and how.
type FailureRule = dyn Fn(&ApiRequest) -> Option<Failure> + Send + Sync;

/// Sets up a [`FakeCommercetools`] before it starts.
#[must_use]
pub struct FakeCommercetoolsBuilder {
    project: String,
    population: Population,
    page_latency: Duration,
}

impl FakeCommercetoolsBuilder {
    /// Its project key (default [`PROJECT`]).
    pub fn project(mut self, key: &str) -> Self {
        key.clone_into(&mut self.project);
        self
    }

    /// Serves these customers (kept sorted by id; a test may change them).
    pub fn customers(mut self, customers: Vec<Value>) -> Self {
        self.population = Population::listed(customers);
        self
    }

    /// Serves `count` customers of [`crate::generate`] with `seed`, each made
    /// when a page asks for it.
    pub fn generated(mut self, count: u64, seed: u64) -> Self {
        self.population = Population::generated(count, seed);
        self
    }

    /// Answers each customer query no sooner than this after it arrived.
    pub fn page_latency(mut self, latency: Duration) -> Self {
        self.page_latency = latency;
        self
    }

    /// Binds 127.0.0.1 port 0 and starts serving.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(self) -> FakeCommercetools {
        let (queries, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            project: self.project,
            population: self.population,
            expected_basic: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            ),
            mode: Mutex::new(AuthMode::Healthy),
            page_latency: Mutex::new(self.page_latency),
            failures: Mutex::new(VecDeque::new()),
            failure_rule: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            tokens_issued: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            queries,
        });
        FakeCommercetools {
            running: Running::start(Arc::clone(&shared), "commercetools").await,
            shared,
        }
    }
}

/// A running fake commercetools; clones share it, and it stops when the last is
/// dropped. Its URL serves as both the auth URL and the API URL.
#[derive(Clone)]
pub struct FakeCommercetools {
    running: Running,
    shared: Arc<Shared>,
}

struct Shared {
    project: String,
    population: Population,
    expected_basic: String,
    mode: Mutex<AuthMode>,
    page_latency: Mutex<Duration>,
    failures: Mutex<VecDeque<Failure>>,
    failure_rule: Mutex<Option<Arc<FailureRule>>>,
    log: Mutex<Vec<ApiRequest>>,
    tokens_issued: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Customer queries received.
    queries: watch::Sender<usize>,
}

impl FakeCommercetools {
    /// Serves these customers, kept sorted by id, in project [`PROJECT`].
    pub async fn start(customers: Vec<Value>) -> Self {
        Self::builder().customers(customers).start().await
    }

    /// Serves `count` generated customers of `seed`, in project [`PROJECT`].
    pub async fn generated(count: u64, seed: u64) -> Self {
        Self::builder().generated(count, seed).start().await
    }

    /// Set-up beyond a list of customers: project key, generated customers,
    /// page latency.
    pub fn builder() -> FakeCommercetoolsBuilder {
        FakeCommercetoolsBuilder {
            project: PROJECT.to_owned(),
            population: Population::listed(Vec::new()),
            page_latency: Duration::ZERO,
        }
    }

    /// The base URL, for both `CTP_AUTH_URL` and `CTP_API_URL`.
    pub fn url(&self) -> &str {
        self.running.url()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// Its project key.
    pub fn project(&self) -> &str {
        &self.shared.project
    }

    /// Changes how tokens and scopes behave from the next request on.
    pub fn set_mode(&self, mode: AuthMode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Answers each customer query no sooner than `latency` after it arrived.
    pub fn set_page_latency(&self, latency: Duration) {
        *lock(&self.shared.page_latency) = latency;
    }

    /// Fails the next customer requests (queries and by id), one failure each,
    /// in order; then answers normally again.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = Failure>) {
        lock(&self.shared.failures).extend(failures);
    }

    /// Fails every customer request for which `rule` names a failure (after
    /// those of [`FakeCommercetools::fail_next`]); it sees the request with
    /// `status: None`.
    pub fn fail_when(&self, rule: impl Fn(&ApiRequest) -> Option<Failure> + Send + Sync + 'static) {
        *lock(&self.shared.failure_rule) = Some(Arc::new(rule));
    }

    /// Stops failing by rule.
    pub fn stop_failing(&self) {
        *lock(&self.shared.failure_rule) = None;
        lock(&self.shared.failures).clear();
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.shared.log).clone()
    }

    /// The customer queries received so far, in order of arrival.
    pub fn customer_queries(&self) -> Vec<ApiRequest> {
        self.requests_of(RequestKind::CustomerQuery)
    }

    /// The requests of one kind received so far, in order of arrival.
    pub fn requests_of(&self, kind: RequestKind) -> Vec<ApiRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }

    /// The most customer requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Starts a new measure of [`FakeCommercetools::max_in_flight`] from the
    /// requests in flight now; returns the old maximum.
    pub fn reset_max_in_flight(&self) -> usize {
        let now = self.shared.in_flight.load(Ordering::SeqCst);
        self.shared.max_in_flight.swap(now, Ordering::SeqCst)
    }

    /// Waits until at least `count` customer queries have arrived.
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub async fn wait_for_queries(&self, count: usize, timeout: Duration) {
        let mut seen = self.shared.queries.subscribe();
        if tokio::time::timeout(timeout, seen.wait_for(|n| *n >= count))
            .await
            .is_err()
        {
            panic!(
                "{count} customer queries expected within {timeout:?}, got {}",
                *self.shared.queries.borrow()
            );
        }
    }

    /// The status and body it would answer to a customer query with these
    /// parameters, built on the calling thread without latency, failures or
    /// logging: for measuring how fast the fake itself serves pages.
    pub fn query_answer(&self, params: &[(&str, &str)]) -> (u16, Vec<u8>) {
        let request = ApiRequest {
            kind: RequestKind::CustomerQuery,
            method: "GET".to_owned(),
            path: format!("/{}/customers", self.shared.project),
            raw_query: String::new(),
            query: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            headers: Vec::new(),
            body: String::new(),
            status: None,
        };
        match page_query(&request) {
            Ok(query) => (200, self.shared.population.page(&query)),
            Err(message) => (400, error_body(400, &message, "InvalidInput").into_bytes()),
        }
    }

    /// Changes a listed customer, then bumps its `version` and sets its
    /// `lastModifiedAt` to now, as commercetools does.
    ///
    /// # Panics
    /// When there is no such customer, or the customers are generated.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Value)) {
        self.shared.population.update(id, change);
    }

    /// Adds a customer, or replaces the one with its id.
    ///
    /// # Panics
    /// When the customers are generated.
    pub fn put(&self, customer: &Value) {
        self.shared.population.put(customer);
    }

    /// Adds a record served as is, in `id`'s place in the order: for a customer
    /// that does not deserialize (it must still be JSON, or the page is not).
    ///
    /// # Panics
    /// When the customers are generated.
    pub fn put_raw(&self, id: &str, json: &str) {
        self.shared.population.put_raw(id, json);
    }

    /// Removes a customer; whether there was one.
    ///
    /// # Panics
    /// When the customers are generated.
    pub fn remove(&self, id: &str) -> bool {
        self.shared.population.remove(id)
    }
}

/// commercetools' error body: `statusCode`, `message` and one error with a code.
fn error_body(status: u16, message: &str, code: &str) -> String {
    json!({
        "statusCode": status,
        "message": message,
        "errors": [{"code": code, "message": message}],
    })
    .to_string()
}

fn error(status: u16, message: &str, code: &str) -> Response {
    Response::json(status, error_body(status, message, code))
}

/// Counts a customer request in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Handler for Shared {
    async fn handle(self: Arc<Self>, request: Request) -> Answer {
        let arrived = Instant::now();
        let segments: Vec<String> = request
            .path
            .split('/')
            .map(|s| http::percent_decode(s, false))
            .collect();
        let kind = match (request.method.as_str(), segments.as_slice()) {
            ("POST", [_, oauth, token]) if oauth == "oauth" && token == "token" => {
                RequestKind::Token
            }
            ("GET", [_, project, customers])
                if project == &self.project && customers == "customers" =>
            {
                RequestKind::CustomerQuery
            }
            ("GET", [_, project, customers, _])
                if project == &self.project && customers == "customers" =>
            {
                RequestKind::CustomerById
            }
            _ => RequestKind::Other,
        };
        let logged = ApiRequest {
            kind,
            method: request.method.clone(),
            path: segments.join("/"),
            query: request.query(),
            raw_query: request.raw_query.clone(),
            headers: request.headers.clone(),
            body: String::from_utf8_lossy(&request.body).into_owned(),
            status: None,
        };
        // Logged on arrival and counted once logged: whoever waited for the
        // count finds the request in the log, still unanswered if it is slow.
        let entry = self.log(logged.clone());
        let response = match kind {
            RequestKind::Token => self.token(&request),
            RequestKind::CustomerQuery | RequestKind::CustomerById => {
                let _in_flight = InFlight::enter(&self);
                if kind == RequestKind::CustomerQuery {
                    self.queries.send_modify(|n| *n += 1);
                }
                self.customers(&logged, segments.last().map(String::as_str), arrived)
                    .await
            }
            RequestKind::Other => error(
                404,
                &format!("No route for {} {}", request.method, request.path),
                "ResourceNotFound",
            ),
        };
        self.answered(entry, response.status);
        response.into()
    }
}

impl Shared {
    fn log(&self, request: ApiRequest) -> usize {
        let mut log = lock(&self.log);
        log.push(request);
        log.len() - 1
    }

    fn answered(&self, entry: usize, status: u16) {
        if let Some(request) = lock(&self.log).get_mut(entry) {
            request.status = Some(status);
        }
    }

    fn token(&self, request: &Request) -> Response {
        let invalid_client = || {
            Response::json(
                401,
                json!({
                    "statusCode": 401,
                    "message": "Please provide valid client credentials using HTTP Basic Authentication.",
                    "errors": [{"code": "invalid_client", "message": "Please provide valid client credentials using HTTP Basic Authentication."}],
                    "error": "invalid_client",
                    "error_description": "Please provide valid client credentials using HTTP Basic Authentication."
                })
                .to_string(),
            )
        };
        let mode = *lock(&self.mode);
        if mode == AuthMode::BadCredentials
            || request.header("authorization") != Some(self.expected_basic.as_str())
        {
            return invalid_client();
        }
        let form = http::form_pairs(&String::from_utf8_lossy(&request.body));
        if !form
            .iter()
            .any(|(k, v)| k == "grant_type" && v == "client_credentials")
        {
            return error(400, "unsupported grant type", "unsupported_grant_type");
        }
        let scope = match mode {
            AuthMode::MissingScope => format!("view_orders:{}", self.project),
            _ => format!("view_customers:{}", self.project),
        };
        let token = self.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
        Response::json(
            200,
            json!({
                "access_token": format!("fake-token-{token}"),
                "token_type": "Bearer",
                "expires_in": 172_800,
                "scope": scope,
            })
            .to_string(),
        )
    }

    /// Whether the request carries a token this fake issued.
    fn authorized(&self, request: &ApiRequest) -> bool {
        request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer fake-token-"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1 && n <= self.tokens_issued.load(Ordering::SeqCst))
    }

    async fn customers(
        &self,
        request: &ApiRequest,
        id: Option<&str>,
        arrived: Instant,
    ) -> Response {
        if !self.authorized(request) {
            return Failure::invalid_token().response();
        }
        let scripted = lock(&self.failures).pop_front();
        let failure = scripted.or_else(|| {
            let rule = lock(&self.failure_rule).clone();
            rule.and_then(|rule| rule(request))
        });
        if let Some(failure) = failure {
            return failure.response();
        }
        if *lock(&self.mode) == AuthMode::MissingScope {
            return error(
                403,
                "Insufficient scope. One of the following scopes is missing: view_customers",
                "insufficient_scope",
            );
        }
        match request.kind {
            RequestKind::CustomerById => {
                let id = id.unwrap_or_default();
                match self.population.by_id(id) {
                    Some(customer) => Response::json(200, customer),
                    None => error(
                        404,
                        &format!("The Resource with ID '{id}' was not found."),
                        "ResourceNotFound",
                    ),
                }
            }
            _ => {
                let query = match page_query(request) {
                    Ok(query) => query,
                    Err(message) => return error(400, &message, "InvalidInput"),
                };
                let body = self.population.page(&query);
                let latency = *lock(&self.page_latency);
                tokio::time::sleep_until((arrived + latency).into()).await;
                Response::json(200, body)
            }
        }
    }
}

/// The query a request asks for, or why commercetools would refuse it.
fn page_query(request: &ApiRequest) -> Result<PageQuery, String> {
    let number = |name: &str, default: usize, max: usize| match request.param(name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!(
                "Malformed parameter: {name}: must be a number up to {max}"
            )),
        },
    };
    let limit = number("limit", 20, MAX_LIMIT)?.max(1);
    let offset = number("offset", 0, MAX_OFFSET)?;
    if let Some(sort) = request.param("sort") {
        if sort != "id asc" {
            return Err(format!("The fake serves only sort=id asc, not {sort:?}"));
        }
    }
    let with_total = match request.param("withTotal") {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(format!("Malformed parameter: withTotal: {other:?}")),
    };
    // Several `where` parameters must all hold, as in commercetools.
    let wheres: Vec<&str> = request
        .query
        .iter()
        .filter(|(name, _)| name == "where")
        .map(|(_, value)| value.as_str())
        .collect();
    let predicate = Predicate::parse(&wheres.join(" and "))
        .map_err(|e| format!("Malformed parameter: where: {e}"))?;
    Ok(PageQuery {
        predicate,
        limit,
        offset,
        with_total,
    })
}

#[cfg(test)]
mod tests;
