//! The PostgreSQL state store against the test server, each test on a database
//! of its own: what is particular to PostgreSQL (reopening, migrations racing,
//! TLS, what errors say and never show, the run lease across sessions, speed).
//! The port's rules are checked by the contract suite
//! (`tests/contracts/postgres_state.rs`).
//!
//! Every test's name contains `postgres`, so that `cargo xtask ci` can leave
//! them out where no server answers; none skips itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use segment_sync_adapters::postgres_state::{PostgresStateStore, PostgresUrl};
use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind, RunCounts, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{
    Delivered, RunLease, RunStart, SelfCheck, Settlement, StateError, SyncStateStore,
};
use segment_sync_testkit::postgres::TestDatabase;
use segment_sync_testkit::DEADLINE;
use time::macros::datetime;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(600);

/// A distinct, valid fingerprint per number.
fn fingerprint(n: u128) -> Fingerprint {
    Fingerprint::from_hex(&format!("{n:032x}")).expect("valid hex")
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("customer-{i:05}")).collect()
}

async fn connect(url: &str) -> PostgresStateStore {
    PostgresStateStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The reason a connection is refused with.
async fn open_error(url: &str) -> (String, String) {
    match PostgresStateStore::connect(url).await {
        Err(StateError::Open { path, reason }) => (path, reason),
        Err(other) => panic!("expected an Open error, got {other}"),
        Ok(store) => panic!("expected an Open error, connected: {store:?}"),
    }
}

/// Records version 1 of these customers, releasing them for `holder`.
async fn record(store: &dyn SyncStateStore, ids: &[String], holder: &str, first: usize) {
    let fingerprints: Vec<Fingerprint> = (0..ids.len())
        .map(|i| fingerprint((first + i) as u128))
        .collect();
    let delivered: Vec<Delivered<'_>> = ids
        .iter()
        .zip(&fingerprints)
        .map(|(id, fingerprint)| Delivered {
            customer_id: id,
            version: 1,
            fingerprint: *fingerprint,
            user_id: id,
        })
        .collect();
    store
        .settle(Settlement {
            delivered: &delivered,
            release: ids,
            holder,
            ..Settlement::default()
        })
        .await
        .expect("settle");
}

fn start(kind: &str, started_at: OffsetDateTime, holder: &str) -> RunStart {
    RunStart {
        kind: kind.to_owned(),
        started_at,
        source: Some("api".to_owned()),
        holder: holder.to_owned(),
    }
}

fn letter(customer_id: &str, version: i64, attempts: u32) -> DeadLetter {
    DeadLetter {
        customer_id: customer_id.to_owned(),
        kind: DeadLetterKind::Failed,
        code: "max_retries_exceeded".to_owned(),
        reason: "Max retries exceeded (last: Network timeout)".to_owned(),
        payload: Some(format!(r#"{{"userId":"{customer_id}"}}"#)),
        fingerprint: Some(fingerprint(7).to_hex()),
        version: Some(version),
        attempts,
        recorded_at: "2024-05-01T10:00:00Z".to_owned(),
    }
}

/// Begins a run, retrying while another run's lease is still being let go,
/// until the deadline.
async fn begin_within_deadline(store: &PostgresStateStore, start: RunStart) -> RunLease {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match store.begin_run(start.clone()).await {
            Ok(lease) => return lease,
            Err(StateError::AnotherRun { .. }) if Instant::now() < deadline => {
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("the lease was not let go within {DEADLINE:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn postgres_reopening_keeps_the_data() {
    let database = TestDatabase::create().await;
    let at = datetime!(2024-05-01 10:00:00.123_456 +02:00);
    let run_id = {
        let store = connect(database.url()).await;
        record(&store, &ids(0..3), "test", 0).await;
        store
            .add_dead_letters(&[letter("dead", 1, 2)])
            .await
            .unwrap();
        store.set_high_water_mark(at).await.unwrap();
        store
            .set_rules_fingerprint("abc123".to_owned())
            .await
            .unwrap();
        let lease = store
            .begin_run(start("sync", at, "pid 1 on host-a"))
            .await
            .unwrap();
        store
            .finish_run(lease.id(), RunStatus::Succeeded, RunCounts::default(), None)
            .await
            .unwrap();
        lease.id()
    };

    let reopened = connect(database.url()).await;
    assert_eq!(reopened.delivered(&ids(0..5)).await.unwrap().len(), 3);
    assert_eq!(
        reopened.dead_letters().await.unwrap(),
        [letter("dead", 1, 2)]
    );
    assert_eq!(reopened.high_water_mark().await.unwrap(), Some(at));
    assert_eq!(
        reopened.rules_fingerprint().await.unwrap().as_deref(),
        Some("abc123")
    );
    let runs = reopened.runs(10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].id, runs[0].status), (run_id, RunStatus::Succeeded));
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_this_build() {
    let database = TestDatabase::create().await;
    drop(connect(database.url()).await);
    database
        .client()
        .await
        .batch_execute("INSERT INTO schema_version (version) VALUES (99)")
        .await
        .unwrap();

    let (path, reason) = open_error(database.url()).await;

    let shown = PostgresUrl::parse(database.url()).unwrap().to_string();
    assert_eq!(path, shown, "the URL, without its credentials");
    assert!(!path.contains('@'), "{path}");
    assert!(
        reason.contains("schema version 99, written by a newer segment-sync"),
        "{reason}"
    );
    assert!(reason.contains("upgrade segment-sync"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_several_connects_at_once_migrate_once() {
    const REPLICAS: usize = 6;
    let database = Arc::new(TestDatabase::create().await);
    let starting: Vec<_> = (0..REPLICAS)
        .map(|_| {
            let database = Arc::clone(&database);
            tokio::spawn(async move { PostgresStateStore::connect(database.url()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for replica in starting {
        stores.push(
            replica
                .await
                .expect("the replica's task")
                .unwrap_or_else(|e| panic!("a replica failed to start: {e}")),
        );
    }

    let row = database
        .client()
        .await
        .query_one("SELECT count(*), max(version) FROM schema_version", &[])
        .await
        .unwrap();
    let (applied, version): (i64, i32) = (row.get(0), row.get(1));
    assert!(version >= 1);
    assert_eq!(applied, i64::from(version), "each version applied once");
    record(&stores[0], &ids(0..2), "first", 0).await;
    assert_eq!(
        stores[REPLICAS - 1]
            .delivered(&ids(0..2))
            .await
            .unwrap()
            .len(),
        2,
        "every replica sees one database"
    );
}

/// Whether the test server offers TLS.
async fn server_has_tls(database: &TestDatabase) -> bool {
    let row = database
        .client()
        .await
        .query_one("SHOW ssl", &[])
        .await
        .unwrap();
    row.get::<_, String>(0) == "on"
}

/// The detail of a passed self-check: the server's version and the encryption.
async fn check_detail(store: &PostgresStateStore) -> String {
    let lines = store.self_check().await;
    assert_eq!(lines.len(), 1);
    lines[0]
        .result
        .clone()
        .unwrap_or_else(|fix| panic!("the check failed: {fix}"))
}

#[tokio::test]
async fn postgres_sslmode_disable_connects_in_the_clear() {
    let database = TestDatabase::create().await;
    let store = connect(&database.url_with("sslmode=disable")).await;
    let detail = check_detail(&store).await;
    assert!(detail.starts_with("PostgreSQL "), "{detail}");
    assert!(detail.ends_with("not encrypted"), "{detail}");
}

#[tokio::test]
async fn postgres_sslmode_require_encrypts_or_says_why_not() {
    let database = TestDatabase::create().await;
    let url = database.url_with("sslmode=require");
    if server_has_tls(&database).await {
        let store = connect(&url).await;
        let detail = check_detail(&store).await;
        assert!(detail.ends_with("over TLS"), "{detail}");
    } else {
        let (_, reason) = open_error(&url).await;
        assert!(reason.contains("server does not support TLS"), "{reason}");
        assert!(reason.contains("sslmode=require"), "{reason}");
    }
}

#[tokio::test]
async fn postgres_sslmode_prefer_encrypts_when_the_server_offers_tls() {
    let database = TestDatabase::create().await;
    let store = connect(database.url()).await;
    let detail = check_detail(&store).await;
    let expected = if server_has_tls(&database).await {
        "over TLS"
    } else {
        "not encrypted"
    };
    assert!(detail.ends_with(expected), "{detail}");
}

#[tokio::test]
async fn postgres_sslmode_require_against_a_server_without_tls_is_a_clear_error() {
    // A server that declines TLS, as PostgreSQL with `ssl = off` does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut ssl_request = [0u8; 8];
        socket.read_exact(&mut ssl_request).await.unwrap();
        socket.write_all(b"N").await.unwrap();
        ssl_request
    });

    let (path, reason) = open_error(&format!(
        "postgres://sync:s3cret@{address}/state?sslmode=require"
    ))
    .await;

    let asked = server.await.unwrap();
    assert_eq!(
        asked,
        [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
        "the client asked for TLS"
    );
    assert_eq!(path, format!("postgres://{address}/state?sslmode=require"));
    assert!(reason.contains("server does not support TLS"), "{reason}");
    assert!(reason.contains("sslmode=require"), "{reason}");
    assert!(!reason.contains("s3cret") && !path.contains("s3cret"));
}

#[tokio::test]
async fn postgres_verify_full_refuses_a_certificate_no_trusted_root_signed() {
    let database = TestDatabase::create().await;
    let (_, reason) = open_error(&database.url_with("sslmode=verify-full")).await;
    assert!(reason.contains("sslmode=verify-full"), "{reason}");
    if server_has_tls(&database).await {
        // The test server's certificate is its own (snakeoil), in no root list.
        assert!(reason.contains("certificate"), "{reason}");
    } else {
        assert!(reason.contains("server does not support TLS"), "{reason}");
    }
}

#[tokio::test]
async fn postgres_password_never_appears_in_debug_errors_or_checks() {
    const SECRET: &str = "pa55-w0rd-s3cret";
    let database = TestDatabase::create().await;

    // The test server trusts its clients, so a password is accepted and unused.
    let store = connect(&database.url_with_password(SECRET)).await;
    let shown = [
        format!("{store:?}"),
        store.url().to_string(),
        format!("{:?}", store.url()),
        format!("{:?}", store.self_check().await),
    ];
    for text in &shown {
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(shown[0].contains(database.name()), "{}", shown[0]);

    let unreachable = format!("postgres://sync:{SECRET}@127.0.0.1:1/state");
    let invalid = format!("postgres://sync:{SECRET}@127.0.0.1:notaport/state");
    let in_the_query = format!("postgres://127.0.0.1:1/state?user=sync&password={SECRET}");
    for url in [unreachable, invalid, in_the_query] {
        let error = PostgresStateStore::connect(&url)
            .await
            .expect_err("no server there");
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(SECRET), "{text}");
        }
    }
}

#[tokio::test]
async fn postgres_open_errors_say_why() {
    let database = TestDatabase::create().await;

    let (path, reason) = open_error("postgres://sync@127.0.0.1:1/state").await;
    assert_eq!(path, "postgres://127.0.0.1:1/state");
    assert!(
        reason.starts_with("cannot reach the server at 127.0.0.1:1 ("),
        "{reason}"
    );

    let missing = format!("{}_missing", database.name());
    let (_, reason) = open_error(&database.url().replace(database.name(), &missing)).await;
    assert_eq!(
        reason,
        format!(
            "database \"{missing}\" does not exist: create it (CREATE DATABASE \"{missing}\") \
             or name an existing one in the URL"
        )
    );

    let (path, reason) = open_error(&database.url_as("segment_sync_no_such_role", None)).await;
    assert!(!path.contains("segment_sync_no_such_role"), "{path}");
    assert!(
        reason.starts_with("authentication failed for user \"segment_sync_no_such_role\""),
        "{reason}"
    );

    let (_, reason) = open_error(&database.url_with("sslmode=allow")).await;
    assert!(reason.starts_with("unknown sslmode \"allow\""), "{reason}");
}

#[tokio::test]
async fn postgres_self_check_writes_and_rolls_back() {
    let database = TestDatabase::create().await;
    let store = connect(database.url()).await;

    let lines = store.self_check().await;

    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0].what,
        format!("state database {} writable", store.url())
    );
    assert!(lines[0].passed(), "{}", lines[0]);
    let left = database
        .client()
        .await
        .query_one("SELECT count(*) FROM meta", &[])
        .await
        .unwrap();
    assert_eq!(
        left.get::<_, i64>(0),
        0,
        "the check's write was rolled back"
    );
    store.ping().await.expect("the database answers");
}

#[tokio::test]
async fn postgres_ping_fails_once_the_database_is_gone() {
    let database = TestDatabase::create().await;
    let store = connect(database.url()).await;
    store.ping().await.expect("the database answers");

    drop(database);

    let error = store.ping().await.expect_err("the database was dropped");
    assert!(
        error
            .to_string()
            .starts_with("state database error: pinging the state database: "),
        "{error}"
    );
}

#[tokio::test]
async fn postgres_lease_held_by_another_store_is_refused_until_dropped() {
    let database = TestDatabase::create().await;
    let host_a = connect(database.url()).await;
    let host_b = connect(database.url()).await;
    let at = datetime!(2024-05-01 10:00 UTC);

    let lease = host_a
        .begin_run(start("sync", at, "pid 1 on host-a"))
        .await
        .unwrap();
    match host_b.begin_run(start("sync", at, "pid 2 on host-b")).await {
        Err(StateError::AnotherRun { id, holder, .. }) => {
            assert_eq!((id, holder.as_str()), (lease.id(), "pid 1 on host-a"));
        }
        other => panic!("host b must be refused, got {other:?}"),
    }
    host_a
        .finish_run(lease.id(), RunStatus::Succeeded, RunCounts::default(), None)
        .await
        .unwrap();
    drop(lease);

    let next = begin_within_deadline(&host_b, start("sync", at, "pid 2 on host-b")).await;
    let runs = host_b.runs(10).await.unwrap();
    assert_eq!(runs[0].id, next.id());
    assert_eq!(
        runs[1].status,
        RunStatus::Succeeded,
        "finished, not abandoned"
    );
}

#[tokio::test]
async fn postgres_lease_of_a_killed_session_is_taken_over() {
    let database = TestDatabase::create().await;
    let killed = connect(database.url()).await;
    let next = connect(database.url()).await;
    let at = datetime!(2024-05-01 10:00 UTC);
    let lease = killed
        .begin_run(start("sync", at, "pid 1 on host-a"))
        .await
        .unwrap();

    // As when its process is killed: the session holding the lock ends.
    let terminated = database
        .client()
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks
             WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(terminated.len(), 1, "one session held the lease");

    let taken = begin_within_deadline(&next, start("sync", at, "pid 2 on host-b")).await;
    let runs = next.runs(10).await.unwrap();
    let status = |id| runs.iter().find(|r| r.id == id).map(|r| r.status);
    assert_eq!(status(lease.id()), Some(RunStatus::Abandoned));
    assert_eq!(status(taken.id()), Some(RunStatus::Running));
    drop(lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_overlapping_claims_from_many_tasks_grant_each_customer_once() {
    const TASKS: usize = 8;
    const CUSTOMERS: usize = 300;
    let database = TestDatabase::create().await;
    let store: Arc<dyn SyncStateStore> = Arc::new(connect(database.url()).await);
    let all = ids(0..CUSTOMERS);

    // Each task asks for every customer, in its own order (statements that lock
    // rows in different orders would deadlock), and releases what it got only
    // once every task has asked.
    let all_asked = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            let all_asked = Arc::clone(&all_asked);
            let mut order = all.clone();
            order.rotate_left(t * CUSTOMERS / TASKS);
            if t % 2 == 1 {
                order.reverse();
            }
            tokio::spawn(async move {
                let holder = format!("task-{t}");
                let claimed = store.claim(&order, &holder, LONG).await;
                // Whatever this task got, the others must not wait for it forever.
                all_asked.wait().await;
                let claimed = claimed.unwrap_or_else(|e| panic!("{holder}: {e}"));
                let granted: Vec<String> = order
                    .iter()
                    .filter(|id| !claimed.busy.contains(id))
                    .cloned()
                    .collect();
                record(&*store, &granted, &holder, 0).await;
                granted
            })
        })
        .collect();
    let mut granted = Vec::new();
    for task in tasks {
        granted.extend(task.await.expect("a task failed"));
    }

    let distinct: HashSet<&String> = granted.iter().collect();
    assert_eq!(
        granted.len(),
        CUSTOMERS,
        "each customer granted exactly once"
    );
    assert_eq!(distinct.len(), CUSTOMERS);
    assert_eq!(store.delivered(&all).await.unwrap().len(), CUSTOMERS);
    let free = store.claim(&all, "after", LONG).await.unwrap();
    assert!(free.busy.is_empty(), "every claim was released");
}

#[tokio::test]
async fn postgres_settles_a_delivery_and_a_letter_of_one_customer_as_sqlite_does() {
    let database = TestDatabase::create().await;
    let postgres = connect(database.url()).await;
    let sqlite = SqliteStateStore::open_in_memory().unwrap();
    let stores: [&dyn SyncStateStore; 2] = [&postgres, &sqlite];
    // x's letter is made stale by the delivery (then a new one is added); y's is
    // newer than the delivery, so it is replaced and counts an attempt.
    let delivered = [
        Delivered {
            customer_id: "x",
            version: 2,
            fingerprint: fingerprint(2),
            user_id: "x",
        },
        Delivered {
            customer_id: "y",
            version: 2,
            fingerprint: fingerprint(3),
            user_id: "y",
        },
    ];
    let letters = [letter("x", 2, 1), letter("y", 6, 1)];
    let mut held = Vec::new();
    for store in stores {
        store
            .add_dead_letters(&[letter("x", 1, 3), letter("y", 5, 2)])
            .await
            .unwrap();
        store
            .settle(Settlement {
                delivered: &delivered,
                dead_letters: &letters,
                holder: "test",
                ..Settlement::default()
            })
            .await
            .unwrap();
        held.push(store.dead_letters().await.unwrap());
    }

    let attempts: Vec<(String, u32)> = held[0]
        .iter()
        .map(|l| (l.customer_id.clone(), l.attempts))
        .collect();
    assert_eq!(
        attempts,
        [("x".to_owned(), 1), ("y".to_owned(), 3)],
        "postgres"
    );
    assert_eq!(held[0], held[1], "the same letters in both stores");
}

#[tokio::test]
async fn postgres_lists_deliveries_in_byte_order_whatever_the_databases_locale() {
    // English rules sort "a" before "B" and ignore "_"; bytes do not.
    let database =
        TestDatabase::create_with("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
            .await;
    let postgres = connect(database.url()).await;
    let sqlite = SqliteStateStore::open_in_memory().unwrap();
    let ids: Vec<String> = ["b", "_c", "A", "a", "B", "Z", "-d", "é"]
        .map(str::to_owned)
        .to_vec();
    let mut listed = Vec::new();
    for store in [&postgres as &dyn SyncStateStore, &sqlite] {
        record(store, &ids, "test", 0).await;
        let mut order = Vec::new();
        let mut after = None;
        loop {
            let page = store.deliveries_after(after, 3).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.customer_id.clone());
            order.extend(page.into_iter().map(|row| row.customer_id));
        }
        listed.push(order);
    }
    let mut bytewise = ids.clone();
    bytewise.sort();
    assert_eq!(listed[0], bytewise, "postgres");
    assert_eq!(listed[1], bytewise, "sqlite");
}

#[tokio::test]
async fn postgres_pages_of_claims_and_settlements_are_quick() {
    const CUSTOMERS: usize = 50_000;
    const PAGE: usize = 500;
    let database = TestDatabase::create().await;
    let store = connect(database.url()).await;
    let all = ids(0..CUSTOMERS);

    let started = Instant::now();
    for (page_no, page) in all.chunks(PAGE).enumerate() {
        let claimed = store
            .claim(page, "bench", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(claimed.busy.is_empty() && claimed.delivered.is_empty());
        record(&store, page, "bench", page_no * PAGE).await;
    }
    let claimed_and_settled = started.elapsed();

    let started = Instant::now();
    let mut found = 0;
    for page in all.chunks(PAGE) {
        found += store.delivered(page).await.unwrap().len();
    }
    let lookups = started.elapsed();

    assert_eq!(found, CUSTOMERS);
    println!(
        "postgres: {CUSTOMERS} customers in pages of {PAGE}: claim+settle {:.0}/s, lookup only {:.0}/s",
        CUSTOMERS as f64 / claimed_and_settled.as_secs_f64(),
        CUSTOMERS as f64 / lookups.as_secs_f64(),
    );
}
