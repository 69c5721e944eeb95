//! The [`SyncStateStore`] contract: what every state store must do, one public
//! function per rule.
//!
//! Each rule takes a fresh, empty store. Instantiate the whole suite with
//! [`state_store_contract!`](crate::state_store_contract):
//!
//! ```
//! use segment_sync_testkit::memory::MemoryStateStore;
//!
//! async fn in_memory() -> MemoryStateStore {
//!     MemoryStateStore::new()
//! }
//!
//! segment_sync_testkit::state_store_contract!(in_memory);
//! # fn main() {}
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use segment_sync_domain::sync::{DeadLetter, DeadLetterKind, RunCounts, RunRecord, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{
    DeletionRecord, DeletionsSent, Delivered, DeliveredRecord, Forgotten, RunLease, RunStart,
    Settlement, StateError, Subject as Whom, SyncStateStore,
};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

use super::Subject;

/// Makes a fresh, empty state store for each rule: an async function or closure
/// returning anything that converts into a [`Subject<dyn SyncStateStore>`].
pub trait StateStoreFactory {
    /// A new, empty store.
    fn make(&self) -> impl Future<Output = Subject<dyn SyncStateStore>>;
}

impl<F, Fut, T> StateStoreFactory for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
    T: Into<Subject<dyn SyncStateStore>>,
{
    fn make(&self) -> impl Future<Output = Subject<dyn SyncStateStore>> {
        let made = self();
        async move { made.await.into() }
    }
}

/// Runs the [`SyncStateStore`] contract against a factory: one `#[tokio::test]`
/// per rule of [`crate::contract::state`], in a module named `contract`.
///
/// The factory is an async function (or closure) that returns an empty store, as
/// anything that converts into a [`Subject<dyn SyncStateStore>`](crate::contract::Subject).
/// The test crate needs `tokio` with `macros` and `rt-multi-thread`.
///
/// A store in a file keeps its directory alive with [`Subject::keeping`](crate::contract::Subject::keeping):
///
/// ```text
/// async fn in_a_temporary_directory() -> Subject<dyn SyncStateStore> {
///     let dir = tempfile::tempdir().unwrap();
///     let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
///     Subject::from(store).keeping(dir)
/// }
///
/// segment_sync_testkit::state_store_contract!(in_a_temporary_directory);
/// ```
#[macro_export]
macro_rules! state_store_contract {
    ($factory:expr $(,)?) => {
        fn __state_store_contract_factory() -> impl $crate::contract::state::StateStoreFactory {
            $factory
        }

        mod contract {
            use $crate::contract::state as rules;
            use $crate::contract::state::StateStoreFactory as _;

            $crate::__state_store_rules!(
                deliveries_round_trip,
                a_later_version_replaces_the_delivery,
                an_older_version_never_replaces_a_newer_one,
                a_delivery_clears_that_customers_dead_letters_of_its_version_or_older,
                a_claim_reserves_customers_until_released,
                a_claim_names_the_content_segment_rejected,
                an_expired_claim_is_taken_over,
                a_dead_letter_added_again_replaces_it_and_counts_an_attempt,
                dead_letters_are_listed_oldest_first_by_when_last_recorded,
                removing_dead_letters_removes_only_those,
                dead_letters_keep_every_field,
                the_high_water_mark_round_trips,
                the_rules_fingerprint_round_trips,
                deliveries_are_listed_in_id_order_a_page_at_a_time,
                runs_are_listed_newest_first_up_to_the_limit,
                a_run_records_what_it_did,
                one_run_at_a_time_holds_the_state,
                a_run_whose_lease_was_dropped_unfinished_is_abandoned,
                imported_runs_keep_what_they_recorded,
                finishing_an_unknown_run_is_an_error,
                empty_inputs_change_nothing,
                more_than_500_ids_in_one_call,
                dead_letters_are_read_a_page_at_a_time,
                purging_removes_dead_letters_recorded_before_the_instant,
                forgetting_a_customer_erases_it_and_queues_its_user_id,
                forgetting_a_user_id_erases_every_customer_delivered_under_it,
                forgetting_the_unknown_changes_nothing,
                a_user_id_is_queued_once_until_sent,
                sent_deletions_leave_the_queue_and_count_in_the_month,
                deletions_are_listed_in_id_order_a_page_at_a_time,
                imported_deletions_keep_what_they_recorded,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_lose_nothing() {
                let store = super::__state_store_contract_factory().make().await;
                rules::concurrent_writers_lose_nothing(store.port()).await;
            }
        }
    };
}

/// One test per rule that takes `&dyn SyncStateStore`.
#[doc(hidden)]
#[macro_export]
macro_rules! __state_store_rules {
    ($($rule:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $rule() {
                let store = super::__state_store_contract_factory().make().await;
                rules::$rule(&*store).await;
            }
        )*
    };
}

/// How long the rules' claims last when they should not expire.
const LONG: Duration = Duration::from_secs(600);

fn ok<T>(doing: &str, result: Result<T, StateError>) -> T {
    result.unwrap_or_else(|e| panic!("{doing} failed: {e}"))
}

/// A distinct, valid fingerprint per number.
fn fingerprint(n: u128) -> Fingerprint {
    Fingerprint::from_hex(&format!("{n:032x}")).expect("32 hex digits")
}

fn strings<const N: usize>(ids: [&str; N]) -> Vec<String> {
    ids.map(str::to_owned).to_vec()
}

/// The `userId` the rules deliver a customer as.
fn user_id(customer_id: &str) -> String {
    format!("{customer_id}@example.com")
}

/// Records deliveries of (customer, version, fingerprint), as a holder that
/// reserved nothing.
async fn record(store: &dyn SyncStateStore, deliveries: &[(&str, i64, Fingerprint)]) {
    let users: Vec<String> = deliveries.iter().map(|(id, _, _)| user_id(id)).collect();
    let delivered: Vec<Delivered<'_>> = deliveries
        .iter()
        .zip(&users)
        .map(|((customer_id, version, fingerprint), user_id)| Delivered {
            customer_id,
            version: *version,
            fingerprint: *fingerprint,
            user_id,
        })
        .collect();
    settle(
        store,
        Settlement {
            delivered: &delivered,
            holder: "contract",
            ..Settlement::default()
        },
    )
    .await;
}

async fn settle(store: &dyn SyncStateStore, settlement: Settlement<'_>) {
    ok("settle", store.settle(settlement).await);
}

async fn found(store: &dyn SyncStateStore, ids: &[String]) -> HashMap<String, DeliveredRecord> {
    ok("delivered", store.delivered(ids).await)
}

fn record_of(version: i64, n: u128) -> DeliveredRecord {
    DeliveredRecord {
        version,
        fingerprint: fingerprint(n),
    }
}

/// A failed delivery's dead letter for version 1, as the service writes it.
fn letter(customer_id: &str, reason: &str, recorded_at: &str) -> DeadLetter {
    DeadLetter {
        customer_id: customer_id.to_owned(),
        kind: DeadLetterKind::Failed,
        code: "max_retries_exceeded".to_owned(),
        reason: reason.to_owned(),
        payload: Some(format!(
            r#"{{"type":"identify","userId":"{customer_id}@example.com"}}"#
        )),
        fingerprint: Some(fingerprint(7).to_hex()),
        version: Some(1),
        attempts: 1,
        recorded_at: recorded_at.to_owned(),
    }
}

async fn add(store: &dyn SyncStateStore, letters: &[DeadLetter]) {
    ok("add_dead_letters", store.add_dead_letters(letters).await);
}

async fn letters(store: &dyn SyncStateStore) -> Vec<DeadLetter> {
    ok("dead_letters", store.dead_letters().await)
}

async fn letter_ids(store: &dyn SyncStateStore) -> Vec<String> {
    letters(store)
        .await
        .into_iter()
        .map(|l| l.customer_id)
        .collect()
}

fn parse_time(what: &str, text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{what} {text:?} is not RFC 3339: {e}"))
}

fn start(kind: &str, started_at: OffsetDateTime) -> RunStart {
    RunStart {
        kind: kind.to_owned(),
        started_at,
        source: Some("api".to_owned()),
        holder: format!("pid 42 on contract-{kind}"),
    }
}

/// Begins a run and finishes it at once, so that the next can begin.
async fn run_once(
    store: &dyn SyncStateStore,
    kind: &str,
    at: OffsetDateTime,
    status: RunStatus,
) -> i64 {
    let lease = ok("begin_run", store.begin_run(start(kind, at)).await);
    ok(
        "finish_run",
        store
            .finish_run(lease.id(), status, RunCounts::default(), None)
            .await,
    );
    lease.id()
}

/// Deliveries are found again by customer id, with their version; ids never
/// delivered are absent, and only ids asked for are answered.
pub async fn deliveries_round_trip(store: &dyn SyncStateStore) {
    record(store, &[("a", 3, fingerprint(1)), ("b", 1, fingerprint(2))]).await;
    record(store, &[("c", 1, fingerprint(3))]).await;

    let answer = found(store, &strings(["a", "b", "never-delivered"])).await;

    let expected = HashMap::from([
        ("a".to_owned(), record_of(3, 1)),
        ("b".to_owned(), record_of(1, 2)),
    ]);
    assert_eq!(answer, expected, "a and b, and nothing else");
}

/// A delivery of the same or a later version replaces the one held (the same
/// version may carry other content: a mapping changed).
pub async fn a_later_version_replaces_the_delivery(store: &dyn SyncStateStore) {
    record(store, &[("a", 1, fingerprint(1)), ("b", 1, fingerprint(2))]).await;
    record(store, &[("a", 2, fingerprint(99))]).await;
    record(store, &[("b", 1, fingerprint(98))]).await;

    let answer = found(store, &strings(["a", "b"])).await;

    assert_eq!(
        answer.get("a"),
        Some(&record_of(2, 99)),
        "a's later version"
    );
    assert_eq!(answer.get("b"), Some(&record_of(1, 98)), "b's new content");
}

/// A delivery of an older version than the one held changes nothing: concurrent
/// processes cannot move a profile backwards.
pub async fn an_older_version_never_replaces_a_newer_one(store: &dyn SyncStateStore) {
    record(store, &[("a", 5, fingerprint(5))]).await;
    record(store, &[("a", 4, fingerprint(4))]).await;

    assert_eq!(
        found(store, &strings(["a"])).await.get("a"),
        Some(&record_of(5, 5)),
        "version 5 stays"
    );
}

/// Recording a delivery clears that customer's dead letters of the same or an
/// older version (or of no version: a malformed record), and no other.
pub async fn a_delivery_clears_that_customers_dead_letters_of_its_version_or_older(
    store: &dyn SyncStateStore,
) {
    let newer = DeadLetter {
        version: Some(7),
        ..letter("c", "timeout", "2024-05-01T10:00:02Z")
    };
    let unversioned = DeadLetter {
        version: None,
        ..letter("d", "Invalid payload", "2024-05-01T10:00:03Z")
    };
    add(
        store,
        &[
            letter("a", "timeout", "2024-05-01T10:00:00Z"),
            letter("b", "timeout", "2024-05-01T10:00:01Z"),
            newer,
            unversioned,
        ],
    )
    .await;

    record(
        store,
        &[
            ("a", 1, fingerprint(1)),
            ("c", 6, fingerprint(6)),
            ("d", 1, fingerprint(2)),
            ("never-dead", 1, fingerprint(3)),
        ],
    )
    .await;

    assert_eq!(
        letter_ids(store).await,
        ["b", "c"],
        "a's and d's letters cleared; b's untouched; c's is newer than its delivery"
    );
    assert_eq!(
        found(store, &strings(["a"])).await.get("a"),
        Some(&record_of(1, 1)),
        "the delivery itself is recorded"
    );
}

/// A claim reserves customers for its holder: another holder finds them busy until
/// the holder releases them; claiming again renews, and a claim answers with the
/// last deliveries of the customers it reserved.
pub async fn a_claim_reserves_customers_until_released(store: &dyn SyncStateStore) {
    record(store, &[("a", 2, fingerprint(2))]).await;

    let first = ok(
        "claim",
        store.claim(&strings(["a", "b"]), "one", LONG).await,
    );
    assert!(first.busy.is_empty(), "nothing was reserved before");
    assert_eq!(
        first.delivered,
        HashMap::from([("a".to_owned(), record_of(2, 2))])
    );

    let second = ok(
        "claim",
        store.claim(&strings(["b", "c"]), "two", LONG).await,
    );
    assert_eq!(second.busy, ["b"], "b is the first holder's");
    assert!(second.delivered.is_empty(), "c was never delivered");

    let again = ok("claim", store.claim(&strings(["a"]), "one", LONG).await);
    assert!(again.busy.is_empty(), "a holder may claim what it holds");

    settle(
        store,
        Settlement {
            release: &strings(["a", "b"]),
            holder: "one",
            ..Settlement::default()
        },
    )
    .await;
    let third = ok(
        "claim",
        store.claim(&strings(["a", "b"]), "two", LONG).await,
    );
    assert!(third.busy.is_empty(), "released: {:?}", third.busy);

    settle(
        store,
        Settlement {
            release: &strings(["a", "b", "c"]),
            holder: "one",
            ..Settlement::default()
        },
    )
    .await;
    let fourth = ok("claim", store.claim(&strings(["a"]), "three", LONG).await);
    assert_eq!(fourth.busy, ["a"], "one cannot release what two holds");
}

/// A claim answers, for the customers it reserves, the fingerprint of a rejected
/// dead letter (Segment refused that content); a failed letter, a letter without
/// a fingerprint, or another customer's, does not count.
pub async fn a_claim_names_the_content_segment_rejected(store: &dyn SyncStateStore) {
    let rejected = |id: &str, n: u128| DeadLetter {
        kind: DeadLetterKind::Rejected,
        code: "bad_request".to_owned(),
        fingerprint: Some(fingerprint(n).to_hex()),
        ..letter(id, "400 Bad Request", "2024-05-01T10:00:00Z")
    };
    add(
        store,
        &[
            rejected("a", 40),
            letter("b", "timeout", "2024-05-01T10:00:01Z"),
            DeadLetter {
                fingerprint: None,
                ..rejected("c", 41)
            },
            rejected("elsewhere", 42),
        ],
    )
    .await;

    let claimed = ok(
        "claim",
        store
            .claim(&strings(["a", "b", "c", "d"]), "one", LONG)
            .await,
    );

    assert_eq!(
        claimed.rejected,
        HashMap::from([("a".to_owned(), fingerprint(40))])
    );
}

/// A claim whose time is up is another holder's to take.
pub async fn an_expired_claim_is_taken_over(store: &dyn SyncStateStore) {
    ok(
        "claim",
        store.claim(&strings(["a"]), "gone", Duration::ZERO).await,
    );
    let taken = ok("claim", store.claim(&strings(["a"]), "next", LONG).await);
    assert!(taken.busy.is_empty(), "the expired claim was taken over");
    let after = ok("claim", store.claim(&strings(["a"]), "gone", LONG).await);
    assert_eq!(after.busy, ["a"], "and it is the new holder's now");
}

/// A dead letter added for a customer who already has one replaces it, and its
/// attempts are the held attempts plus one, whatever the new copy carries (as
/// when a listed letter is replayed and fails again); a first letter keeps the
/// attempts it carries.
pub async fn a_dead_letter_added_again_replaces_it_and_counts_an_attempt(
    store: &dyn SyncStateStore,
) {
    let first = letter("a", "timeout", "2024-05-01T10:00:00Z");
    add(store, std::slice::from_ref(&first)).await;
    assert_eq!(
        letters(store).await,
        [first],
        "a first letter is kept as given"
    );

    let second = DeadLetter {
        kind: DeadLetterKind::Rejected,
        code: "bad_request".to_owned(),
        payload: None,
        fingerprint: None,
        ..letter("a", "400 Bad Request", "2024-05-02T10:00:00Z")
    };
    add(store, std::slice::from_ref(&second)).await;
    let held = letters(store).await;
    assert_eq!(
        held,
        [DeadLetter {
            attempts: 2,
            ..second
        }],
        "one letter for a, with the latest content and two attempts"
    );

    // Replay: the listed copy (attempts 2) fails again.
    add(store, &held).await;
    let held = letters(store).await;
    assert_eq!(held.len(), 1, "still one letter for a");
    assert_eq!(held[0].attempts, 3, "the held attempts plus one");

    let copied = DeadLetter {
        attempts: 9,
        ..letter("b", "timeout", "2024-05-01T10:00:00Z")
    };
    add(store, std::slice::from_ref(&copied)).await;
    assert_eq!(
        letters(store).await[1].attempts,
        9,
        "moved from another state"
    );
}

/// Dead letters are listed oldest first by when each was last recorded: call
/// order, then order within a call; a letter recorded again moves to the end.
pub async fn dead_letters_are_listed_oldest_first_by_when_last_recorded(
    store: &dyn SyncStateStore,
) {
    add(
        store,
        &[
            letter("b", "timeout", "2024-05-01T10:00:00Z"),
            letter("a", "timeout", "2024-05-01T10:00:01Z"),
        ],
    )
    .await;
    add(store, &[letter("c", "timeout", "2024-05-01T10:00:02Z")]).await;
    assert_eq!(letter_ids(store).await, ["b", "a", "c"]);

    add(store, &[letter("b", "503", "2024-05-01T10:00:03Z")]).await;

    assert_eq!(
        letter_ids(store).await,
        ["a", "c", "b"],
        "b, recorded last, is listed last"
    );
}

/// Removing dead letters removes exactly those customers' letters; unknown and
/// repeated ids are fine, and deliveries are untouched.
pub async fn removing_dead_letters_removes_only_those(store: &dyn SyncStateStore) {
    record(store, &[("x", 1, fingerprint(5))]).await;
    add(
        store,
        &[
            letter("a", "timeout", "2024-05-01T10:00:00Z"),
            letter("b", "timeout", "2024-05-01T10:00:01Z"),
            letter("c", "timeout", "2024-05-01T10:00:02Z"),
            letter("x", "timeout", "2024-05-01T10:00:03Z"),
        ],
    )
    .await;

    ok(
        "remove_dead_letters",
        store
            .remove_dead_letters(&strings(["b", "unknown", "b", "x"]))
            .await,
    );

    assert_eq!(letter_ids(store).await, ["a", "c"]);
    assert_eq!(
        found(store, &strings(["x"])).await.get("x"),
        Some(&record_of(1, 5)),
        "removing x's letter keeps x's delivery"
    );
}

/// A dead letter is listed exactly as it was added: kind, code, reason (any
/// text), payload, fingerprint and version (present or absent) and `recorded_at`
/// as given.
pub async fn dead_letters_keep_every_field(store: &dyn SyncStateStore) {
    let failed = DeadLetter {
        reason: "Max retries exceeded — 503 «Service Unavailable» 'quoted' \"twice\"".to_owned(),
        payload: Some(
            r#"{"type":"identify","userId":"zoë@example.com","traits":{"note":"a\nb"}}"#.to_owned(),
        ),
        version: Some(i64::from(u32::MAX) + 5),
        ..letter("customer/with spaces", "", "2024-05-01T12:00:00.123+02:00")
    };
    let rejected = DeadLetter {
        customer_id: "line 12".to_owned(),
        kind: DeadLetterKind::Rejected,
        code: "invalid_payload".to_owned(),
        reason: "Invalid payload".to_owned(),
        payload: None,
        fingerprint: None,
        version: None,
        attempts: 1,
        recorded_at: "2024-05-01T10:00:00Z".to_owned(),
    };

    add(store, &[failed.clone(), rejected.clone()]).await;

    assert_eq!(letters(store).await, [failed, rejected]);
}

/// The high-water mark is absent at first, then the instant last set (to the
/// millisecond, whatever its offset).
pub async fn the_high_water_mark_round_trips(store: &dyn SyncStateStore) {
    assert_eq!(
        ok("high_water_mark", store.high_water_mark().await),
        None,
        "a new store has no high-water mark"
    );

    let at = datetime!(2024-05-01 12:00:00.123 +02:00);
    ok("set_high_water_mark", store.set_high_water_mark(at).await);
    assert_eq!(
        ok("high_water_mark", store.high_water_mark().await),
        Some(at)
    );

    let later = datetime!(2024-06-01 00:00:00 UTC);
    ok(
        "set_high_water_mark",
        store.set_high_water_mark(later).await,
    );
    assert_eq!(
        ok("high_water_mark", store.high_water_mark().await),
        Some(later)
    );
}

/// The rules fingerprint is absent at first, then the one last set.
pub async fn the_rules_fingerprint_round_trips(store: &dyn SyncStateStore) {
    assert_eq!(
        ok("rules_fingerprint", store.rules_fingerprint().await),
        None
    );
    for value in ["0123abcd", "ffff"] {
        ok(
            "set_rules_fingerprint",
            store.set_rules_fingerprint(value.to_owned()).await,
        );
        assert_eq!(
            ok("rules_fingerprint", store.rules_fingerprint().await).as_deref(),
            Some(value)
        );
    }
}

/// Every delivery can be read out in customer id order, a page at a time, with
/// its version, fingerprint and `userId`.
pub async fn deliveries_are_listed_in_id_order_a_page_at_a_time(store: &dyn SyncStateStore) {
    let ids = ["d", "a", "c", "e", "b"];
    for (n, id) in ids.iter().enumerate() {
        record(store, &[(id, n as i64 + 1, fingerprint(n as u128))]).await;
    }
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = ok("deliveries_after", store.deliveries_after(after, 2).await);
        assert!(page.len() <= 2, "at most the limit");
        let Some(last) = page.last() else { break };
        after = Some(last.customer_id.clone());
        listed.extend(page);
    }
    let order: Vec<&str> = listed.iter().map(|row| row.customer_id.as_str()).collect();
    assert_eq!(order, ["a", "b", "c", "d", "e"]);
    let a = &listed[0];
    assert_eq!((a.version, a.fingerprint), (2, fingerprint(1)));
    assert_eq!(a.user_id, user_id("a"));
}

/// Runs get increasing ids and are listed newest first, at most `limit` of them.
pub async fn runs_are_listed_newest_first_up_to_the_limit(store: &dyn SyncStateStore) {
    let mut started = Vec::new();
    for (kind, at) in [
        ("sync", datetime!(2024-05-01 10:00 UTC)),
        ("replay", datetime!(2024-05-02 10:00 UTC)),
        ("sync", datetime!(2024-05-03 10:00 UTC)),
    ] {
        started.push(run_once(store, kind, at, RunStatus::Succeeded).await);
    }
    assert!(
        started.windows(2).all(|pair| pair[0] < pair[1]),
        "run ids increase: {started:?}"
    );

    let listed =
        |runs: Vec<RunRecord>| -> Vec<i64> { runs.into_iter().map(|run| run.id).collect() };
    let newest_first: Vec<i64> = started.iter().rev().copied().collect();
    assert_eq!(listed(ok("runs", store.runs(10).await)), newest_first);
    assert_eq!(listed(ok("runs", store.runs(2).await)), newest_first[..2]);
    assert_eq!(listed(ok("runs", store.runs(0).await)), Vec::<i64>::new());
}

/// A begun run is listed as running with its kind, start, source and holder; once
/// finished it holds its status, counts, error and an RFC 3339 end.
pub async fn a_run_records_what_it_did(store: &dyn SyncStateStore) {
    let started_at = datetime!(2024-05-01 12:00:00 +02:00);
    let lease = ok(
        "begin_run",
        store.begin_run(start("sync", started_at)).await,
    );
    let id = lease.id();

    let running = ok("runs", store.runs(1).await);
    assert_eq!(running.len(), 1);
    let run = &running[0];
    assert_eq!(run.id, id);
    assert_eq!(run.kind, "sync");
    assert_eq!(parse_time("started_at", &run.started_at), started_at);
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.source.as_deref(), Some("api"));
    assert_eq!(run.holder.as_deref(), Some("pid 42 on contract-sync"));
    assert_eq!(run.finished_at, None, "not finished yet");
    assert_eq!(run.counts, RunCounts::default());
    assert_eq!(run.error, None);

    let counts = RunCounts {
        read: 10,
        sent: 5,
        unchanged: 2,
        skipped: 1,
        rejected: 1,
        failed: 1,
    };
    ok(
        "finish_run",
        store
            .finish_run(id, RunStatus::CompletedWithErrors, counts, None)
            .await,
    );
    drop(lease);
    let aborted = ok(
        "begin_run",
        store
            .begin_run(start("replay", datetime!(2024-05-02 10:00 UTC)))
            .await,
    );
    ok(
        "finish_run",
        store
            .finish_run(
                aborted.id(),
                RunStatus::Aborted,
                RunCounts::default(),
                Some("Invalid write key".to_owned()),
            )
            .await,
    );

    let runs = ok("runs", store.runs(10).await);
    assert_eq!(runs.len(), 2);
    let (second, first) = (&runs[0], &runs[1]);
    assert_eq!(first.id, id);
    assert_eq!(first.status, RunStatus::CompletedWithErrors);
    assert_eq!(first.counts, counts);
    assert_eq!(first.error, None);
    let finished = first
        .finished_at
        .as_deref()
        .expect("a finished run has an end");
    parse_time("finished_at", finished);
    assert_eq!(second.id, aborted.id());
    assert_eq!(second.kind, "replay");
    assert_eq!(second.status, RunStatus::Aborted);
    assert_eq!(second.error.as_deref(), Some("Invalid write key"));
    assert!(second.finished_at.is_some());
}

