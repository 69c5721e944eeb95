//! A fake Segment Public API, the regulations part: on 127.0.0.1, port 0.
//!
//! - `POST /regulations` checks the Bearer token ([`TOKEN`]) and the body
//!   (`regulationType`, `subjectType` `USER_ID`, 1 to 5,000 `subjectIds`; else
//!   422), then answers `{"data":{"regulateId":"…"}}`;
//! - `GET /regulations/{id}` answers `{"data":{"regulation":{"overallStatus":"…"}}}`
//!   (`INITIALIZED` until [`FakePublicApi::set_status`] says otherwise), or 404;
//! - `GET /regulations` answers a page of the regulations created (`check`'s probe).
//!
//! Anything else is a 404. Every `POST /regulations` is recorded as it arrived,
//! whatever its answer ([`FakePublicApi::received`]); the next answers can be
//! made 429-with-`Retry-After` or 500 ([`FakePublicApi::fail_next`]), and every
//! answer 401 or 403 ([`FakePublicApi::refuse_token`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::http::{self, Answer, Handler, Request, Response, Running};
use crate::lock;

/// The Public API token the fake accepts.
pub const TOKEN: &str = "test-public-api-token";

/// The status a regulation has until a test sets another.
pub const INITIAL_STATUS: &str = "INITIALIZED";

/// A failure the fake answers instead of handling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicApiFailure {
    /// 429 with `Retry-After: {seconds}`.
    RateLimited {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// 500.
    ServerError,
}

/// One `POST /regulations` as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRegulation {
    /// The body's `regulationType`, as sent.
    pub regulation_type: String,
    /// The body's `subjectType`, as sent.
    pub subject_type: String,
    /// The body's `subjectIds`, in order.
    pub subject_ids: Vec<String>,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The regulation id answered, when it was created.
    pub regulation_id: Option<String>,
}

/// A running fake Public API; clones share it, and it stops when the last is dropped.
#[derive(Clone)]
pub struct FakePublicApi {
    running: Running,
    shared: Arc<Shared>,
}

struct Shared {
    next_id: AtomicU64,
    /// Requests received, of any kind.
    requests: watch::Sender<u64>,
    /// Regulations created.
    created: watch::Sender<u64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: VecDeque<PublicApiFailure>,
    refuse_token: Option<u16>,
    received: Vec<SeenRegulation>,
    /// Regulation id → overall status, in order of creation.
    statuses: Vec<(String, String)>,
    status_reads: HashMap<String, usize>,
}

impl FakePublicApi {
    /// Binds 127.0.0.1 port 0 and starts serving, accepting every valid request.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start() -> Self {
        let (requests, _) = watch::channel(0);
        let (created, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(0),
            requests,
            created,
            state: Mutex::new(State::default()),
        });
        Self {
            running: Running::start(Arc::clone(&shared), "Public API").await,
            shared,
        }
    }

    /// The base URL to configure as `SEGMENT_PUBLIC_API_URL` (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        self.running.url()
    }

    /// Answers the next `times` requests (of any kind, after the token check)
    /// with `failure` instead of handling them.
    pub fn fail_next(&self, times: usize, failure: PublicApiFailure) {
        lock(&self.shared.state)
            .failures
            .extend(std::iter::repeat_n(failure, times));
    }

    /// Answers every later request with `status` (401 or 403), whatever its token.
    pub fn refuse_token(&self, status: u16) {
        lock(&self.shared.state).refuse_token = Some(status);
    }

    /// Sets the overall status `GET /regulations/{id}` answers for a regulation.
    ///
    /// # Panics
    /// When the fake created no regulation of that id.
    pub fn set_status(&self, regulation_id: &str, status: &str) {
        let mut state = lock(&self.shared.state);
        let entry = state
            .statuses
            .iter_mut()
            .find(|(id, _)| id == regulation_id)
            .unwrap_or_else(|| panic!("the fake created no regulation {regulation_id}"));
        entry.1 = status.to_owned();
    }

    /// Every `POST /regulations` received, in order of arrival, with its answer.
    pub fn received(&self) -> Vec<SeenRegulation> {
        lock(&self.shared.state).received.clone()
    }

    /// The regulations created (answered 2xx), in order.
    pub fn regulations(&self) -> Vec<SeenRegulation> {
        self.received()
            .into_iter()
            .filter(|seen| seen.regulation_id.is_some())
            .collect()
    }

    /// How many requests of any kind it received, whatever it answered.
    pub fn requests(&self) -> u64 {
        *self.shared.requests.borrow()
    }

    /// How many times `GET /regulations/{id}` asked for this regulation.
    pub fn status_reads(&self, regulation_id: &str) -> usize {
        lock(&self.shared.state)
            .status_reads
            .get(regulation_id)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until at least `count` regulations were created.
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub async fn wait_for_regulations(&self, count: u64, timeout: Duration) {
        let mut seen = self.shared.created.subscribe();
        let reached = tokio::time::timeout(timeout, seen.wait_for(|n| *n >= count)).await;
        if reached.is_err() {
            panic!(
                "{count} regulations expected within {timeout:?}, got {}",
                *self.shared.created.borrow()
            );
        }
    }
}

