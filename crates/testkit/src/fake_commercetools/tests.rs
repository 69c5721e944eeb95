use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::customers::{customer_json, numbered_id, numbered_jsons};
use crate::generate;

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

async fn token_answer(api: &FakeCommercetools, id: &str, secret: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/oauth/token", api.url()))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
}

/// A token for the fake's own client, as JSON.
async fn token(api: &FakeCommercetools) -> Value {
    token_answer(api, CLIENT_ID, CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap()
}

impl Client {
    async fn new(api: &FakeCommercetools) -> Self {
        let token = token(api).await;
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/{}", api.url(), api.project()),
            token: token["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// `GET {url}` with the token, as answered.
    async fn send(&self, url: String, query: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .unwrap()
    }

    /// `GET {project}{path}`: the status and the JSON body.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let answer = self.send(format!("{}{path}", self.base), query).await;
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    /// Every id the predicate allows, by `id > last` cursor over 500-customer pages.
    async fn walk(&self, predicate: Option<&str>) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        loop {
            let mut terms: Vec<String> = predicate.iter().map(|p| (*p).to_owned()).collect();
            if let Some(last) = seen.last() {
                terms.push(format!(r#"id > "{last}""#));
            }
            let predicate = terms.join(" and ");
            let mut query = vec![("limit", "500"), ("sort", "id asc"), ("withTotal", "false")];
            if !predicate.is_empty() {
                query.push(("where", &predicate));
            }
            let (status, page) = self.get("/customers", &query).await;
            assert_eq!(status, 200, "{page}");
            let results = page["results"].as_array().unwrap();
            seen.extend(results.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
            if results.len() < 500 {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn tokens_carry_the_view_customers_scope_for_the_right_client_only() {
    let api = FakeCommercetools::start(vec![]).await;
    let token = token(&api).await;
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["scope"], format!("view_customers:{PROJECT}"));

    let wrong = token_answer(&api, CLIENT_ID, "not-the-secret").await;
    assert_eq!(wrong.status(), 401);
    api.set_mode(AuthMode::BadCredentials);
    let refused = token_answer(&api, CLIENT_ID, CLIENT_SECRET).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let tokens = api.requests_of(RequestKind::Token);
    assert_eq!(tokens.len(), 3);
    assert_eq!(
        tokens.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(200), Some(401), Some(401)]
    );
    assert_eq!(
        tokens[0].form(),
        [("grant_type".to_owned(), "client_credentials".to_owned())]
    );
}

#[tokio::test]
async fn a_missing_scope_gives_another_scope_and_403_on_customers() {
    let api = FakeCommercetools::start(numbered_jsons(2)).await;
    api.set_mode(AuthMode::MissingScope);
    let token = token(&api).await;
    assert_eq!(token["scope"], format!("view_orders:{PROJECT}"));
    let client = Client::new(&api).await;
    let (status, body) = client.get("/customers", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["code"], "insufficient_scope");
    let (status, _) = client
        .get(&format!("/customers/{}", numbered_id(1)), &[])
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn customers_need_a_token_it_issued() {
    let api = FakeCommercetools::start(numbered_jsons(1)).await;
    let mut client = Client::new(&api).await;
    client.token = "fake-token-99".to_owned();
    let (status, body) = client.get("/customers", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn listed_customers_are_walked_by_cursor_once_each_in_id_order() {
    let api = FakeCommercetools::start(numbered_jsons(1_234).into_iter().rev().collect()).await;
    let client = Client::new(&api).await;
    let seen = client.walk(None).await;
    let expected: Vec<String> = (0..1_234).map(numbered_id).collect();
    assert_eq!(seen, expected);

    let queries = api.customer_queries();
    assert_eq!(queries.len(), 3);
    assert_eq!(queries[1].param("where"), Some(r#"id > "cust-00000499""#));
    assert!(
        queries[1]
            .raw_query
            .contains("where=id+%3E+%22cust-00000499%22"),
        "{}",
        queries[1].raw_query
    );
    assert!(queries.iter().all(|q| q.status == Some(200)));
}

#[tokio::test]
async fn the_default_page_has_twenty_customers_and_a_total() {
    let api = FakeCommercetools::start(numbered_jsons(30)).await;
    let client = Client::new(&api).await;
    let (status, page) = client.get("/customers", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 20);
    assert_eq!(page["total"], 30);
    assert_eq!(page["results"].as_array().unwrap().len(), 20);
    let (_, rest) = client
        .get("/customers", &[("offset", "20"), ("withTotal", "false")])
        .await;
    assert_eq!(rest["count"], 10);
    assert!(rest.get("total").is_none());
}

#[tokio::test]
async fn generated_customers_walk_by_cursor_and_by_id_ranges_alike() {
    let api = FakeCommercetools::generated(2_000, 6).await;
    let client = Client::new(&api).await;
    let all = client.walk(None).await;
    assert_eq!(all.len(), 2_000);
    assert!(all.windows(2).all(|pair| pair[0] < pair[1]));

    let mut partitioned = Vec::new();
    for range in [r#"id < "8""#, r#"id >= "8""#] {
        partitioned.extend(client.walk(Some(range)).await);
    }
    assert_eq!(
        partitioned, all,
        "two ranges, each walked by cursor, cover all once"
    );

    let id = generate::customer_id(6, 1_999);
    let (status, one) = client.get(&format!("/customers/{id}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(one, generate::customer(6, 1_999));
    let beyond = generate::customer_id(6, 2_000);
    assert_eq!(
        client.get(&format!("/customers/{beyond}"), &[]).await.0,
        404
    );
}

#[tokio::test]
async fn changed_since_combines_with_the_cursor() {
    let mut customers = numbered_jsons(10);
    for (i, customer) in customers.iter_mut().enumerate() {
        customer["lastModifiedAt"] = json!(format!("2024-05-0{}T10:00:00.000Z", 1 + i % 3));
    }
    let api = FakeCommercetools::start(customers).await;
    let client = Client::new(&api).await;
    let seen = client
        .walk(Some(r#"lastModifiedAt >= "2024-05-02T00:00:00.000Z""#))
        .await;
    let expected: Vec<String> = (0..10).filter(|i| i % 3 != 0).map(numbered_id).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_customer_is_found_by_its_encoded_id_or_is_404() {
    let api =
        FakeCommercetools::start(vec![customer_json("c/1 x", 1, Some("a@example.com"))]).await;
    let client = Client::new(&api).await;
    let (status, found) = client.get("/customers/c%2F1%20x", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(found["id"], "c/1 x");
    let (status, gone) = client.get("/customers/gone", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        gone["message"],
        "The Resource with ID 'gone' was not found."
    );
    let by_id = api.requests_of(RequestKind::CustomerById);
    assert_eq!(by_id[0].path, format!("/{PROJECT}/customers/c/1 x"));
}

#[tokio::test]
async fn changes_show_in_the_next_answers() {
    let api = FakeCommercetools::start(numbered_jsons(3)).await;
    let client = Client::new(&api).await;
    api.update(&numbered_id(1), |c| c["firstName"] = json!("Changed"));
    let (_, changed) = client
        .get(&format!("/customers/{}", numbered_id(1)), &[])
        .await;
    assert_eq!(changed["firstName"], "Changed");
    assert_eq!(changed["version"], 2);
    assert!(api.remove(&numbered_id(2)));
    api.put_raw(
        "cust-00000001x",
        r#"{"id":"cust-00000001x","version":"two"}"#,
    );
    let seen = client.walk(None).await;
    assert_eq!(seen, ["cust-00000000", "cust-00000001", "cust-00000001x"]);
}

#[tokio::test]
async fn requests_it_would_not_take_are_400_with_the_reason() {
    let api = FakeCommercetools::start(numbered_jsons(1)).await;
    let client = Client::new(&api).await;
    for (query, reason) in [
        (("limit", "501"), "limit"),
        (("sort", "createdAt asc"), "sort=id asc"),
        (("where", "email = \"a\""), "where"),
        (("withTotal", "maybe"), "withTotal"),
    ] {
        let (status, body) = client.get("/customers", &[query]).await;
        assert_eq!(status, 400, "{query:?}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{body}");
    }
}

#[tokio::test]
async fn each_page_waits_for_its_latency_and_concurrent_pages_are_counted() {
    let api = FakeCommercetools::builder()
        .customers(numbered_jsons(10))
        .page_latency(Duration::from_millis(150))
        .start()
        .await;
    let client = std::sync::Arc::new(Client::new(&api).await);
    let started = Instant::now();
    let pages: Vec<_> = (0..4)
        .map(|_| {
            let client = std::sync::Arc::clone(&client);
            tokio::spawn(async move { client.get("/customers", &[]).await.0 })
        })
        .collect();
    for page in pages {
        assert_eq!(page.await.unwrap(), 200);
    }
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(api.max_in_flight(), 4);
    assert_eq!(api.reset_max_in_flight(), 4);
    assert_eq!(api.max_in_flight(), 0);
    api.set_page_latency(Duration::ZERO);
    client.get("/customers", &[]).await;
    assert_eq!(api.max_in_flight(), 1);
    api.wait_for_queries(5, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn scripted_failures_come_first_then_rules_then_pages() {
    let api = FakeCommercetools::start(numbered_jsons(3)).await;
    let client = Client::new(&api).await;
    api.fail_next([Failure::too_many_requests(2), Failure::status(503)]);
    let answer = client.send(format!("{}/customers", client.base), &[]).await;
    assert_eq!(answer.status(), 429);
    assert_eq!(answer.headers()["retry-after"], "2");
    assert_eq!(client.get("/customers", &[]).await.0, 503);
    assert_eq!(client.get("/customers", &[]).await.0, 200);

    api.fail_when(|request| {
        request
            .param("where")
            .is_some_and(|w| w.contains(r#"id >= "8""#))
            .then(|| Failure::status(502).body("bad gateway"))
    });
    let low = [("where", r#"id < "8""#)];
    let high = [("where", r#"id >= "8""#)];
    assert_eq!(client.get("/customers", &low).await.0, 200);
    let failing = client
        .send(format!("{}/customers", client.base), &high)
        .await;
    assert_eq!(failing.status(), 502);
    assert_eq!(failing.text().await.unwrap(), "bad gateway");
    api.stop_failing();
    assert_eq!(client.get("/customers", &high).await.0, 200);

    let statuses: Vec<Option<u16>> = api.customer_queries().iter().map(|q| q.status).collect();
    assert_eq!(
        statuses,
        [
            Some(429),
            Some(503),
            Some(200),
            Some(200),
            Some(502),
            Some(200)
        ]
    );
}

#[tokio::test]
async fn anything_else_is_404() {
    let api = FakeCommercetools::start(vec![]).await;
    let client = Client::new(&api).await;
    let answer = client
        .send(format!("{}/other-project/customers", api.url()), &[])
        .await;
    assert_eq!(answer.status(), 404);
    assert_eq!(api.requests_of(RequestKind::Other).len(), 1);
}

#[tokio::test]
async fn a_query_answer_can_be_built_without_a_request() {
    let api = FakeCommercetools::generated(1_000, 2).await;
    let (status, body) = api.query_answer(&[("limit", "500"), ("where", r#"id >= "8""#)]);
    assert_eq!(status, 200);
    let page: Value = serde_json::from_slice(&body).unwrap();
    let results = page["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results.iter().all(|c| c["id"].as_str().unwrap() >= "8"));
    assert_eq!(api.query_answer(&[("limit", "0x")]).0, 400);
    assert!(api.requests().is_empty(), "nothing was logged");
}