/// While a run holds the state, another cannot begin: it is told which run holds
/// it, since when and who runs it. Once the lease is dropped the next run begins.
pub async fn one_run_at_a_time_holds_the_state(store: &dyn SyncStateStore) {
    let first = ok(
        "begin_run",
        store
            .begin_run(start("sync", datetime!(2024-05-01 10:00 UTC)))
            .await,
    );
    match store
        .begin_run(start("replay", datetime!(2024-05-01 10:01 UTC)))
        .await
    {
        Err(StateError::AnotherRun {
            id,
            started_at,
            holder,
        }) => {
            assert_eq!(id, first.id());
            assert_eq!(
                parse_time("started_at", &started_at),
                datetime!(2024-05-01 10:00 UTC)
            );
            assert_eq!(holder, "pid 42 on contract-sync");
        }
        other => panic!("a second run must be refused, got {other:?}"),
    }
    ok(
        "finish_run",
        store
            .finish_run(first.id(), RunStatus::Succeeded, RunCounts::default(), None)
            .await,
    );
    drop(first);
    let next: RunLease = ok(
        "begin_run",
        store
            .begin_run(start("replay", datetime!(2024-05-01 10:02 UTC)))
            .await,
    );
    assert!(next.id() > 0);
    assert_eq!(
        ok("runs", store.runs(10).await).len(),
        2,
        "the refused run left no row"
    );
}

