//! The SQLite state store against real files in temporary directories: what is
//! particular to SQLite (reopening, several handles on one file, errors that name
//! the path, speed). The port's rules are checked by the contract suite
//! (`tests/contracts/sqlite_state.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind, RunCounts, RunStatus};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{Delivered, RunStart, SelfCheck, Settlement, StateError, SyncStateStore};
use tempfile::TempDir;
use time::macros::datetime;
use time::OffsetDateTime;

struct TestDb {
    _dir: TempDir,
    path: PathBuf,
}

impl TestDb {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        Self { _dir: dir, path }
    }

    fn open(&self) -> SqliteStateStore {
        SqliteStateStore::open(&self.path).expect("open state store")
    }
}

/// A distinct, valid fingerprint per number.
fn fingerprint(n: u128) -> Fingerprint {
    Fingerprint::from_hex(&format!("{n:032x}")).expect("valid hex")
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("customer-{i}")).collect()
}

async fn record(store: &SqliteStateStore, entries: &[(String, Fingerprint)]) {
    let delivered: Vec<Delivered<'_>> = entries
        .iter()
        .map(|(id, fp)| Delivered {
            customer_id: id,
            version: 1,
            fingerprint: *fp,
            user_id: id,
        })
        .collect();
    store
        .settle(Settlement {
            delivered: &delivered,
            holder: "test",
            ..Settlement::default()
        })
        .await
        .expect("record");
}

fn start(kind: &str, started_at: OffsetDateTime) -> RunStart {
    RunStart {
        kind: kind.to_owned(),
        started_at,
        source: Some("api".to_owned()),
        holder: "pid 7 on test-host".to_owned(),
    }
}

fn letter(customer_id: &str, reason: &str, recorded_at: &str) -> DeadLetter {
    DeadLetter {
        customer_id: customer_id.to_owned(),
        kind: DeadLetterKind::Failed,
        code: "segment_unreachable".to_owned(),
        reason: reason.to_owned(),
        payload: Some(format!(
            r#"{{"userId":"{customer_id}","reason":"{reason}"}}"#
        )),
        fingerprint: Some(fingerprint(7).to_hex()),
        version: Some(1),
        attempts: 1,
        recorded_at: recorded_at.to_owned(),
    }
}

