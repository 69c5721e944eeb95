//! Several processes on one PostgreSQL state, as shops run them: `serve` replicas
//! behind a load balancer or Pub/Sub push, and a cron `sync`. Every test here
//! needs the test PostgreSQL server (their names say `postgres`).

use std::time::Duration;

use segment_sync_testkit::postgres::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::*;

const HOOK_TOKEN: &str = "replica-token";

/// A `serve` process on port 0, killed when dropped.
struct Replica(Served);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

async fn replicas(app: &App, state: &str, count: usize) -> Vec<Replica> {
    let mut started = Vec::new();
    for _ in 0..count {
        let served = app
            .serve_with(&["--state", state], &[("WEBHOOK_TOKEN", HOOK_TOKEN)])
            .await;
        started.push(Replica(served));
    }
    started
}

/// Posts `body` to a replica until it answers 2xx (as Pub/Sub redelivers every
/// other answer), and returns that answer.
async fn deliver(http: &reqwest::Client, replica: &Replica, body: &Value) -> Value {
    let url = replica.0.webhook();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http
            .post(&url)
            .bearer_auth(HOOK_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        if answer.status().is_success() {
            return answer.json().await.unwrap_or(Value::Null);
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "no 2xx within a minute; last {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The traits of the last identify Segment received for `user_id`.
fn last_traits(segment: &FakeSegment, user_id: &str) -> Value {
    segment
        .messages()
        .into_iter()
        .rev()
        .find(|m| m["userId"] == user_id)
        .map(|m| m["traits"].clone())
        .unwrap_or(Value::Null)
}

fn changed(id: &str) -> Value {
    json!({
        "notificationType": "Message",
        "projectKey": PROJECT,
        "resource": {"typeId": "customer", "id": id},
        "type": "CustomerFirstNameSet",
        "resourceVersion": 0
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_what_was_delivered_so_a_to_b_to_a_ends_with_a() {
    let database = TestDatabase::create().await;
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let mut ada = numbered_json(1);
    ada["firstName"] = json!("A");
    let ctp = FakeCommercetools::start(vec![ada.clone()]).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    let replicas = replicas(&app, database.url(), 3).await;
    let http = reqwest::Client::new();
    let id = numbered_id(1);
    let user = "customer1@example.com";

    assert_eq!(
        deliver(&http, &replicas[0], &changed(&id)).await["status"],
        "delivered"
    );
    ctp.update(&id, |c| c["firstName"] = json!("B"));
    assert_eq!(
        deliver(&http, &replicas[1], &changed(&id)).await["status"],
        "delivered"
    );
    ctp.update(&id, |c| c["firstName"] = json!("A"));
    let back = deliver(&http, &replicas[0], &changed(&id)).await;

    assert_eq!(
        back["status"], "delivered",
        "replica 1 knows B went out since"
    );
    assert_eq!(last_traits(&segment, user)["firstName"], "A");

    // Pub/Sub redelivers the version 1 CustomerCreated, to the third replica.
    let redelivered = deliver(&http, &replicas[2], &customer_created(&ada)).await;
    assert_eq!(redelivered, json!({"status": "stale"}));
    assert_eq!(segment.message_count(), 3, "the stale version is not sent");
    assert_eq!(last_traits(&segment, user)["firstName"], "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_leave_each_customers_newest_version_last_in_segment() {
    const CUSTOMERS: usize = 20;
    const VERSIONS: i64 = 10;
    let database = TestDatabase::create().await;
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    let replicas = std::sync::Arc::new(replicas(&app, database.url(), 3).await);
    let http = reqwest::Client::new();

    // Every version of every customer, in a scrambled order, spread over the replicas.
    let mut messages = Vec::new();
    for customer in 0..CUSTOMERS {
        for version in 1..=VERSIONS {
            let mut body = numbered_json(customer);
            body["version"] = json!(version);
            body["firstName"] = json!(format!("v{version}"));
            messages.push(customer_created(&body));
        }
    }
    let mut rng = segment_sync_testkit::generate::SplitMix64::new(7);
    for i in (1..messages.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        messages.swap(i, j);
    }
    let sending: Vec<_> = messages
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let (http, replicas) = (http.clone(), std::sync::Arc::clone(&replicas));
            tokio::spawn(async move { deliver(&http, &replicas[i % 3], &body).await })
        })
        .collect();
    for sent in sending {
        let answer = sent.await.unwrap();
        let status = answer["status"].as_str().unwrap_or_default().to_owned();
        assert!(
            ["delivered", "unchanged", "stale"].contains(&status.as_str()),
            "{answer}"
        );
    }

    for customer in 0..CUSTOMERS {
        let user = format!("customer{customer}@example.com");
        assert_eq!(
            last_traits(&segment, &user)["firstName"],
            format!("v{VERSIONS}"),
            "{user}: the last identify Segment received is the newest version"
        );
    }
}

#[tokio::test]
async fn postgres_two_syncs_at_once_one_runs_and_a_killed_one_is_taken_over() {
    let database = TestDatabase::create().await;
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(300))).await;
    let ctp = FakeCommercetools::start(numbered_jsons(3_000)).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("SEGMENT_SYNC_STATE", database.url());

    let mut first = app.command(&["sync"]).spawn().unwrap();
    segment.wait_for_requests(1, Duration::from_secs(60)).await;
    let second = app.run(&["sync"]).await;
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).starts_with("another sync is running (run #1, started "),
        "{}",
        stderr(&second)
    );

    first.kill().unwrap();
    first.wait().unwrap();
    segment.set_mode(SegmentMode::Accept);
    let next = app.run(&["sync", "--json"]).await;
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));

    let listed = app.run(&["runs", "--json"]).await;
    let runs: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "abandoned"]);
}

#[tokio::test]
async fn postgres_a_state_copied_from_sqlite_sends_nothing_again() {
    let database = TestDatabase::create().await;
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(700)));
    let input = input.to_str().unwrap();
    let first = app.run(&["sync", "--input", input, "--json"]).await;
    assert_eq!(summary(&first)["sent"], 700, "{}", stderr(&first));

    let copied = app
        .run(&[
            "state",
            "copy",
            "--from",
            "segment-sync.db",
            "--to",
            database.url(),
        ])
        .await;
    assert_eq!(copied.status.code(), Some(0), "{}", stderr(&copied));
    assert!(
        !stdout(&copied).contains("postgres@"),
        "no credentials shown"
    );

    let again = app
        .run(&[
            "sync",
            "--input",
            input,
            "--json",
            "--state",
            database.url(),
        ])
        .await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(summary(&again)["sent"], 0);
    assert_eq!(summary(&again)["unchanged"], 700);
    assert_eq!(segment.message_count(), 700);
}