/// A run whose lease was dropped while it was still running (its process died) is
/// marked abandoned when the next run begins, and its claims are released; other
/// holders' claims are not.
pub async fn a_run_whose_lease_was_dropped_unfinished_is_abandoned(store: &dyn SyncStateStore) {
    let killed = ok(
        "begin_run",
        store
            .begin_run(start("sync", datetime!(2024-05-01 10:00 UTC)))
            .await,
    );
    let killed_id = killed.id();
    let run_claims = segment_sync_ports::run_holder(killed_id);
    ok(
        "claim",
        store.claim(&strings(["a"]), &run_claims, LONG).await,
    );
    ok(
        "claim",
        store
            .claim(&strings(["b"]), "a webhook request", LONG)
            .await,
    );
    drop(killed);
    let next = ok(
        "begin_run",
        store
            .begin_run(start("sync", datetime!(2024-05-01 11:00 UTC)))
            .await,
    );
    let runs = ok("runs", store.runs(10).await);
    let status = |id| runs.iter().find(|run| run.id == id).map(|run| run.status);
    assert_eq!(status(killed_id), Some(RunStatus::Abandoned));
    assert_eq!(status(next.id()), Some(RunStatus::Running));
    assert!(
        runs.iter()
            .find(|run| run.id == killed_id)
            .is_some_and(|run| run.finished_at.is_some()),
        "an abandoned run has an end"
    );
    let after = ok(
        "claim",
        store.claim(&strings(["a", "b"]), "next run", LONG).await,
    );
    assert_eq!(
        after.busy,
        ["b"],
        "the dead run's claim went; the request's stays"
    );
}

