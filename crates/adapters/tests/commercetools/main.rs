//! `HttpCustomerSource` against local commercetools stand-ins on port 0: the
//! testkit's fake API for walks, tokens, scopes, retries and lookups by id, and
//! wiremock where a test pins down what the token endpoint refuses with.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use secrecy::SecretString;
use segment_sync_adapters::commercetools::{CommercetoolsConfig, HttpCustomerSource};
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_ports::{CustomerPages, CustomerQuery, CustomerSource, SourceError, SourceRecord};
use segment_sync_testkit::customers::{customer_json, numbered_id, numbered_jsons};
use segment_sync_testkit::fake_commercetools::{
    AuthMode, Failure, FakeCommercetools, RequestKind, CLIENT_ID, CLIENT_SECRET, PROJECT,
};
use serde_json::json;
use time::macros::datetime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

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

mod partitions;

/// A configuration for a stand-in at `url`, serving both auth and API, walking
/// with one cursor so that a test sees each request of the walk in order
/// ([`partitions`] tests the walk over several id ranges).
fn config(url: &str) -> CommercetoolsConfig {
    let mut config = CommercetoolsConfig::new(
        url,
        format!("{url}/"),
        PROJECT,
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
    );
    config.retry = fast_retry();
    config.concurrency = 1;
    config
}

fn source(config: CommercetoolsConfig) -> HttpCustomerSource {
    HttpCustomerSource::with_random(config, || 0.5).expect("valid configuration")
}

/// The fake API over numbered customers `0..count`, and a source reading it.
async fn fake_with(count: usize) -> (FakeCommercetools, HttpCustomerSource) {
    let api = FakeCommercetools::start(numbered_jsons(count)).await;
    let source = source(config(api.url()));
    (api, source)
}

fn numbered_ids(count: usize) -> Vec<String> {
    (0..count).map(numbered_id).collect()
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
    let api = FakeCommercetools::start(numbered_jsons(3)).await;
    let mut config = config(api.url());
    config.scopes = vec![
        format!("view_customers:{PROJECT}"),
        format!("view_orders:{PROJECT}"),
    ];

    let seen = walk_all(&source(config), CustomerQuery::All).await.unwrap();
    assert_eq!(seen, numbered_ids(3));

    let tokens = api.requests_of(RequestKind::Token);
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    assert_eq!(token.method, "POST");
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    assert_eq!(token.header("authorization"), Some(expected_basic.as_str()));
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form: HashMap<String, String> = token.form().into_iter().collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(
        form["scope"],
        format!("view_customers:{PROJECT} view_orders:{PROJECT}")
    );

    let pages = api.customer_queries();
    assert_eq!(
        pages[0].header("authorization"),
        Some("Bearer fake-token-1")
    );
}

#[tokio::test]
async fn without_scopes_the_token_request_sends_none() {
    let (api, source) = fake_with(1).await;
    walk_all(&source, CustomerQuery::All).await.unwrap();
    assert_eq!(
        api.requests_of(RequestKind::Token)[0].body,
        "grant_type=client_credentials"
    );
}

#[tokio::test]
async fn all_customers_are_walked_by_id_cursor_once_each_with_one_token() {
    let (api, source) = fake_with(2_345).await;

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
    let all = numbered_ids(2_345);
    assert_eq!(sizes, [500, 500, 500, 500, 345]);
    assert_eq!(seen, all, "every customer once, in id order");
    assert_eq!(api.requests_of(RequestKind::Token).len(), 1);

    let requests = api.customer_queries();
    assert_eq!(requests.len(), 5, "the short fifth page ends the walk");
    for (page, request) in requests.iter().enumerate() {
        let raw_query = &request.raw_query;
        assert!(!raw_query.contains("offset"), "offset sent: {raw_query}");
        for unencoded in ['"', ' ', '>'] {
            assert!(
                !raw_query.contains(unencoded),
                "{unencoded:?} not encoded: {raw_query}"
            );
        }
        assert_eq!(request.param("limit"), Some("500"));
        assert_eq!(request.param("withTotal"), Some("false"));
        assert_eq!(request.param("sort"), Some("id asc"));
        if page == 0 {
            assert_eq!(request.param("where"), None, "first page has no cursor");
        } else {
            let last = &all[page * 500 - 1];
            assert_eq!(
                request.param("where"),
                Some(format!("id > \"{last}\"").as_str())
            );
        }
        assert_eq!(request.query.len(), 3 + usize::from(page > 0));
    }
}

#[tokio::test]
async fn the_next_page_is_requested_while_the_current_one_is_handled() {
    let (api, source) = fake_with(1_200).await;
    let mut pages = source.customers(CustomerQuery::All).await.unwrap();
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.records.len(), 500);

    api.wait_for_queries(2, Duration::from_secs(5)).await;
    assert_eq!(api.customer_queries().len(), 2, "only one page ahead");
    assert_eq!(walk(pages.as_mut()).await.unwrap().len(), 700);
}

