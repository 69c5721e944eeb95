//! `HttpCustomerSource` against a local commercetools stand-in (wiremock on port 0).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use secrecy::SecretString;
use segment_sync_adapters::commercetools::{CommercetoolsConfig, HttpCustomerSource};
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_ports::{CustomerPages, CustomerQuery, CustomerSource, SourceError, SourceRecord};
use serde_json::{json, Value};
use time::macros::datetime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PROJECT: &str = "shop";
const CUSTOMERS: &str = "/shop/customers";

/// Retries that take milliseconds, and a `Retry-After` cap that a test can
/// tell apart from the backoff.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(200),
        time_budget: Duration::from_secs(10),
        ..RetryPolicy::commercetools()
    }
}

fn config(server: &MockServer) -> CommercetoolsConfig {
    let mut config = CommercetoolsConfig::new(
        server.uri(),
        format!("{}/", server.uri()),
        PROJECT,
        "client-1",
        SecretString::from("secret-1"),
    );
    config.retry = fast_retry();
    config
}

fn source(config: CommercetoolsConfig) -> HttpCustomerSource {
    HttpCustomerSource::with_random(config, || 0.5).expect("valid configuration")
}

fn token_body(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 172_800,
        "scope": "view_customers:shop"
    }))
}

async fn mount_token(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_body("tok-1"))
        .mount(server)
        .await;
}

fn invalid_token() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({
        "statusCode": 401,
        "message": "invalid_token",
        "errors": [{"code": "invalid_token", "message": "invalid_token"}],
        "error": "invalid_token"
    }))
}

fn customer_json(id: &str) -> Value {
    json!({
        "id": id,
        "version": 1,
        "email": format!("{id}@example.com"),
        "lastModifiedAt": "2024-05-01T10:00:00.000Z"
    })
}

fn ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("c{i:05}")).collect()
}

/// Serves sorted customers page by page, starting after the `id > "…"` cursor
/// in `where`, as commercetools does with `sort=id asc`.
struct CursorPages {
    ids: Vec<String>,
}

impl Respond for CursorPages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let params = query(request);
        let limit: usize = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(20);
        let start = match params.get("where").and_then(|w| cursor(w)) {
            Some(last) => self.ids.partition_point(|id| id.as_str() <= last.as_str()),
            None => 0,
        };
        let results: Vec<Value> = self.ids[start..(start + limit).min(self.ids.len())]
            .iter()
            .map(|id| customer_json(id))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "limit": limit, "offset": 0, "count": results.len(), "results": results
        }))
    }
}

/// The id in an `id > "…"` predicate.
fn cursor(predicate: &str) -> Option<String> {
    let (_, rest) = predicate.split_once("id > \"")?;
    Some(rest.trim_end_matches('"').to_owned())
}

fn query(request: &Request) -> HashMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

async fn requests_to(server: &MockServer, request_path: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == request_path)
        .collect()
}

async fn walk(pages: &mut dyn CustomerPages) -> Result<Vec<String>, SourceError> {
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await? {
        for record in page.records {
            match record {
                SourceRecord::Customer(customer) => seen.push(customer.id),
                SourceRecord::Malformed {
                    position, reason, ..
                } => {
                    panic!("unexpected malformed record at {position}: {reason}")
                }
            }
        }
    }
    Ok(seen)
}

async fn walk_all(
    source: &HttpCustomerSource,
    query: CustomerQuery,
) -> Result<Vec<String>, SourceError> {
    let mut pages = source.customers(query).await?;
    walk(pages.as_mut()).await
}

#[tokio::test]
async fn the_token_request_is_client_credentials_with_basic_auth_and_scopes() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: ids(3) })
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.scopes = vec!["view_customers:shop".into(), "view_orders:shop".into()];

    let seen = walk_all(&source(config), CustomerQuery::All).await.unwrap();
    assert_eq!(seen, ids(3));

    let tokens = requests_to(&server, "/oauth/token").await;
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    assert_eq!(token.method.as_str(), "POST");
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("client-1:secret-1")
    );
    assert_eq!(token.headers["authorization"], expected_basic.as_str());
    assert_eq!(
        token.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form: HashMap<String, String> = reqwest::Url::parse(&format!(
        "http://form/?{}",
        String::from_utf8(token.body.clone()).unwrap()
    ))
    .unwrap()
    .query_pairs()
    .into_owned()
    .collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "view_customers:shop view_orders:shop");

    let pages = requests_to(&server, CUSTOMERS).await;
    assert_eq!(pages[0].headers["authorization"], "Bearer tok-1");
}

#[tokio::test]
async fn without_scopes_the_token_request_sends_none() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: ids(1) })
        .mount(&server)
        .await;
    walk_all(&source(config(&server)), CustomerQuery::All)
        .await
        .unwrap();
    let body =
        String::from_utf8(requests_to(&server, "/oauth/token").await[0].body.clone()).unwrap();
    assert_eq!(body, "grant_type=client_credentials");
}