impl Handler for Shared {
    async fn handle(self: Arc<Self>, request: Request) -> Answer {
        let response = self.answer(&request);
        self.requests.send_modify(|n| *n += 1);
        response.into()
    }
}

impl Shared {
    fn answer(&self, request: &Request) -> Response {
        let creating = request.method == "POST" && request.path == "/regulations";
        let mut state = lock(&self.state);
        let refusal = match state.refuse_token {
            Some(status) => Some(status),
            None if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) => {
                Some(401)
            }
            None => None,
        };
        let (response, created) = if let Some(status) = refusal {
            (error(status, "unauthorized", "Unauthorized"), None)
        } else if let Some(failure) = state.failures.pop_front() {
            let response = match failure {
                PublicApiFailure::RateLimited { retry_after_secs } => {
                    error(429, "rate-limit", "Too many requests")
                        .header("Retry-After", retry_after_secs.to_string())
                }
                PublicApiFailure::ServerError => error(500, "internal", "Internal server error"),
            };
            (response, None)
        } else if creating {
            match parse_regulation(&request.body) {
                Ok(_) => {
                    let number = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
                    let id = format!("regulation-{number:04}");
                    state.statuses.push((id.clone(), INITIAL_STATUS.to_owned()));
                    let body = json!({ "data": { "regulateId": id } });
                    (Response::json(200, body.to_string()), Some(id))
                }
                Err(reason) => (error(422, "validation", reason), None),
            }
        } else {
            (self.read(&mut state, request), None)
        };
        if creating {
            let parsed = parse_body(&request.body);
            let text = |field: &str| parsed[field].as_str().unwrap_or_default().to_owned();
            state.received.push(SeenRegulation {
                regulation_type: text("regulationType"),
                subject_type: text("subjectType"),
                subject_ids: subject_ids(&parsed),
                authorization: request.header("authorization").map(str::to_owned),
                status: response.status,
                regulation_id: created.clone(),
            });
        }
        drop(state);
        if created.is_some() {
            self.created.send_modify(|n| *n += 1);
        }
        response
    }

    /// The reads: one regulation's status, or a page of them.
    fn read(&self, state: &mut State, request: &Request) -> Response {
        if request.method != "GET" {
            return error(404, "not-found", "Resource not found");
        }
        if request.path == "/regulations" {
            let count = request
                .query()
                .into_iter()
                .find(|(name, _)| name == "pagination.count")
                .and_then(|(_, value)| value.parse::<usize>().ok())
                .unwrap_or(10);
            let page: Vec<Value> = state
                .statuses
                .iter()
                .take(count)
                .map(|(id, status)| json!({ "id": id, "overallStatus": status }))
                .collect();
            let body = json!({
                "data": {
                    "regulations": page,
                    "pagination": { "current": "MA==", "totalEntries": state.statuses.len() },
                }
            });
            return Response::json(200, body.to_string());
        }
        let Some(id) = request.path.strip_prefix("/regulations/") else {
            return error(404, "not-found", "Resource not found");
        };
        let id = http::percent_decode(id, false);
        *state.status_reads.entry(id.clone()).or_insert(0) += 1;
        match state.statuses.iter().find(|(known, _)| *known == id) {
            Some((_, status)) => {
                let body = json!({
                    "data": { "regulation": { "id": id, "overallStatus": status } }
                });
                Response::json(200, body.to_string())
            }
            None => error(404, "not-found", "Resource not found"),
        }
    }
}