#[tokio::test]
async fn changed_since_joins_last_modified_and_the_cursor() {
    // Every third customer is older than `since` and must not be read.
    let since = datetime!(2024-05-01 12:00:00.123 +02:00);
    let mut customers = numbered_jsons(1_050);
    for (n, customer) in customers.iter_mut().enumerate() {
        let at = if n % 3 == 0 {
            "2024-05-01T10:00:00.122Z"
        } else {
            "2024-05-01T10:00:00.123Z"
        };
        customer["lastModifiedAt"] = json!(at);
    }
    let expected: Vec<String> = (0..1_050).filter(|n| n % 3 != 0).map(numbered_id).collect();
    let api = FakeCommercetools::start(customers).await;

    let seen = walk_all(
        &source(config(api.url())),
        CustomerQuery::ChangedSince(since),
    )
    .await
    .unwrap();
    assert_eq!(seen, expected);

    let wheres: Vec<String> = api
        .customer_queries()
        .iter()
        .map(|r| r.param("where").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        wheres,
        [
            r#"lastModifiedAt >= "2024-05-01T10:00:00.123Z""#.to_owned(),
            format!(
                r#"lastModifiedAt >= "2024-05-01T10:00:00.123Z" and id > "{}""#,
                expected[499]
            ),
        ]
    );
}

#[tokio::test]
async fn a_malformed_customer_costs_only_itself_and_the_walk_goes_on() {
    let api = FakeCommercetools::start(numbered_jsons(600)).await;
    api.put_raw(
        "cust-00000100x",
        r#"{"id":"cust-00000100x","version":"two"}"#,
    );
    let source = source(config(api.url()));

    let mut pages = source.customers(CustomerQuery::All).await.unwrap();
    let (mut customers, mut malformed) = (Vec::new(), Vec::new());
    while let Some(page) = pages.next_page().await.unwrap() {
        for record in page.records {
            match record {
                SourceRecord::Customer(customer) => customers.push(customer.id),
                SourceRecord::Malformed { customer_id, .. } => malformed.push(customer_id),
            }
        }
    }
    assert_eq!(customers, numbered_ids(600));
    assert_eq!(malformed, [Some("cust-00000100x".to_owned())]);
}

#[tokio::test]
async fn an_invalid_token_is_replaced_once_and_the_request_repeated() {
    let (api, source) = fake_with(2).await;
    api.fail_next([Failure::invalid_token()]);

    let seen = walk_all(&source, CustomerQuery::All).await.unwrap();
    assert_eq!(seen, numbered_ids(2));

    assert_eq!(api.requests_of(RequestKind::Token).len(), 2);
    let queries = api.customer_queries();
    let pages: Vec<(Option<&str>, Option<u16>)> = queries
        .iter()
        .map(|r| (r.header("authorization"), r.status))
        .collect();
    assert_eq!(
        pages,
        [
            (Some("Bearer fake-token-1"), Some(401)),
            (Some("Bearer fake-token-2"), Some(200))
        ]
    );
}

#[tokio::test]
async fn a_401_that_survives_a_new_token_rejects_the_credentials() {
    let (api, source) = fake_with(2).await;
    api.fail_when(|_| Some(Failure::invalid_token()));

    let error = walk_all(&source, CustomerQuery::All).await.unwrap_err();
    assert_eq!(error, SourceError::CredentialsRejected);
    assert!(error.is_fatal());
    assert_eq!(api.requests_of(RequestKind::Token).len(), 2);
    assert_eq!(api.customer_queries().len(), 2);
}

fn requests_to(requests: &[Request], request_path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.url.path() == request_path)
        .count()
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
        let error = source(config(&server.uri()))
            .customer_by_id("c1")
            .await
            .unwrap_err();
        assert_eq!(error, SourceError::CredentialsRejected, "status {status}");
        let requests = server.received_requests().await.unwrap_or_default();
        assert_eq!(
            requests_to(&requests, &format!("/{PROJECT}/customers/c1")),
            0
        );
    }
}

#[tokio::test]
async fn bad_credentials_at_the_fake_are_rejected_as_well() {
    let (api, source) = fake_with(1).await;
    api.set_mode(AuthMode::BadCredentials);
    let error = walk_all(&source, CustomerQuery::All).await.unwrap_err();
    assert_eq!(error, SourceError::CredentialsRejected);
    assert!(api.customer_queries().is_empty());
}