/// Runs imported from another state are listed with what they recorded, newest
/// first after the runs already there.
pub async fn imported_runs_keep_what_they_recorded(store: &dyn SyncStateStore) {
    run_once(
        store,
        "sync",
        datetime!(2024-05-03 10:00 UTC),
        RunStatus::Succeeded,
    )
    .await;
    let counts = RunCounts {
        read: 3,
        sent: 2,
        skipped: 1,
        ..RunCounts::default()
    };
    let imported = [
        RunRecord {
            id: 7,
            kind: "sync".to_owned(),
            source: Some("file export.ndjson".to_owned()),
            holder: Some("pid 1 on old-host".to_owned()),
            started_at: "2024-01-01T00:00:00Z".to_owned(),
            finished_at: Some("2024-01-01T00:01:00Z".to_owned()),
            status: RunStatus::Succeeded,
            counts,
            error: None,
        },
        RunRecord {
            id: 8,
            kind: "replay".to_owned(),
            source: None,
            holder: None,
            started_at: "2024-01-02T00:00:00Z".to_owned(),
            finished_at: Some("2024-01-02T00:00:05Z".to_owned()),
            status: RunStatus::Aborted,
            counts: RunCounts::default(),
            error: Some("Invalid write key".to_owned()),
        },
    ];
    ok("import_runs", store.import_runs(&imported).await);

    let runs = ok("runs", store.runs(10).await);
    assert_eq!(runs.len(), 3);
    let (newest, older) = (&runs[0], &runs[1]);
    assert_eq!(newest.kind, "replay");
    assert_eq!(newest.error.as_deref(), Some("Invalid write key"));
    assert_eq!(older.counts, counts);
    assert_eq!(older.source.as_deref(), Some("file export.ndjson"));
    assert_eq!(older.finished_at.as_deref(), Some("2024-01-01T00:01:00Z"));
    let ids: HashSet<i64> = runs.iter().map(|run| run.id).collect();
    assert_eq!(ids.len(), 3, "ids stay distinct");
}