#[tokio::test]
async fn all_customers_are_walked_by_id_cursor_once_each_with_one_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_body("tok-1"))
        .expect(1)
        .mount(&server)
        .await;
    let all = ids(2_345);
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: all.clone() })
        .mount(&server)
        .await;

    let source = source(config(&server));
    let mut pages = source.customers(CustomerQuery::All).await.unwrap();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.records.len());
        for record in page.records {
            let SourceRecord::Customer(customer) = record else {
                panic!("malformed record");
            };
            seen.push(customer.id);
        }
    }
    assert_eq!(sizes, [500, 500, 500, 500, 345]);
    assert_eq!(seen, all, "every customer once, in id order");

    let requests = requests_to(&server, CUSTOMERS).await;
    assert_eq!(requests.len(), 5, "the short fifth page ends the walk");
    for (page, request) in requests.iter().enumerate() {
        let raw_query = request.url.query().unwrap_or_default();
        assert!(!raw_query.contains("offset"), "offset sent: {raw_query}");
        for unencoded in ['"', ' ', '>'] {
            assert!(
                !raw_query.contains(unencoded),
                "{unencoded:?} not encoded: {raw_query}"
            );
        }
        let params = query(request);
        assert_eq!(params["limit"], "500");
        assert_eq!(params["withTotal"], "false");
        assert_eq!(params["sort"], "id asc");
        if page == 0 {
            assert!(!params.contains_key("where"), "first page has no cursor");
        } else {
            let last = &all[page * 500 - 1];
            assert_eq!(params["where"], format!("id > \"{last}\""));
        }
        assert_eq!(params.len(), 3 + usize::from(page > 0));
    }
}

#[tokio::test]
async fn the_next_page_is_requested_while_the_current_one_is_handled() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: ids(1_200) })
        .mount(&server)
        .await;
    let source = source(config(&server));
    let mut pages = source.customers(CustomerQuery::All).await.unwrap();
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.records.len(), 500);

    let deadline = Instant::now() + Duration::from_secs(5);
    while requests_to(&server, CUSTOMERS).await.len() < 2 {
        assert!(Instant::now() < deadline, "page 2 was not requested ahead");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        requests_to(&server, CUSTOMERS).await.len(),
        2,
        "only one page ahead"
    );
    assert_eq!(walk(pages.as_mut()).await.unwrap().len(), 700);
}

#[tokio::test]
async fn changed_since_joins_last_modified_and_the_cursor() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: ids(700) })
        .mount(&server)
        .await;
    let since = datetime!(2024-05-01 12:00:00.123 +02:00);
    let seen = walk_all(&source(config(&server)), CustomerQuery::ChangedSince(since))
        .await
        .unwrap();
    assert_eq!(seen.len(), 700);

    let wheres: Vec<String> = requests_to(&server, CUSTOMERS)
        .await
        .iter()
        .map(|r| query(r)["where"].clone())
        .collect();
    assert_eq!(
        wheres,
        [
            r#"lastModifiedAt >= "2024-05-01T10:00:00.123Z""#,
            r#"lastModifiedAt >= "2024-05-01T10:00:00.123Z" and id > "c00499""#,
        ]
    );
}

/// Answers with `tok-1`, then `tok-2`, …
struct CountingTokens(AtomicUsize);

impl Respond for CountingTokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        token_body(&format!("tok-{n}"))
    }
}

#[tokio::test]
async fn an_invalid_token_is_replaced_once_and_the_request_repeated() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(CountingTokens(AtomicUsize::new(0)))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(invalid_token())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .and(header("authorization", "Bearer tok-2"))
        .respond_with(CursorPages { ids: ids(2) })
        .mount(&server)
        .await;

    let seen = walk_all(&source(config(&server)), CustomerQuery::All)
        .await
        .unwrap();
    assert_eq!(seen, ids(2));
}

#[tokio::test]
async fn a_401_that_survives_a_new_token_rejects_the_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(CountingTokens(AtomicUsize::new(0)))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(invalid_token())
        .expect(2)
        .mount(&server)
        .await;

    let error = walk_all(&source(config(&server)), CustomerQuery::All)
        .await
        .unwrap_err();
    assert_eq!(error, SourceError::CredentialsRejected);
    assert!(error.is_fatal());
}

#[tokio::test]
async fn a_token_endpoint_refusal_rejects_the_credentials_without_retrying() {
    for status in [400, 401] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "statusCode": status, "message": "Please provide valid client credentials",
                "error": "invalid_client"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let error = source(config(&server))
            .customer_by_id("c1")
            .await
            .unwrap_err();
        assert_eq!(error, SourceError::CredentialsRejected, "status {status}");
        assert!(requests_to(&server, "/shop/customers/c1").await.is_empty());
    }
}