#[tokio::test]
async fn a_scope_the_client_lacks_is_named_when_the_token_is_refused() {
    let server = MockServer::start().await;
    let scope = format!("manage_customers:{PROJECT}");
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "statusCode": 400, "message": format!("Invalid scope: {scope}"),
            "error": "invalid_scope"
        })))
        .mount(&server)
        .await;
    let mut config = config(&server.uri());
    config.scopes = vec![scope.clone()];
    let error = source(config).customer_by_id("c1").await.unwrap_err();
    assert_eq!(error, SourceError::MissingScope { scope });
}

#[tokio::test]
async fn a_403_names_the_missing_scope_and_is_not_retried() {
    let (api, source) = fake_with(3).await;
    api.set_mode(AuthMode::MissingScope);
    let error = walk_all(&source, CustomerQuery::All).await.unwrap_err();
    assert_eq!(
        error,
        SourceError::MissingScope {
            scope: format!("view_customers:{PROJECT}")
        }
    );
    assert!(error.is_fatal());
    assert_eq!(api.customer_queries().len(), 1);
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says_within_the_cap() {
    let (api, source) = fake_with(3).await;
    api.fail_next([Failure::too_many_requests(1)]);

    let started = Instant::now();
    let seen = walk_all(&source, CustomerQuery::All).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(seen, numbered_ids(3));
    let statuses: Vec<Option<u16>> = api.customer_queries().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)]);
    // The backoff alone is at most 5 ms; 200 ms is Retry-After under the test cap.
    assert!(
        waited >= Duration::from_millis(200),
        "waited only {waited:?}"
    );
}

#[tokio::test]
async fn gateway_errors_are_retried_then_reported_unavailable() {
    for status in [502, 503, 504] {
        let (api, source) = fake_with(2).await;
        api.fail_next([Failure::status(status)]);
        let seen = walk_all(&source, CustomerQuery::All).await.unwrap();
        assert_eq!(seen, numbered_ids(2), "status {status}");
        assert_eq!(api.customer_queries().len(), 2, "status {status}");
    }

    let (api, source) = fake_with(2).await;
    api.fail_when(|_| Some(Failure::status(503)));
    let error = walk_all(&source, CustomerQuery::All).await.unwrap_err();
    let SourceError::Unavailable(reason) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(
        reason.contains("503") && reason.contains("3 attempt"),
        "{reason}"
    );
    assert!(!error.is_fatal());
    assert_eq!(api.customer_queries().len(), 3);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let api = FakeCommercetools::builder()
        .customers(numbered_jsons(1))
        .page_latency(Duration::from_secs(2))
        .start()
        .await;
    let mut config = config(api.url());
    config.request_timeout = Duration::from_millis(100);
    let error = walk_all(&source(config), CustomerQuery::All)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SourceError::Unavailable(reason) if reason.contains("timeout")),
        "{error:?}"
    );
    assert_eq!(api.customer_queries().len(), 3);
}

#[tokio::test]
async fn an_unexpected_status_is_a_protocol_error_with_the_status() {
    let (api, source) = fake_with(1).await;
    api.fail_next([Failure::status(500).body("boom")]);
    let error = walk_all(&source, CustomerQuery::All).await.unwrap_err();
    assert!(
        matches!(&error, SourceError::Protocol(reason) if reason.contains("500") && reason.contains("boom")),
        "{error:?}"
    );
    assert_eq!(api.customer_queries().len(), 1, "not retried");
}

#[tokio::test]
async fn a_customer_by_id_is_found_or_gone() {
    let api =
        FakeCommercetools::start(vec![customer_json("c/1 x", 1, Some("ada@example.com"))]).await;
    let source = source(config(api.url()));

    let found = source.customer_by_id("c/1 x").await.unwrap().unwrap();
    assert_eq!(found.id, "c/1 x");
    assert_eq!(found.email.as_deref(), Some("ada@example.com"));
    assert_eq!(source.customer_by_id("gone").await.unwrap(), None);
    assert_eq!(source.customer_by_id(" ").await.unwrap(), None);

    let lookups = api.requests_of(RequestKind::CustomerById);
    let paths: Vec<&str> = lookups.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/{PROJECT}/customers/c/1 x"),
            format!("/{PROJECT}/customers/gone")
        ],
        "a blank id is not sent"
    );
    assert_eq!(
        lookups.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(200), Some(404)]
    );
    assert_eq!(api.requests_of(RequestKind::Token).len(), 1);
}

#[tokio::test]
async fn nothing_secret_shows_in_debug_output() {
    let (api, _) = fake_with(1).await;
    let config = config(api.url());
    let source = source(config.clone());
    walk_all(&source, CustomerQuery::All).await.unwrap();
    let queries = api.customer_queries();
    let bearer = queries[0].header("authorization").expect("a bearer token");
    let token = bearer.trim_start_matches("Bearer ");
    for shown in [format!("{config:?}"), format!("{source:?}")] {
        assert!(!shown.contains(CLIENT_SECRET), "{shown}");
        assert!(!shown.contains(token), "{shown}");
    }
}