/// Finishing a run that was never begun is an error, and changes no run.
pub async fn finishing_an_unknown_run_is_an_error(store: &dyn SyncStateStore) {
    let finish = |id| store.finish_run(id, RunStatus::Succeeded, RunCounts::default(), None);
    assert!(finish(42).await.is_err(), "no run 42 in an empty store");

    let lease = ok(
        "begin_run",
        store
            .begin_run(start("sync", datetime!(2024-05-01 10:00 UTC)))
            .await,
    );
    for unknown in [lease.id() + 1, lease.id() + 1_000, -1] {
        assert!(finish(unknown).await.is_err(), "no run {unknown}");
    }

    let runs = ok("runs", store.runs(10).await);
    assert_eq!(runs.len(), 1, "no run was made by finishing one");
    assert_eq!(
        runs[0].status,
        RunStatus::Running,
        "the real run is untouched"
    );
}

/// A new store is empty, and calls with empty lists succeed and change nothing.
pub async fn empty_inputs_change_nothing(store: &dyn SyncStateStore) {
    assert!(
        letters(store).await.is_empty(),
        "a new store has no dead letters"
    );
    assert!(
        ok("runs", store.runs(10).await).is_empty(),
        "a new store has no runs"
    );
    assert!(found(store, &strings(["a"])).await.is_empty());
    assert!(ok("deliveries_after", store.deliveries_after(None, 10).await).is_empty());

    record(store, &[("x", 1, fingerprint(1))]).await;
    add(store, &[letter("a", "timeout", "2024-05-01T10:00:00Z")]).await;

    assert!(found(store, &[]).await.is_empty(), "no ids, no deliveries");
    let claimed = ok("claim", store.claim(&[], "one", LONG).await);
    assert!(claimed.busy.is_empty() && claimed.delivered.is_empty());
    record(store, &[]).await;
    settle(store, Settlement::default()).await;
    add(store, &[]).await;
    ok("remove_dead_letters", store.remove_dead_letters(&[]).await);
    ok("import_runs", store.import_runs(&[]).await);

    assert_eq!(letter_ids(store).await, ["a"]);
    assert_eq!(letters(store).await[0].attempts, 1);
    assert_eq!(found(store, &strings(["x"])).await.len(), 1);
}