#[tokio::test]
async fn a_scope_the_client_lacks_is_named_when_the_token_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "statusCode": 400, "message": "Invalid scope: manage_customers:shop",
            "error": "invalid_scope"
        })))
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.scopes = vec!["manage_customers:shop".into()];
    let error = source(config).customer_by_id("c1").await.unwrap_err();
    assert_eq!(
        error,
        SourceError::MissingScope {
            scope: "manage_customers:shop".into()
        }
    );
}

#[tokio::test]
async fn a_403_names_the_missing_scope_and_is_not_retried() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "statusCode": 403, "message": "Insufficient scope. One of the following scopes is missing: view_customers",
            "errors": [{"code": "insufficient_scope", "message": "Insufficient scope"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let error = walk_all(&source(config(&server)), CustomerQuery::All)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        SourceError::MissingScope {
            scope: "view_customers:shop".into()
        }
    );
    assert!(error.is_fatal());
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says_within_the_cap() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: ids(3) })
        .mount(&server)
        .await;

    let started = Instant::now();
    let seen = walk_all(&source(config(&server)), CustomerQuery::All)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(seen, ids(3));
    assert_eq!(requests_to(&server, CUSTOMERS).await.len(), 2);
    // The backoff alone is at most 5 ms; 200 ms is Retry-After under the test cap.
    assert!(
        waited >= Duration::from_millis(200),
        "waited only {waited:?}"
    );
}

#[tokio::test]
async fn gateway_errors_are_retried_then_reported_unavailable() {
    for status in [502, 503, 504] {
        let server = MockServer::start().await;
        mount_token(&server).await;
        Mock::given(method("GET"))
            .and(path(CUSTOMERS))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(CUSTOMERS))
            .respond_with(CursorPages { ids: ids(2) })
            .mount(&server)
            .await;
        let seen = walk_all(&source(config(&server)), CustomerQuery::All)
            .await
            .unwrap();
        assert_eq!(seen, ids(2), "status {status}");
    }

    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;
    let error = walk_all(&source(config(&server)), CustomerQuery::All)
        .await
        .unwrap_err();
    let SourceError::Unavailable(reason) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(
        reason.contains("503") && reason.contains("3 attempt"),
        "{reason}"
    );
    assert!(!error.is_fatal());
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: ids(1) }.slow())
        .expect(3)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.request_timeout = Duration::from_millis(100);
    let error = walk_all(&source(config), CustomerQuery::All)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SourceError::Unavailable(reason) if reason.contains("timeout")),
        "{error:?}"
    );
}

impl CursorPages {
    /// The same pages, answered after longer than any test timeout.
    fn slow(self) -> SlowPages {
        SlowPages(self)
    }
}

struct SlowPages(CursorPages);

impl Respond for SlowPages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.respond(request).set_delay(Duration::from_secs(2))
    }
}

#[tokio::test]
async fn an_unexpected_status_is_a_protocol_error_with_the_status() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .expect(1)
        .mount(&server)
        .await;
    let error = walk_all(&source(config(&server)), CustomerQuery::All)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SourceError::Protocol(reason) if reason.contains("500") && reason.contains("boom")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_customer_by_id_is_found_or_gone() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path("/shop/customers/c%2F1%20x"))
        .respond_with(ResponseTemplate::new(200).set_body_json(customer_json("c/1 x")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/shop/customers/gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "statusCode": 404, "message": "The Resource with ID 'gone' was not found."
        })))
        .mount(&server)
        .await;
    let source = source(config(&server));

    let found = source.customer_by_id("c/1 x").await.unwrap().unwrap();
    assert_eq!(found.id, "c/1 x");
    assert_eq!(found.email.as_deref(), Some("c/1 x@example.com"));
    assert_eq!(source.customer_by_id("gone").await.unwrap(), None);
    assert_eq!(source.customer_by_id(" ").await.unwrap(), None);
    assert_eq!(
        requests_to(&server, "/shop/customers/").await.len(),
        0,
        "a blank id is not sent"
    );
    assert_eq!(requests_to(&server, "/oauth/token").await.len(), 1);
}

#[tokio::test]
async fn nothing_secret_shows_in_debug_output() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(CUSTOMERS))
        .respond_with(CursorPages { ids: ids(1) })
        .mount(&server)
        .await;
    let config = config(&server);
    let source = source(config.clone());
    walk_all(&source, CustomerQuery::All).await.unwrap();
    for shown in [format!("{config:?}"), format!("{source:?}")] {
        assert!(!shown.contains("secret-1"), "{shown}");
        assert!(!shown.contains("tok-1"), "{shown}");
    }
}
