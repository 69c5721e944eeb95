//! Personal data at rest: the state file is private, old dead letters go.

use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind};
use segment_sync_ports::SyncStateStore;

use segment_sync_testkit::fake_public_api::{FakePublicApi, TOKEN as PUBLIC_API_TOKEN};

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

/// An app whose deletions reach `public_api`, as `suppress_with_delete`.
fn deleting(app: App, public_api: &FakePublicApi) -> App {
    app.env("SEGMENT_DELETION", "suppress_with_delete")
        .env("SEGMENT_PUBLIC_API_URL", public_api.url())
        .env("SEGMENT_PUBLIC_API_TOKEN", PUBLIC_API_TOKEN)
}

/// The userId numbered customer `n` is sent as.
fn user_id(n: usize) -> String {
    format!("customer{n}@example.com")
}

#[tokio::test]
async fn forget_by_email_and_by_id_erases_here_and_regulates_in_segment() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let public_api = FakePublicApi::start().await;
    let app = deleting(App::new().with_fakes(&segment, None), &public_api);
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(5)));
    let first = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));

    let forget = app
        .run(&["forget", &numbered_id(1), &user_id(2), "nobody@example.com"])
        .await;
    assert_eq!(forget.status.code(), Some(0), "{}", stderr(&forget));
    let said = stdout(&forget);
    assert!(
        said.contains(&format!(
            "{}: erased 1 customer record, 0 dead letters; 1 deletion queued for Segment",
            numbered_id(1)
        )),
        "{said}"
    );
    assert!(
        said.contains("nobody@example.com: nothing stored"),
        "{said}"
    );
    assert!(
        said.contains("Segment accepted 1 regulation for 2 users"),
        "{said}"
    );
    let regulations = public_api.regulations();
    assert_eq!(regulations.len(), 1);
    assert_eq!(regulations[0].regulation_type, "SUPPRESS_WITH_DELETE");
    assert_eq!(regulations[0].subject_type, "USER_ID");
    assert_eq!(regulations[0].subject_ids, [user_id(1), user_id(2)]);

    // The next sync sends them again (they are new to the state), and only them.
    let again = app
        .run(&["sync", "--input", input.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(summary(&again)["sent"], 2, "{}", stderr(&again));

    let regulation = regulations[0].regulation_id.clone().unwrap();
    public_api.set_status(&regulation, "FINISHED");
    let listed = app.run(&["deletions", "--refresh", "--json"]).await;
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for deletion in listed {
        assert_eq!(deletion["regulation_id"], regulation.as_str());
        assert_eq!(deletion["status"], "FINISHED");
    }
    let text = stdout(&app.run(&["deletions"]).await);
    assert!(
        text.starts_with("2 of 110000 users regulated this month"),
        "{text}"
    );
}

#[tokio::test]
async fn forget_with_deletion_off_erases_here_only() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(2)));
    app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    let list = app.write_file(
        "forget.txt",
        &format!("# from the privacy desk\n{}\n\n", numbered_id(0)),
    );

    let forget = app.run(&["forget", "--file", list.to_str().unwrap()]).await;

    assert_eq!(forget.status.code(), Some(0), "{}", stderr(&forget));
    let said = stdout(&forget);
    assert!(
        said.contains(&format!("{}: erased 1 customer record", numbered_id(0))),
        "{said}"
    );
    assert!(
        said.contains("SEGMENT_DELETION is off: erased here only"),
        "{said}"
    );
    let nothing = app.run(&["forget"]).await;
    assert_eq!(nothing.status.code(), Some(2));
}

#[tokio::test]
async fn a_refused_public_api_token_is_fatal_and_named() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let public_api = FakePublicApi::start().await;
    public_api.refuse_token(403);
    let app = deleting(App::new().with_fakes(&segment, None), &public_api);
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(1)));
    app.run(&["sync", "--input", input.to_str().unwrap()]).await;

    let forget = app.run(&["forget", &numbered_id(0)]).await;

    assert_eq!(forget.status.code(), Some(3), "{}", stderr(&forget));
    assert!(
        stderr(&forget).contains("End User Privacy Admin"),
        "{}",
        stderr(&forget)
    );
    let listed = stdout(&app.run(&["deletions", "--json"]).await);
    assert!(
        listed.contains("\"status\": \"queued\""),
        "kept queued: {listed}"
    );
}

