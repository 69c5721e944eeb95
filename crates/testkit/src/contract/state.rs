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

use segment_sync_domain::sync::{DeadLetter, DeadLetterKind, RunCounts, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{Delivered, StateError, SyncStateStore};
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
                a_second_delivery_replaces_the_fingerprint,
                a_delivery_clears_that_customers_dead_letter,
                a_dead_letter_added_again_replaces_it_and_counts_an_attempt,
                dead_letters_are_listed_oldest_first_by_when_last_recorded,
                removing_dead_letters_removes_only_those,
                dead_letters_keep_every_field,
                the_high_water_mark_round_trips,
                runs_are_listed_newest_first_up_to_the_limit,
                a_run_records_what_it_did,
                finishing_an_unknown_run_is_an_error,
                empty_inputs_change_nothing,
                more_than_500_ids_in_one_call,
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

async fn record(store: &dyn SyncStateStore, deliveries: &[(&str, Fingerprint)]) {
    let delivered: Vec<Delivered<'_>> = deliveries
        .iter()
        .map(|(customer_id, fingerprint)| Delivered {
            customer_id,
            fingerprint: *fingerprint,
        })
        .collect();
    ok("record_delivered", store.record_delivered(&delivered).await);
}

async fn found(store: &dyn SyncStateStore, ids: &[String]) -> HashMap<String, Fingerprint> {
    ok(
        "delivered_fingerprints",
        store.delivered_fingerprints(ids).await,
    )
}

/// A failed delivery's dead letter, as the pipeline writes it.
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

/// Deliveries are found again by customer id; ids never delivered are absent, and
/// only ids asked for are answered.
pub async fn deliveries_round_trip(store: &dyn SyncStateStore) {
    record(store, &[("a", fingerprint(1)), ("b", fingerprint(2))]).await;
    record(store, &[("c", fingerprint(3))]).await;

    let answer = found(store, &strings(["a", "b", "never-delivered"])).await;

    let expected = HashMap::from([
        ("a".to_owned(), fingerprint(1)),
        ("b".to_owned(), fingerprint(2)),
    ]);
    assert_eq!(
        answer, expected,
        "the fingerprints of a and b, and nothing else"
    );
}

/// A later delivery of the same customer replaces its fingerprint.
pub async fn a_second_delivery_replaces_the_fingerprint(store: &dyn SyncStateStore) {
    record(store, &[("a", fingerprint(1)), ("b", fingerprint(2))]).await;
    record(store, &[("a", fingerprint(99))]).await;

    let answer = found(store, &strings(["a", "b"])).await;

    assert_eq!(
        answer.get("a"),
        Some(&fingerprint(99)),
        "a's latest fingerprint"
    );
    assert_eq!(answer.get("b"), Some(&fingerprint(2)), "b untouched");
    assert_eq!(answer.len(), 2);
}

/// Recording a delivery clears that customer's dead letter, and no other.
pub async fn a_delivery_clears_that_customers_dead_letter(store: &dyn SyncStateStore) {
    add(
        store,
        &[
            letter("a", "timeout", "2024-05-01T10:00:00Z"),
            letter("b", "timeout", "2024-05-01T10:00:01Z"),
        ],
    )
    .await;

    record(
        store,
        &[("a", fingerprint(1)), ("never-dead", fingerprint(2))],
    )
    .await;

    assert_eq!(
        letter_ids(store).await,
        ["b"],
        "a's letter cleared, b's kept"
    );
    assert_eq!(
        found(store, &strings(["a"])).await.get("a"),
        Some(&fingerprint(1)),
        "the delivery itself is recorded"
    );
}

/// A dead letter added for a customer who already has one replaces it, and its
/// attempts are the held attempts plus one, whatever the new copy carries (as
/// when a listed letter is replayed and fails again).
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
    record(store, &[("x", fingerprint(5))]).await;
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
        Some(&fingerprint(5)),
        "removing x's letter keeps x's delivery"
    );
}