/// More than 500 ids in one call (one commercetools page and more) are all
/// claimed, recorded, looked up, cleared, released and removed.
pub async fn more_than_500_ids_in_one_call(store: &dyn SyncStateStore) {
    const COUNT: usize = 1_201;
    let ids: Vec<String> = (0..COUNT).map(|i| format!("customer-{i:05}")).collect();
    let dead: Vec<DeadLetter> = ids
        .iter()
        .map(|id| letter(id, "timeout", "2024-05-01T10:00:00Z"))
        .collect();

    add(store, &dead).await;
    assert_eq!(letter_ids(store).await, ids, "every letter, in order");

    let claimed = ok("claim", store.claim(&ids, "big", LONG).await);
    assert!(claimed.busy.is_empty());
    let deliveries: Vec<(&str, i64, Fingerprint)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), 1, fingerprint(i as u128)))
        .collect();
    record(store, &deliveries).await;
    assert!(
        letters(store).await.is_empty(),
        "every delivery cleared its letter"
    );
    settle(
        store,
        Settlement {
            release: &ids,
            holder: "big",
            ..Settlement::default()
        },
    )
    .await;
    let reclaimed = ok("claim", store.claim(&ids, "other", LONG).await);
    assert!(reclaimed.busy.is_empty(), "every claim released");
    assert_eq!(reclaimed.delivered.len(), COUNT);

    let mut asked = ids.clone();
    asked.extend((0..300).map(|i| format!("unknown-{i}")));
    let answer = found(store, &asked).await;
    assert_eq!(answer.len(), COUNT, "every delivered id, no unknown one");
    for (id, _, fingerprint) in &deliveries {
        assert_eq!(
            answer.get(*id).map(|r| r.fingerprint),
            Some(*fingerprint),
            "{id}"
        );
    }

    add(store, &dead).await;
    ok("remove_dead_letters", store.remove_dead_letters(&ids).await);
    assert!(letters(store).await.is_empty(), "every letter removed");
}

/// Writers on several tasks at once lose nothing: each claims its own customers,
/// records them and adds dead letters, and every one of them is there afterwards.
pub async fn concurrent_writers_lose_nothing(store: Arc<dyn SyncStateStore>) {
    const WRITERS: usize = 8;
    const PAGES: usize = 4;
    const PAGE: usize = 25;
    const LETTERS: usize = 5;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let store = &*store;
                let holder = format!("writer-{w}");
                for page in 0..PAGES {
                    let ids: Vec<String> = (0..PAGE)
                        .map(|i| format!("w{w}-c{:03}", page * PAGE + i))
                        .collect();
                    let claimed = ok("claim", store.claim(&ids, &holder, LONG).await);
                    assert!(claimed.busy.is_empty() && claimed.delivered.is_empty());
                    let deliveries: Vec<(&str, i64, Fingerprint)> = ids
                        .iter()
                        .map(|id| (id.as_str(), 1, fingerprint(w as u128)))
                        .collect();
                    record(store, &deliveries).await;
                    settle(
                        store,
                        Settlement {
                            release: &ids,
                            holder: &holder,
                            ..Settlement::default()
                        },
                    )
                    .await;
                }
                let dead: Vec<DeadLetter> = (0..LETTERS)
                    .map(|i| letter(&format!("w{w}-d{i}"), "timeout", "2024-05-01T10:00:00Z"))
                    .collect();
                add(store, &dead).await;
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .unwrap_or_else(|e| panic!("a writer failed: {e}"));
    }

    let store = &*store;
    let all: Vec<String> = (0..WRITERS)
        .flat_map(|w| (0..PAGES * PAGE).map(move |i| format!("w{w}-c{i:03}")))
        .collect();
    let answer = found(store, &all).await;
    assert_eq!(
        answer.len(),
        WRITERS * PAGES * PAGE,
        "every delivery of every writer"
    );
    for (id, record) in &answer {
        let writer: u128 = id[1..id.find('-').expect("w<n>-")]
            .parse()
            .expect("a writer number");
        assert_eq!(record.fingerprint, fingerprint(writer), "{id}");
    }
    let held = letters(store).await;
    assert_eq!(
        held.len(),
        WRITERS * LETTERS,
        "every dead letter of every writer"
    );
    assert!(
        held.iter().all(|l| l.attempts == 1),
        "no letter counted twice"
    );
}

/// Dead letters are read a page at a time after a cursor, oldest first; a letter
/// recorded again while the pages are read moves after the cursor, and the count
/// says how many are held.
pub async fn dead_letters_are_read_a_page_at_a_time(store: &dyn SyncStateStore) {
    let ids = ["a", "b", "c", "d", "e"];
    for (i, id) in ids.iter().enumerate() {
        add(
            store,
            &[letter(id, "timeout", &format!("2024-05-01T10:00:0{i}Z"))],
        )
        .await;
    }
    assert_eq!(ok("dead_letter_count", store.dead_letter_count().await), 5);

    let first = ok(
        "dead_letters_after",
        store.dead_letters_after(None, 2).await,
    );
    let ids_of = |page: &[segment_sync_ports::StoredDeadLetter]| -> Vec<String> {
        page.iter().map(|s| s.letter.customer_id.clone()).collect()
    };
    assert_eq!(ids_of(&first), ["a", "b"]);
    assert!(
        first[0].cursor < first[1].cursor,
        "cursors grow along the list"
    );

    add(store, &[letter("a", "503", "2024-05-01T10:00:09Z")]).await;
    let second = ok(
        "dead_letters_after",
        store.dead_letters_after(Some(first[1].cursor), 2).await,
    );
    assert_eq!(ids_of(&second), ["c", "d"]);
    let third = ok(
        "dead_letters_after",
        store.dead_letters_after(Some(second[1].cursor), 2).await,
    );
    assert_eq!(ids_of(&third), ["e", "a"], "a, recorded again, comes last");
    let end = ok(
        "dead_letters_after",
        store.dead_letters_after(Some(third[1].cursor), 2).await,
    );
    assert!(end.is_empty(), "nothing after the last letter");
    assert_eq!(ok("dead_letter_count", store.dead_letter_count().await), 5);
}