#[tokio::test]
async fn a_full_sync_reports_the_customers_gone_and_regulates_exactly_them() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let public_api = FakePublicApi::start().await;
    let everyone = numbered_jsons(40);
    let state = tempfile::tempdir().unwrap();
    let state = state.path().join("shared.db");
    let state = state.to_str().unwrap();
    let before = FakeCommercetools::start(everyone.clone()).await;
    let first = deleting(App::new().with_fakes(&segment, Some(&before)), &public_api)
        .run(&["sync", "--json", "--state", state])
        .await;
    assert_eq!(summary(&first)["sent"], 40, "{}", stderr(&first));

    let removed: Vec<usize> = (0..40).filter(|n| n % 4 == 1).collect();
    let remaining: Vec<_> = everyone
        .iter()
        .enumerate()
        .filter(|(n, _)| !removed.contains(n))
        .map(|(_, c)| c.clone())
        .collect();
    let after = FakeCommercetools::start(remaining).await;
    let app = deleting(App::new().with_fakes(&segment, Some(&after)), &public_api);
    let incremental = app.run(&["sync", "--json", "--state", state]).await;
    assert!(
        summary(&incremental).get("gone").is_none(),
        "only a full walk tells"
    );

    let full = app
        .run(&["sync", "--full", "--json", "--state", state])
        .await;

    assert_eq!(full.status.code(), Some(0), "{}", stderr(&full));
    assert_eq!(summary(&full)["gone"], 10);
    assert!(stderr(&full).contains(", gone 10"), "{}", stderr(&full));
    let mut regulated: Vec<String> = public_api
        .regulations()
        .into_iter()
        .flat_map(|r| r.subject_ids)
        .collect();
    regulated.sort();
    let mut expected: Vec<String> = removed.iter().map(|&n| user_id(n)).collect();
    expected.sort();
    assert_eq!(regulated, expected);
    let again = app
        .run(&["sync", "--full", "--json", "--state", state])
        .await;
    assert_eq!(summary(&again)["gone"], 0, "erased once");
}

#[tokio::test]
async fn a_burst_of_webhook_deletions_is_one_regulation_sent_by_shutdown_at_the_latest() {
    const BURST: usize = 2_500;
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let public_api = FakePublicApi::start().await;
    let app = deleting(App::new().with_fakes(&segment, Some(&ctp)), &public_api)
        .env("WEBHOOK_TOKEN", "hook-token");
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(BURST)));
    let first = app
        .run(&["sync", "--input", input.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(summary(&first)["sent"], BURST as u64, "{}", stderr(&first));

    let served = app.serve(&[]).await;
    let url = served.webhook();
    let http = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= BURST {
                    return statuses;
                }
                let message = serde_json::json!({
                    "notificationType": "Message",
                    "type": "CustomerDeleted",
                    "resource": {"typeId": "customer", "id": numbered_id(n)},
                    "resourceVersion": 2,
                    "version": 2,
                });
                let answer = http
                    .post(&url)
                    .bearer_auth("hook-token")
                    .json(&message)
                    .send()
                    .await
                    .unwrap();
                statuses.push(answer.status().as_u16());
            }
        }));
    }
    for client in clients {
        assert!(client.await.unwrap().iter().all(|&status| status == 202));
    }

    served.terminate();
    served.exits_cleanly().await;

    let regulations = public_api.regulations();
    assert_eq!(regulations.len(), 1, "one request for {BURST} ids");
    let mut regulated = regulations[0].subject_ids.clone();
    regulated.sort();
    regulated.dedup();
    assert_eq!(regulated.len(), BURST);
    let listed = app.run(&["deletions", "--json"]).await;
    assert!(!stdout(&listed).contains("\"status\": \"queued\""));
}