/// A dead letter is listed exactly as it was added: kind, code, reason (any
/// text), payload and fingerprint (present or absent) and `recorded_at` as given.
pub async fn dead_letters_keep_every_field(store: &dyn SyncStateStore) {
    let failed = DeadLetter {
        reason: "Max retries exceeded — 503 «Service Unavailable» 'quoted' \"twice\"".to_owned(),
        payload: Some(
            r#"{"type":"identify","userId":"zoë@example.com","traits":{"note":"a\nb"}}"#.to_owned(),
        ),
        ..letter("customer/with spaces", "", "2024-05-01T12:00:00.123+02:00")
    };
    let rejected = DeadLetter {
        customer_id: "line 12".to_owned(),
        kind: DeadLetterKind::Rejected,
        code: "invalid_payload".to_owned(),
        reason: "Invalid payload".to_owned(),
        payload: None,
        fingerprint: None,
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

/// Runs get increasing ids and are listed newest first, at most `limit` of them.
pub async fn runs_are_listed_newest_first_up_to_the_limit(store: &dyn SyncStateStore) {
    let mut started = Vec::new();
    for (kind, at) in [
        ("sync", datetime!(2024-05-01 10:00 UTC)),
        ("replay", datetime!(2024-05-02 10:00 UTC)),
        ("sync", datetime!(2024-05-03 10:00 UTC)),
    ] {
        started.push(ok("start_run", store.start_run(kind, at).await));
    }
    assert!(
        started.windows(2).all(|pair| pair[0] < pair[1]),
        "run ids increase: {started:?}"
    );

    let listed = |runs: Vec<segment_sync_domain::sync::RunRecord>| -> Vec<i64> {
        runs.into_iter().map(|run| run.id).collect()
    };
    let newest_first: Vec<i64> = started.iter().rev().copied().collect();
    assert_eq!(listed(ok("runs", store.runs(10).await)), newest_first);
    assert_eq!(listed(ok("runs", store.runs(2).await)), newest_first[..2]);
    assert_eq!(listed(ok("runs", store.runs(0).await)), Vec::<i64>::new());
}

/// A started run is listed as running with its kind and start; once finished it
/// holds its status, counts, error and an RFC 3339 end.
pub async fn a_run_records_what_it_did(store: &dyn SyncStateStore) {
    let started_at = datetime!(2024-05-01 12:00:00 +02:00);
    let id = ok("start_run", store.start_run("sync", started_at).await);

    let running = ok("runs", store.runs(1).await);
    assert_eq!(running.len(), 1);
    let run = &running[0];
    assert_eq!(run.id, id);
    assert_eq!(run.kind, "sync");
    assert_eq!(parse_time("started_at", &run.started_at), started_at);
    assert_eq!(run.status, RunStatus::Running);
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
    let aborted = ok(
        "start_run",
        store
            .start_run("replay", datetime!(2024-05-02 10:00 UTC))
            .await,
    );
    ok(
        "finish_run",
        store
            .finish_run(
                aborted,
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
    assert_eq!(first.kind, "sync");
    assert_eq!(first.status, RunStatus::CompletedWithErrors);
    assert_eq!(first.counts, counts);
    assert_eq!(first.error, None);
    assert_eq!(parse_time("started_at", &first.started_at), started_at);
    let finished = first
        .finished_at
        .as_deref()
        .expect("a finished run has an end");
    parse_time("finished_at", finished);
    assert_eq!(second.id, aborted);
    assert_eq!(second.kind, "replay");
    assert_eq!(second.status, RunStatus::Aborted);
    assert_eq!(second.error.as_deref(), Some("Invalid write key"));
    assert!(second.finished_at.is_some());
}

/// Finishing a run that was never started is an error, and changes no run.
pub async fn finishing_an_unknown_run_is_an_error(store: &dyn SyncStateStore) {
    let finish = |id| store.finish_run(id, RunStatus::Succeeded, RunCounts::default(), None);
    assert!(finish(42).await.is_err(), "no run 42 in an empty store");

    let id = ok(
        "start_run",
        store
            .start_run("sync", datetime!(2024-05-01 10:00 UTC))
            .await,
    );
    for unknown in [id + 1, id + 1_000, -1] {
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

    record(store, &[("x", fingerprint(1))]).await;
    add(store, &[letter("a", "timeout", "2024-05-01T10:00:00Z")]).await;

    assert!(
        found(store, &[]).await.is_empty(),
        "no ids, no fingerprints"
    );
    record(store, &[]).await;
    add(store, &[]).await;
    ok("remove_dead_letters", store.remove_dead_letters(&[]).await);

    assert_eq!(letter_ids(store).await, ["a"]);
    assert_eq!(letters(store).await[0].attempts, 1);
    assert_eq!(found(store, &strings(["x"])).await.len(), 1);
}

/// More than 500 ids in one call (one commercetools page and more) are all
/// recorded, looked up, cleared and removed.
pub async fn more_than_500_ids_in_one_call(store: &dyn SyncStateStore) {
    const COUNT: usize = 1_201;
    let ids: Vec<String> = (0..COUNT).map(|i| format!("customer-{i:05}")).collect();
    let dead: Vec<DeadLetter> = ids
        .iter()
        .map(|id| letter(id, "timeout", "2024-05-01T10:00:00Z"))
        .collect();

    add(store, &dead).await;
    assert_eq!(letter_ids(store).await, ids, "every letter, in order");

    let deliveries: Vec<(&str, Fingerprint)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), fingerprint(i as u128)))
        .collect();
    record(store, &deliveries).await;
    assert!(
        letters(store).await.is_empty(),
        "every delivery cleared its letter"
    );

    let mut asked = ids.clone();
    asked.extend((0..300).map(|i| format!("unknown-{i}")));
    let answer = found(store, &asked).await;
    assert_eq!(answer.len(), COUNT, "every delivered id, no unknown one");
    for (id, fingerprint) in &deliveries {
        assert_eq!(answer.get(*id), Some(fingerprint), "{id}");
    }

    add(store, &dead).await;
    ok("remove_dead_letters", store.remove_dead_letters(&ids).await);
    assert!(letters(store).await.is_empty(), "every letter removed");
}

/// Writers on several tasks at once lose nothing: every delivery, dead letter and
/// run of each is there afterwards, and run ids are distinct.
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
                let run = ok(
                    "start_run",
                    store.start_run("sync", OffsetDateTime::now_utc()).await,
                );
                for page in 0..PAGES {
                    let ids: Vec<String> = (0..PAGE)
                        .map(|i| format!("w{w}-c{:03}", page * PAGE + i))
                        .collect();
                    assert!(found(store, &ids).await.is_empty());
                    let deliveries: Vec<(&str, Fingerprint)> = ids
                        .iter()
                        .map(|id| (id.as_str(), fingerprint(w as u128)))
                        .collect();
                    record(store, &deliveries).await;
                }
                let dead: Vec<DeadLetter> = (0..LETTERS)
                    .map(|i| letter(&format!("w{w}-d{i}"), "timeout", "2024-05-01T10:00:00Z"))
                    .collect();
                add(store, &dead).await;
                let counts = RunCounts {
                    read: (PAGES * PAGE + LETTERS) as u64,
                    sent: (PAGES * PAGE) as u64,
                    failed: LETTERS as u64,
                    ..RunCounts::default()
                };
                ok(
                    "finish_run",
                    store
                        .finish_run(run, RunStatus::CompletedWithErrors, counts, None)
                        .await,
                );
                run
            })
        })
        .collect();
    let mut runs = HashSet::new();
    for writer in writers {
        let run = writer
            .await
            .unwrap_or_else(|e| panic!("a writer failed: {e}"));
        assert!(runs.insert(run), "run id {run} given twice");
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
    for (id, fingerprint_found) in &answer {
        let writer: u128 = id[1..id.find('-').expect("w<n>-")]
            .parse()
            .expect("a writer number");
        assert_eq!(*fingerprint_found, fingerprint(writer), "{id}");
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
    let listed = ok("runs", store.runs(100).await);
    assert_eq!(listed.len(), WRITERS);
    assert!(listed
        .iter()
        .all(|run| runs.contains(&run.id) && run.status == RunStatus::CompletedWithErrors));
}