fn open_error_of(path: &Path) -> (String, String) {
    match SqliteStateStore::open(path) {
        Err(StateError::Open { path, reason }) => (path, reason),
        other => panic!("expected an Open error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_high_water_mark_is_absent_then_kept_across_reopen() {
    let db = TestDb::new();
    let at = datetime!(2024-05-01 10:00:00.123_456_789 +02:00);
    {
        let store = db.open();
        assert_eq!(store.high_water_mark().await.unwrap(), None);
        store.set_high_water_mark(at).await.unwrap();
        assert_eq!(store.high_water_mark().await.unwrap(), Some(at));
    }

    let reopened = db.open();
    assert_eq!(reopened.high_water_mark().await.unwrap(), Some(at));

    let later = datetime!(2024-06-01 00:00:00 UTC);
    reopened.set_high_water_mark(later).await.unwrap();
    assert_eq!(reopened.high_water_mark().await.unwrap(), Some(later));
}

#[tokio::test]
async fn runs_survive_reopen_and_a_killed_one_is_abandoned_by_the_next() {
    let db = TestDb::new();
    let counts = RunCounts {
        read: 10,
        sent: 5,
        unchanged: 2,
        skipped: 1,
        rejected: 1,
        failed: 1,
    };
    let (first, killed) = {
        let store = db.open();
        let lease = store
            .begin_run(start("sync", datetime!(2024-05-01 10:00:00 UTC)))
            .await
            .unwrap();
        let first = lease.id();
        store
            .finish_run(first, RunStatus::CompletedWithErrors, counts, None)
            .await
            .unwrap();
        drop(lease);
        // Never finished, as when the process is killed: the lease goes with it.
        let killed = store
            .begin_run(start("sync", datetime!(2024-05-03 10:00:00 UTC)))
            .await
            .unwrap()
            .id();
        (first, killed)
    };

    let reopened = db.open();
    let runs = reopened.runs(10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        [killed, first]
    );
    assert_eq!(
        runs[0].status,
        RunStatus::Running,
        "until the next run looks"
    );
    assert_eq!(runs[1].counts, counts);
    assert_eq!(runs[1].source.as_deref(), Some("api"));
    assert_eq!(runs[1].holder.as_deref(), Some("pid 7 on test-host"));

    let next = reopened
        .begin_run(start("replay", datetime!(2024-05-04 10:00:00 UTC)))
        .await
        .unwrap();
    let runs = reopened.runs(10).await.unwrap();
    assert_eq!(runs[0].id, next.id());
    assert_eq!(runs[1].id, killed);
    assert_eq!(runs[1].status, RunStatus::Abandoned);
    let finished = runs[1].finished_at.as_deref().expect("abandoned runs end");
    assert!(
        OffsetDateTime::parse(finished, &time::format_description::well_known::Rfc3339).is_ok()
    );
}

#[tokio::test]
async fn two_handles_on_one_file_hold_one_run_lease_between_them() {
    let db = TestDb::new();
    let (one, two) = (db.open(), db.open());

    let held = one
        .begin_run(start("sync", datetime!(2024-05-01 10:00:00 UTC)))
        .await
        .unwrap();
    let refused = two
        .begin_run(start("sync", datetime!(2024-05-01 10:01:00 UTC)))
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "another sync is running (run #{}, started 2024-05-01T10:00:00Z, pid 7 on test-host)",
            held.id()
        )
    );
    assert!(
        db.path.with_extension("db.lock").exists(),
        "the lock lives beside the database"
    );

    drop(held);
    assert!(two
        .begin_run(start("sync", datetime!(2024-05-01 10:02:00 UTC)))
        .await
        .is_ok());
}

#[tokio::test]
async fn finishing_an_unknown_run_is_an_error() {
    let db = TestDb::new();
    let store = db.open();

    let err = store
        .finish_run(42, RunStatus::Succeeded, RunCounts::default(), None)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, StateError::Storage(m) if m.contains("no run with id 42")),
        "{err}"
    );
}

#[test]
fn opening_in_a_missing_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("state.db");

    let (shown, reason) = open_error_of(&path);

    assert_eq!(shown, path.display().to_string());
    assert!(reason.contains("does not exist"), "{reason}");
}

#[test]
fn opening_a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are notes, not a database\n".repeat(200)).unwrap();

    let (shown, reason) = open_error_of(&path);

    assert_eq!(shown, path.display().to_string());
    assert!(reason.contains("not a SQLite database"), "{reason}");
}

#[test]
fn opening_a_database_from_a_newer_version_is_refused_clearly() {
    let db = TestDb::new();
    drop(db.open());
    let raw = rusqlite::Connection::open(&db.path).unwrap();
    raw.pragma_update(None, "user_version", 99).unwrap();
    drop(raw);

    let (shown, reason) = open_error_of(&db.path);

    assert_eq!(shown, db.path.display().to_string());
    assert!(reason.contains("schema version 99"), "{reason}");
    assert!(reason.contains("newer segment-sync"), "{reason}");
}