fn parse_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn subject_ids(body: &Value) -> Vec<String> {
    body["subjectIds"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|id| id.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a regulation body as Segment validates it.
fn parse_regulation(body: &[u8]) -> Result<(), &'static str> {
    let body = parse_body(body);
    let known = [
        "SUPPRESS_WITH_DELETE",
        "DELETE_ONLY",
        "SUPPRESS_ONLY",
        "SUPPRESS_WITH_DELETE_INTERNAL",
        "UNSUPPRESS",
        "DELETE_INTERNAL",
    ];
    if !body["regulationType"]
        .as_str()
        .is_some_and(|kind| known.contains(&kind))
    {
        return Err("regulationType is not a regulation type");
    }
    if body["subjectType"] != "USER_ID" {
        return Err("subjectType must be USER_ID for a workspace regulation");
    }
    match body["subjectIds"].as_array() {
        Some(ids)
            if (1..=5_000).contains(&ids.len())
                && ids
                    .iter()
                    .all(|id| id.as_str().is_some_and(|s| !s.is_empty())) =>
        {
            Ok(())
        }
        _ => Err("subjectIds must hold 1 to 5000 non-empty strings"),
    }
}

/// An answer in the Public API's error shape.
fn error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "type": kind, "message": message }] });
    Response::json(status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(api: &FakePublicApi, token: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/regulations", api.url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(api: &FakePublicApi, path: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", api.url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    fn regulation(ids: &[&str]) -> Value {
        json!({ "regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ids })
    }

    #[tokio::test]
    async fn a_regulation_is_created_recorded_and_its_status_served() {
        let api = FakePublicApi::start().await;
        let created = post(&api, TOKEN, &regulation(&["a", "b"])).await;
        assert_eq!(created.status(), 200);
        let answer: Value = created.json().await.unwrap();
        let id = answer["data"]["regulateId"].as_str().unwrap().to_owned();

        let seen = api.regulations();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].regulation_type, "DELETE_ONLY");
        assert_eq!(seen[0].subject_ids, ["a", "b"]);
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some("Bearer test-public-api-token")
        );
        assert_eq!(seen[0].regulation_id.as_deref(), Some(id.as_str()));

        let (status, body) = get(&api, &format!("/regulations/{id}")).await;
        assert_eq!(
            (status, &body["data"]["regulation"]["overallStatus"]),
            (200, &json!("INITIALIZED"))
        );
        api.set_status(&id, "FINISHED");
        let (_, body) = get(&api, &format!("/regulations/{id}")).await;
        assert_eq!(body["data"]["regulation"]["overallStatus"], "FINISHED");
        assert_eq!(api.status_reads(&id), 2);
        let (status, _) = get(&api, "/regulations/nope").await;
        assert_eq!(status, 404);
        let (status, page) = get(&api, "/regulations?pagination.count=1").await;
        assert_eq!(
            (status, page["data"]["regulations"][0]["id"].as_str()),
            (200, Some(id.as_str()))
        );
        api.wait_for_regulations(1, Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn failures_come_first_then_the_request_is_handled() {
        let api = FakePublicApi::start().await;
        api.fail_next(
            1,
            PublicApiFailure::RateLimited {
                retry_after_secs: 3,
            },
        );
        api.fail_next(1, PublicApiFailure::ServerError);
        let limited = post(&api, TOKEN, &regulation(&["a"])).await;
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "3");
        assert_eq!(post(&api, TOKEN, &regulation(&["a"])).await.status(), 500);
        assert_eq!(post(&api, TOKEN, &regulation(&["a"])).await.status(), 200);
        let statuses: Vec<u16> = api.received().iter().map(|seen| seen.status).collect();
        assert_eq!(statuses, [429, 500, 200]);
        assert_eq!(api.regulations().len(), 1);
    }

    #[tokio::test]
    async fn a_wrong_or_refused_token_is_401_or_403_and_creates_nothing() {
        let api = FakePublicApi::start().await;
        assert_eq!(post(&api, "other", &regulation(&["a"])).await.status(), 401);
        api.refuse_token(403);
        assert_eq!(post(&api, TOKEN, &regulation(&["a"])).await.status(), 403);
        assert_eq!(get(&api, "/regulations").await.0, 403);
        assert_eq!(api.received().len(), 2);
        assert!(api.regulations().is_empty());
        assert_eq!(api.requests(), 3);
    }

    #[tokio::test]
    async fn an_invalid_body_is_a_422() {
        let api = FakePublicApi::start().await;
        let too_many: Vec<String> = (0..5_001).map(|n| format!("u{n}")).collect();
        for body in [
            regulation(&[]),
            json!({ "regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": too_many }),
            json!({ "regulationType": "DELETE", "subjectType": "USER_ID", "subjectIds": ["a"] }),
            json!({ "regulationType": "DELETE_ONLY", "subjectType": "OBJECT_ID", "subjectIds": ["a"] }),
        ] {
            assert_eq!(post(&api, TOKEN, &body).await.status(), 422, "{body}");
        }
        assert!(api.regulations().is_empty());
    }
}
