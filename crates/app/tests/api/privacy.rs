//! Personal data at rest: the state file is private, old dead letters go.

use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind};
use segment_sync_ports::SyncStateStore;

use crate::helpers::*;

/// A failed dead letter of `customer_id` recorded `days` ago.
fn letter(customer_id: &str, days: i64) -> DeadLetter {
    let at = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    DeadLetter {
        customer_id: customer_id.to_owned(),
        kind: DeadLetterKind::Failed,
        code: "server_error".to_owned(),
        reason: "500 Internal Server Error".to_owned(),
        payload: None,
        fingerprint: None,
        version: None,
        attempts: 1,
        recorded_at: at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    }
}

/// Puts dead letters into the app's state behind its back.
async fn add_letters(app: &App, letters: &[DeadLetter]) {
    let store = SqliteStateStore::open(&app.state_path()).unwrap();
    store.add_dead_letters(letters).await.unwrap();
}

/// The customer ids of `dead-letters list --json`.
async fn listed(app: &App) -> Vec<String> {
    let list = app.run(&["dead-letters", "list", "--json"]).await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let letters: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    let mut ids: Vec<String> = letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["customer_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn purge_removes_the_dead_letters_older_than_asked() {
    let app = App::new();
    add_letters(
        &app,
        &[letter("old", 40), letter("week", 7), letter("new", 0)],
    )
    .await;

    let purged = app.run(&["dead-letters", "purge"]).await;
    assert_eq!(purged.status.code(), Some(0), "{}", stderr(&purged));
    assert_eq!(
        stdout(&purged).trim(),
        "removed 1 dead letters recorded more than 30days ago"
    );
    assert_eq!(listed(&app).await, ["new", "week"]);

    let purged = app
        .run(&["dead-letters", "purge", "--older-than", "3d"])
        .await;
    assert_eq!(purged.status.code(), Some(0), "{}", stderr(&purged));
    assert!(stdout(&purged).starts_with("removed 1 dead letters"));
    assert_eq!(listed(&app).await, ["new"]);

    let refused = app
        .run(&["dead-letters", "purge", "--older-than", "soon"])
        .await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("`soon` is not a duration"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn each_sync_removes_dead_letters_older_than_the_retention() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new()
        .with_fakes(&segment, None)
        .env("SEGMENT_SYNC_RETENTION", "10d");
    add_letters(&app, &[letter("older", 11), letter("younger", 9)]).await;
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(3)));

    let run = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(listed(&app).await, ["younger"]);

    let refused = App::new()
        .with_fakes(&segment, None)
        .env("SEGMENT_SYNC_RETENTION", "forever")
        .run(&["sync", "--input", input.to_str().unwrap()])
        .await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("SEGMENT_SYNC_RETENTION")
            && stderr(&refused).contains("`forever` is not a duration"),
        "{}",
        stderr(&refused)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_state_file_and_its_wal_are_private_after_a_run() {
    use std::os::unix::fs::PermissionsExt;
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(3)));
    let input = input.to_str().unwrap();
    let mode = |name: &str| {
        std::fs::metadata(app.dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };

    let first = app.run(&["sync", "--input", input]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(mode("segment-sync.db"), 0o600);

    // A second process holding the state open keeps its write-ahead log in place.
    let holder = SqliteStateStore::open(&app.state_path()).unwrap();
    let again = app.run(&["sync", "--input", input, "--full"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(mode("segment-sync.db-wal"), 0o600);
    assert_eq!(mode("segment-sync.db-shm"), 0o600);
    drop(holder);
}

#[cfg(unix)]
#[tokio::test]
async fn a_state_file_others_can_read_is_named_in_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new();
    drop(SqliteStateStore::open(&app.state_path()).unwrap());
    std::fs::set_permissions(app.state_path(), std::fs::Permissions::from_mode(0o644)).unwrap();

    let runs = app.run(&["runs"]).await;
    assert_eq!(runs.status.code(), Some(0), "{}", stderr(&runs));
    let log = stderr(&runs);
    assert!(log.contains("can be read by other users"), "{log}");
    assert!(log.contains("0644"), "{log}");
}

#[tokio::test]
async fn a_malformed_record_is_described_without_its_values() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let secret = "Jane-Secret-Doe";
    let records = [
        numbered_json(1).to_string(),
        format!(
            r#"{{"id":"c-broken","version":1,"email":"{secret}@example.com","firstName":["{secret}"]}}"#
        ),
        format!(r#"{{"id":"c-cut","email":"{secret}"#),
    ];
    let input = app.write_file("in.ndjson", &(records.join("\n") + "\n"));

    let run = app
        .run(&["sync", "--input", input.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(summary(&run)["rejected"], 2, "{}", stderr(&run));
    let list = app.run(&["dead-letters", "list", "--json"]).await;
    let listed = stdout(&list);
    assert!(listed.contains("invalid type at `firstName`"), "{listed}");
    assert!(listed.contains("the JSON ends early"), "{listed}");
    for (what, text) in [("log", stderr(&run)), ("dead letters", listed)] {
        assert!(!text.contains(secret), "the {what} quote a value: {text}");
    }
}