/// Purging removes exactly the dead letters last recorded before an instant,
/// comparing instants whatever offset or precision each was written with, and
/// says how many.
pub async fn purging_removes_dead_letters_recorded_before_the_instant(store: &dyn SyncStateStore) {
    add(
        store,
        &[
            letter("old", "timeout", "2024-04-01T10:00:00Z"),
            letter("offset", "timeout", "2024-05-02T01:00:00+02:00"),
            letter("fraction", "timeout", "2024-05-01T23:59:59.999Z"),
            letter("at", "timeout", "2024-05-02T00:00:00Z"),
            letter("new", "timeout", "2024-05-03T10:00:00.5Z"),
        ],
    )
    .await;

    let purged = ok(
        "purge_dead_letters",
        store
            .purge_dead_letters(datetime!(2024-05-02 00:00:00 UTC))
            .await,
    );

    assert_eq!(purged, 3);
    assert_eq!(letter_ids(store).await, ["at", "new"]);
}

fn forgotten(
    customer_ids: &[&str],
    user_ids: &[&str],
    dead_letters: u64,
    queued: u64,
) -> Forgotten {
    Forgotten {
        customer_ids: customer_ids.iter().map(|s| s.to_string()).collect(),
        user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
        dead_letters,
        queued,
    }
}

const SUPPRESS: &str = "SUPPRESS_WITH_DELETE";

async fn queued(store: &dyn SyncStateStore) -> Vec<(String, String)> {
    ok("queued_deletions", store.queued_deletions(100).await)
        .into_iter()
        .map(|d| (d.subject, d.regulation_type))
        .collect()
}

fn queued_as(user_ids: &[&str]) -> Vec<(String, String)> {
    user_ids
        .iter()
        .map(|u| (u.to_string(), SUPPRESS.to_owned()))
        .collect()
}

/// Forgetting a customer by id erases its delivery and dead letters (no one
/// else's) and, with a regulation type, queues its `userId` in the same step.
pub async fn forgetting_a_customer_erases_it_and_queues_its_user_id(store: &dyn SyncStateStore) {
    record(store, &[("a", 1, fingerprint(1)), ("b", 1, fingerprint(2))]).await;
    add(
        store,
        &[
            letter("a", "timeout", "2024-05-01T10:00:00Z"),
            letter("b", "timeout", "2024-05-01T10:00:00Z"),
            letter("never-sent", "timeout", "2024-05-01T10:00:00Z"),
        ],
    )
    .await;
    let at = datetime!(2024-05-05 10:00:00 UTC);

    let answer = ok(
        "forget",
        store
            .forget(
                &[
                    Whom::CustomerId("a".to_owned()),
                    Whom::CustomerId("never-sent".to_owned()),
                ],
                Some(SUPPRESS),
                at,
            )
            .await,
    );

    assert_eq!(
        answer,
        [
            forgotten(&["a"], &["a@example.com"], 1, 1),
            forgotten(&["never-sent"], &[], 1, 0),
        ],
        "a customer never delivered has no userId to regulate"
    );
    assert_eq!(found(store, &strings(["a", "b"])).await.len(), 1);
    assert!(found(store, &strings(["b"])).await.contains_key("b"));
    assert_eq!(letter_ids(store).await, ["b"]);
    let queue = ok("queued_deletions", store.queued_deletions(10).await);
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].subject, "a@example.com");
    assert_eq!(queue[0].regulation_type, SUPPRESS);
    assert_eq!(queue[0].requested_at, at);
    assert!(queue[0].is_queued() && queue[0].regulation_id.is_none() && queue[0].status.is_none());
}