#[tokio::test]
async fn two_handles_on_one_file_see_each_others_writes() {
    let db = TestDb::new();
    let one = db.open();
    let two = db.open();

    record(&one, &[("a".to_owned(), fingerprint(1))]).await;
    two.add_dead_letters(&[letter("b", "timeout", "2024-05-01T10:00:00Z")])
        .await
        .unwrap();
    let run = two
        .begin_run(start("sync", datetime!(2024-05-01 10:00:00 UTC)))
        .await
        .unwrap();

    let seen_by_two = two.delivered(&["a".to_owned()]).await.unwrap();
    assert_eq!(
        seen_by_two.get("a").map(|r| r.fingerprint),
        Some(fingerprint(1))
    );
    assert_eq!(one.dead_letters().await.unwrap().len(), 1);
    assert_eq!(one.runs(5).await.unwrap()[0].id, run.id());

    // A delivery through one clears the letter written by the other.
    record(&one, &[("b".to_owned(), fingerprint(2))]).await;
    assert!(two.dead_letters().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_writing_at_once_both_succeed() {
    let db = TestDb::new();
    let writers = [("one", db.open()), ("two", db.open())].map(|(name, store)| {
        tokio::spawn(async move {
            for page in 0..20 {
                let entries: Vec<(String, Fingerprint)> = ids(page * 100..(page + 1) * 100)
                    .into_iter()
                    .map(|id| (format!("{name}-{id}"), fingerprint(page as u128)))
                    .collect();
                record(&store, &entries).await;
            }
            name
        })
    });
    let mut names = Vec::new();
    for writer in writers {
        names.push(writer.await.expect("writer task"));
    }

    let store = db.open();
    for name in names {
        let wanted: Vec<String> = ids(0..2_000)
            .iter()
            .map(|id| format!("{name}-{id}"))
            .collect();
        assert_eq!(store.delivered(&wanted).await.unwrap().len(), 2_000);
    }
}

#[tokio::test]
async fn self_check_writes_and_rolls_back() {
    let db = TestDb::new();

    let lines = db.open().self_check().await;

    assert_eq!(lines.len(), 1);
    assert!(lines[0].passed(), "{}", lines[0]);
    assert!(lines[0].what.contains(&db.path.display().to_string()));
    let raw = rusqlite::Connection::open(&db.path).unwrap();
    let rows: i64 = raw
        .query_row("SELECT COUNT(*) FROM meta", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 0, "the check's write was rolled back");
}

#[test]
fn opening_fails_naming_the_path_when_it_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    // Both hold as root, where permission bits would not stop a write.
    for path in [
        dir.path().join("no-such-dir").join("state.db"),
        dir.path().to_path_buf(),
    ] {
        let err = SqliteStateStore::open(&path).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StateError::Open { .. }), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
}

#[tokio::test]
async fn pages_of_deliveries_are_recorded_and_looked_up_quickly() {
    const CUSTOMERS: usize = 50_000;
    const PAGE: usize = 500;
    let db = TestDb::new();
    let store = db.open();
    let all = ids(0..CUSTOMERS);

    let started = Instant::now();
    for (page_no, page) in all.chunks(PAGE).enumerate() {
        let known = store
            .claim(page, "bench", std::time::Duration::from_secs(60))
            .await
            .unwrap()
            .delivered;
        assert!(known.is_empty());
        let entries: Vec<(String, Fingerprint)> = page
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), fingerprint((page_no * PAGE + i) as u128)))
            .collect();
        record(&store, &entries).await;
    }
    let first_pass = started.elapsed();

    let started = Instant::now();
    let mut found = 0;
    for page in all.chunks(PAGE) {
        found += store.delivered(page).await.unwrap().len();
    }
    let lookups = started.elapsed();

    assert_eq!(found, CUSTOMERS);
    println!(
        "{CUSTOMERS} customers in pages of {PAGE}: lookup+record {:.0}/s, lookup only {:.0}/s",
        CUSTOMERS as f64 / first_pass.as_secs_f64(),
        CUSTOMERS as f64 / lookups.as_secs_f64(),
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_and_its_wal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new();
    let store = db.open();
    record(&store, &[("customer-1".to_owned(), fingerprint(1))]).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db.path), 0o600);
    let wal = db.path.with_file_name("state.db-wal");
    let shm = db.path.with_file_name("state.db-shm");
    assert!(wal.exists(), "the store writes ahead");
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
}

#[cfg(unix)]
#[test]
fn an_existing_database_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new();
    drop(db.open());
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    drop(db.open());
    let mode = std::fs::metadata(&db.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the owner's choice stands; a warning names it");
}