/// Forgetting a `userId` erases every customer last delivered under it, their
/// dead letters, and dead letters whose payload names it; it is queued once.
pub async fn forgetting_a_user_id_erases_every_customer_delivered_under_it(
    store: &dyn SyncStateStore,
) {
    let shared = "shared@example.com";
    let delivered = [
        Delivered {
            customer_id: "a",
            version: 1,
            fingerprint: fingerprint(1),
            user_id: shared,
        },
        Delivered {
            customer_id: "b",
            version: 1,
            fingerprint: fingerprint(2),
            user_id: shared,
        },
    ];
    settle(
        store,
        Settlement {
            delivered: &delivered,
            holder: "contract",
            ..Settlement::default()
        },
    )
    .await;
    record(store, &[("c", 1, fingerprint(3))]).await;
    let rejected_only = DeadLetter {
        payload: Some(format!(r#"{{"type":"identify","userId":"{shared}"}}"#)),
        ..letter("d", "400", "2024-05-01T10:00:00Z")
    };
    add(
        store,
        &[
            letter("a", "timeout", "2024-05-01T10:00:00Z"),
            rejected_only,
            letter("c", "timeout", "2024-05-01T10:00:00Z"),
        ],
    )
    .await;

    let answer = ok(
        "forget",
        store
            .forget(
                &[Whom::UserId(shared.to_owned())],
                Some(SUPPRESS),
                datetime!(2024-05-05 10:00:00 UTC),
            )
            .await,
    );

    assert_eq!(answer.len(), 1);
    let mut customers = answer[0].customer_ids.clone();
    customers.sort();
    assert_eq!(customers, ["a", "b", "d"]);
    assert_eq!(answer[0].user_ids, [shared]);
    assert_eq!((answer[0].dead_letters, answer[0].queued), (2, 1));
    assert_eq!(
        found(store, &strings(["a", "b", "c"])).await.len(),
        1,
        "c stays"
    );
    assert_eq!(letter_ids(store).await, ["c"]);
    assert_eq!(queued(store).await, queued_as(&[shared]));
}

/// Forgetting what the state does not know answers empty and queues nothing;
/// without a regulation type nothing is queued either.
pub async fn forgetting_the_unknown_changes_nothing(store: &dyn SyncStateStore) {
    record(store, &[("a", 1, fingerprint(1))]).await;
    let at = datetime!(2024-05-05 10:00:00 UTC);

    let answer = ok(
        "forget",
        store
            .forget(
                &[
                    Whom::CustomerId("unknown".to_owned()),
                    Whom::UserId("nobody@example.com".to_owned()),
                ],
                Some(SUPPRESS),
                at,
            )
            .await,
    );
    assert!(answer.iter().all(Forgotten::is_empty), "{answer:?}");
    assert_eq!(answer.len(), 2);

    let answer = ok(
        "forget",
        store
            .forget(&[Whom::CustomerId("a".to_owned())], None, at)
            .await,
    );
    assert_eq!(answer, [forgotten(&["a"], &["a@example.com"], 0, 0)]);
    assert!(found(store, &strings(["a"])).await.is_empty());
    assert!(queued(store).await.is_empty(), "no regulation asked");
    assert!(ok("forget", store.forget(&[], Some(SUPPRESS), at).await).is_empty());
}

/// A `userId` is queued once for a type while it waits; once sent, a new
/// deletion of it is queued again.
pub async fn a_user_id_is_queued_once_until_sent(store: &dyn SyncStateStore) {
    let at = datetime!(2024-05-05 10:00:00 UTC);
    let forget_a = || async {
        record(store, &[("a", 1, fingerprint(1))]).await;
        ok(
            "forget",
            store
                .forget(&[Whom::CustomerId("a".to_owned())], Some(SUPPRESS), at)
                .await,
        )[0]
        .queued
    };
    assert_eq!(forget_a().await, 1);
    assert_eq!(forget_a().await, 0, "already queued");
    let queue = ok("queued_deletions", store.queued_deletions(10).await);
    ok(
        "deletions_sent",
        store
            .deletions_sent(DeletionsSent {
                ids: &[queue[0].id],
                regulation_id: Some("reg-1"),
                status: "INITIALIZED",
                at,
            })
            .await,
    );
    assert_eq!(forget_a().await, 1, "the earlier one was sent");
    assert_eq!(queued(store).await, queued_as(&["a@example.com"]));
}

async fn queue_deletions(
    store: &dyn SyncStateStore,
    ids: &[&str],
    at: OffsetDateTime,
) -> Vec<DeletionRecord> {
    let deliveries: Vec<(&str, i64, Fingerprint)> =
        ids.iter().map(|id| (*id, 1, fingerprint(1))).collect();
    record(store, &deliveries).await;
    let subjects: Vec<Whom> = ids
        .iter()
        .map(|id| Whom::CustomerId(id.to_string()))
        .collect();
    ok("forget", store.forget(&subjects, Some(SUPPRESS), at).await);
    ok("queued_deletions", store.queued_deletions(100).await)
}

/// Queued deletions are read oldest first up to a limit; once sent (accepted
/// with a regulation id, or refused) they leave the queue; only accepted ones
/// count as regulated from when they were sent; a status update reaches every
/// deletion of that regulation.
pub async fn sent_deletions_leave_the_queue_and_count_in_the_month(store: &dyn SyncStateStore) {
    let may = datetime!(2024-05-31 23:00:00 UTC);
    let queue = queue_deletions(store, &["a", "b", "c", "d"], may).await;
    let subjects: Vec<&str> = queue.iter().map(|d| d.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com"
        ]
    );
    let two = ok("queued_deletions", store.queued_deletions(2).await);
    assert_eq!(two, queue[..2], "oldest first, up to the limit");

    let june = datetime!(2024-06-01 00:00:00 UTC);
    let sent = |ids: Vec<i64>, regulation_id: Option<&'static str>, status: &'static str, at| async move {
        ok(
            "deletions_sent",
            store
                .deletions_sent(DeletionsSent {
                    ids: &ids,
                    regulation_id,
                    status,
                    at,
                })
                .await,
        )
    };
    sent(vec![queue[0].id], Some("reg-may"), "INITIALIZED", may).await;
    sent(
        vec![queue[1].id, queue[2].id],
        Some("reg-june"),
        "INITIALIZED",
        june,
    )
    .await;
    sent(vec![queue[3].id], None, "refused: invalid subject", june).await;

    assert!(queued(store).await.is_empty(), "every deletion was sent");
    assert_eq!(ok("regulated_since", store.regulated_since(june).await), 2);
    assert_eq!(ok("regulated_since", store.regulated_since(may).await), 3);

    ok(
        "set_regulation_status",
        store.set_regulation_status("reg-june", "FINISHED").await,
    );
    let all = ok("deletions_after", store.deletions_after(None, 10).await);
    let statuses: Vec<(Option<&str>, Option<&str>)> = all
        .iter()
        .map(|d| (d.regulation_id.as_deref(), d.status.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        [
            (Some("reg-may"), Some("INITIALIZED")),
            (Some("reg-june"), Some("FINISHED")),
            (Some("reg-june"), Some("FINISHED")),
            (None, Some("refused: invalid subject")),
        ]
    );
    assert_eq!(all[1].sent_at, Some(june));

    sent(vec![queue[0].id], Some("reg-again"), "INITIALIZED", june).await;
    let first = &ok("deletions_after", store.deletions_after(None, 1).await)[0];
    assert_eq!(
        first.regulation_id.as_deref(),
        Some("reg-may"),
        "a deletion is sent once"
    );
}

/// Deletions are listed in id order, a page at a time after an id.
pub async fn deletions_are_listed_in_id_order_a_page_at_a_time(store: &dyn SyncStateStore) {
    let queue = queue_deletions(store, &["a", "b", "c"], datetime!(2024-05-05 10:00:00 UTC)).await;
    let first = ok("deletions_after", store.deletions_after(None, 2).await);
    assert_eq!(first, queue[..2]);
    let rest = ok(
        "deletions_after",
        store.deletions_after(Some(first[1].id), 2).await,
    );
    assert_eq!(rest, queue[2..]);
    assert!(ok(
        "deletions_after",
        store.deletions_after(Some(rest[0].id), 2).await
    )
    .is_empty());
}

/// Imported deletions keep everything but their ids, and queued ones stay
/// queued.
pub async fn imported_deletions_keep_what_they_recorded(store: &dyn SyncStateStore) {
    let requested_at = datetime!(2024-05-05 10:00:00 UTC);
    let imported = [
        DeletionRecord {
            id: 41,
            subject: "a@example.com".to_owned(),
            regulation_type: SUPPRESS.to_owned(),
            requested_at,
            regulation_id: Some("reg-1".to_owned()),
            sent_at: Some(datetime!(2024-05-05 10:00:03.25 UTC)),
            status: Some("FINISHED".to_owned()),
        },
        DeletionRecord {
            id: 42,
            subject: "b@example.com".to_owned(),
            regulation_type: "DELETE_ONLY".to_owned(),
            requested_at,
            regulation_id: None,
            sent_at: None,
            status: None,
        },
    ];
    ok("import_deletions", store.import_deletions(&imported).await);
    ok("import_deletions", store.import_deletions(&[]).await);

    let held = ok("deletions_after", store.deletions_after(None, 10).await);
    assert_eq!(held.len(), 2);
    for (held, imported) in held.iter().zip(&imported) {
        assert_eq!(
            DeletionRecord {
                id: imported.id,
                ..held.clone()
            },
            *imported
        );
    }
    let queue = ok("queued_deletions", store.queued_deletions(10).await);
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].subject, "b@example.com");
}
