//! `segment-sync sync`, `dead-letters` and `runs`, through the real binary.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn emails_of(customers: &[Value]) -> HashSet<String> {
    customers
        .iter()
        .filter_map(|c| c["email"].as_str())
        .map(|e| e.to_lowercase())
        .collect()
}

#[tokio::test]
async fn dry_run_prints_one_payload_per_valid_customer_without_a_write_key() {
    let app = App::new();
    let sample = workspace_root().join("examples/customers.ndjson");
    let output = app
        .run(&["sync", "--input", sample.to_str().unwrap(), "--dry-run"])
        .await;
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is a payload"))
        .collect();

    let records: Vec<Value> = std::fs::read_to_string(&sample)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let valid: Vec<&Value> = records
        .iter()
        .filter(|c| {
            segment_sync_domain::identify::identify(
                &serde_json::from_value((*c).clone()).unwrap(),
                segment_sync_domain::UserIdStrategy::Email,
            )
            .is_ok()
        })
        .collect();
    assert!(
        valid.len() >= 20,
        "the sample has a few dozen valid customers"
    );
    assert_eq!(lines.len(), valid.len(), "stderr: {}", stderr(&output));
    for line in &lines {
        assert_eq!(line["type"], "identify");
        assert!(line["userId"].as_str().unwrap().contains('@'));
    }
    // The sample has an oversize customer, so the dry run reports it.
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert!(stderr(&output).contains(&format!("read {}", records.len())));
    assert!(!app.state_path().exists(), "a dry run changes no state");
}

#[tokio::test]
async fn configuration_errors_are_one_line_each_all_at_once_with_exit_2() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp_missing =
        "Missing CTP_PROJECT_KEY, CTP_CLIENT_SECRET, CTP_REGION (or CTP_AUTH_URL and CTP_API_URL)";
    let cases: [(&[(&str, &str)], String); 4] = [
        (&[("CTP_REGION", "europe-west1.gcp"), ("CTP_PROJECT_KEY", "p"), ("CTP_CLIENT_ID", "i"), ("CTP_CLIENT_SECRET", "s")],
            "Missing SEGMENT_WRITE_KEY".to_owned()),
        (&[("SEGMENT_WRITE_KEY", "   "), ("CTP_REGION", "europe-west1.gcp"), ("CTP_PROJECT_KEY", "p"), ("CTP_CLIENT_ID", "i"), ("CTP_CLIENT_SECRET", "s")],
            "Write key cannot be empty or whitespace only".to_owned()),
        (&[("SEGMENT_WRITE_KEY", "k"), ("CTP_CLIENT_ID", "id")], ctp_missing.to_owned()),
        (
            &[("CTP_CLIENT_ID", "id"), ("SEGMENT_GZIP", "TRUEISH"), ("SEGMENT_SYNC_USER_ID", "phone")],
            format!(
                "SEGMENT_SYNC_USER_ID: unknown user id strategy \"phone\": expected \"email\" or \"customer-id\"\n\
                 Missing SEGMENT_WRITE_KEY\n\
                 SEGMENT_GZIP: `TRUEISH` is not a boolean (true/false, 1/0, yes/no, on/off)\n\
                 {ctp_missing}"
            ),
        ),
    ];
    for (vars, expected) in cases {
        let mut app = App::new().env("SEGMENT_ENDPOINT", segment.url());
        for (name, value) in vars {
            app = app.env(name, value);
        }
        let output = app.run(&["sync"]).await;
        assert_eq!(output.status.code(), Some(2), "{expected}");
        assert_eq!(stderr(&output).trim_end(), expected);
    }
    assert_eq!(segment.requests(), 0, "nothing sent");
}

#[tokio::test]
async fn a_dot_env_file_supplies_what_the_environment_does_not() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().env("SEGMENT_ENDPOINT", segment.url());
    app.write_file(".env", &format!("SEGMENT_WRITE_KEY={WRITE_KEY}\n"));
    let input = app.write_file("in.ndjson", &ndjson(&[numbered_json(1)]));
    let output = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(segment.message_count(), 1);
}

#[tokio::test]
async fn backfill_then_incremental_runs_send_only_what_changed() {
    // Modified just now: inside the next run's look-back window.
    let customers: Vec<Value> = (0..10_000)
        .map(|i| {
            let mut c = numbered_json(i);
            if i % 7 == 0 {
                c = without_email(c);
            }
            c["lastModifiedAt"] = json!(timestamp_now());
            c
        })
        .collect();
    let with_email = emails_of(&customers);
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(customers.clone()).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));

    let first = app.run(&["sync", "--json"]).await;
    assert_eq!(first.status.code(), Some(0), "stderr: {}", stderr(&first));
    let counts = summary(&first);
    assert_eq!(counts["read"], 10_000);
    assert_eq!(counts["sent"], with_email.len());
    assert_eq!(counts["skipped"], 10_000 - with_email.len());
    let sum: u64 = ["sent", "unchanged", "skipped", "rejected", "failed"]
        .iter()
        .map(|k| counts[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 10_000);
    let by_user = segment.deliveries_by_user();
    assert_eq!(by_user.len(), with_email.len());
    assert!(
        by_user.values().all(|n| *n == 1),
        "each customer exactly once"
    );
    assert_eq!(by_user.keys().cloned().collect::<HashSet<_>>(), with_email);

    // Nothing changed: the look-back window re-reads everyone, and nothing is sent.
    let second = app.run(&["sync", "--json"]).await;
    assert_eq!(second.status.code(), Some(0), "stderr: {}", stderr(&second));
    let counts = summary(&second);
    assert_eq!(counts["sent"], 0);
    assert_eq!(counts["unchanged"], with_email.len());
    assert_eq!(segment.message_count(), with_email.len() as u64);

    for i in [1, 2, 3, 4, 5, 6, 8, 9, 10, 11] {
        ctp.update(&numbered_id(i), |c| c["firstName"] = json!("Changed"));
    }
    let third = app.run(&["sync", "--json"]).await;
    assert_eq!(third.status.code(), Some(0), "stderr: {}", stderr(&third));
    assert_eq!(summary(&third)["sent"], 10);
    let changed: Vec<Value> = segment.messages()[with_email.len()..].to_vec();
    assert_eq!(changed.len(), 10);
    assert!(changed
        .iter()
        .all(|m| m["traits"]["firstName"] == "Changed"));

    let runs = app.run(&["runs", "--json"]).await;
    let runs: Value = serde_json::from_str(&stdout(&runs)).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["counts"]["sent"], 10, "newest first");
    assert_eq!(runs[2]["counts"]["read"], 10_000);
    assert!(runs.iter().all(|r| r["status"] == "succeeded"));
}

#[tokio::test]
async fn a_flaky_segment_still_gets_every_customer() {
    let customers: Vec<Value> = numbered_jsons(3_000);
    let segment = FakeSegment::start(SegmentMode::Flaky(0.3)).await;
    let app = App::new().with_fakes(&segment, None);
    let input = app.write_file("in.ndjson", &ndjson(&customers));
    let output = app
        .run(&["sync", "--input", input.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(summary(&output)["sent"], 3_000);
    assert_eq!(segment.deliveries_by_user().len(), 3_000);
}

#[tokio::test]
async fn failures_go_to_dead_letters_and_replay_delivers_them() {
    let customers: Vec<Value> = numbered_jsons(50);
    let segment = FakeSegment::start(SegmentMode::Down).await;
    let ctp = FakeCommercetools::start(customers.clone()).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("SEGMENT_MAX_ATTEMPTS", "2");

    let failed = app.run(&["sync", "--json"]).await;
    assert_eq!(failed.status.code(), Some(1), "stderr: {}", stderr(&failed));
    assert_eq!(summary(&failed)["failed"], 50);
    let letters = app.run(&["dead-letters", "list", "--json"]).await;
    let letters: Value = serde_json::from_str(&stdout(&letters)).unwrap();
    assert_eq!(letters.as_array().unwrap().len(), 50);
    assert_eq!(letters[0]["code"], "max_retries_exceeded");
    assert_eq!(
        letters[0]["reason"],
        "Max retries exceeded (last: 500 Internal Server Error)"
    );

    let store =
        segment_sync_adapters::sqlite_state::SqliteStateStore::open(&app.state_path()).unwrap();
    use segment_sync_ports::SyncStateStore as _;
    assert_eq!(store.high_water_mark().await.unwrap(), None, "mark unmoved");

    segment.set_mode(SegmentMode::Accept);
    let replay = app.run(&["dead-letters", "replay", "--json"]).await;
    assert_eq!(replay.status.code(), Some(0), "stderr: {}", stderr(&replay));
    assert_eq!(summary(&replay)["sent"], 50);
    assert_eq!(segment.deliveries_by_user().len(), 50);
    let letters = app.run(&["dead-letters", "list", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&letters)).unwrap(),
        json!([])
    );
}

#[tokio::test]
async fn an_invalid_write_key_aborts_with_exit_3() {
    let segment = FakeSegment::start(SegmentMode::Unauthorized).await;
    let app = App::new().with_fakes(&segment, None);
    let input = app.write_file("in.ndjson", &ndjson(&numbered_jsons(20)));
    let output = app
        .run(&["sync", "--input", input.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(output.status.code(), Some(3), "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).lines().any(|l| l == "Invalid write key"),
        "stderr: {}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains(WRITE_KEY),
        "the key never reaches a log"
    );
    assert_eq!(segment.message_count(), 0);
}

#[tokio::test]
async fn after_an_invalid_write_key_the_next_run_sends_every_customer_it_could_not() {
    let segment = FakeSegment::start(SegmentMode::Unauthorized).await;
    let ctp = FakeCommercetools::start(numbered_jsons(20)).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    let aborted = app.run(&["sync", "--json"]).await;
    assert_eq!(
        aborted.status.code(),
        Some(3),
        "stderr: {}",
        stderr(&aborted)
    );

    segment.set_mode(SegmentMode::Accept);
    let next = app.run(&["sync", "--json"]).await;
    assert_eq!(next.status.code(), Some(0), "stderr: {}", stderr(&next));
    assert_eq!(summary(&next)["sent"], 20);
    assert_eq!(segment.deliveries_by_user().len(), 20);
    let letters = app.run(&["dead-letters", "list", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&letters)).unwrap(),
        json!([]),
        "nothing left to replay"
    );
}

#[tokio::test]
async fn an_oversize_customer_is_rejected_and_the_rest_delivered() {
    let mut customers: Vec<Value> = numbered_jsons(30);
    customers[5]["custom"]["fields"]["notes"] = json!("x".repeat(40 * 1024));
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let input = app.write_file("in.ndjson", &ndjson(&customers));
    let output = app
        .run(&["sync", "--input", input.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    let counts = summary(&output);
    assert_eq!(counts["rejected"], 1);
    assert_eq!(counts["sent"], 29);
    assert_eq!(segment.message_count(), 29);
    let letters = app.run(&["dead-letters", "list", "--json"]).await;
    let letters: Value = serde_json::from_str(&stdout(&letters)).unwrap();
    assert_eq!(letters[0]["customer_id"], numbered_id(5).as_str());
    assert_eq!(letters[0]["reason"], "message over 32 KB");
}

#[tokio::test]
async fn a_killed_sync_loses_nothing_and_resends_only_what_was_unrecorded() {
    let customers: Vec<Value> = numbered_jsons(50_000);
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(200))).await;
    let ctp = FakeCommercetools::start(customers).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));

    let mut child = app.command(&["sync"]).spawn().unwrap();
    segment
        .wait_for_messages(10_000, Duration::from_secs(120))
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let acknowledged_before_kill = segment.message_count();
    assert!(acknowledged_before_kill < 50_000, "killed before the end");

    let store =
        segment_sync_adapters::sqlite_state::SqliteStateStore::open(&app.state_path()).unwrap();
    use segment_sync_ports::SyncStateStore as _;
    let ids: Vec<String> = (0..50_000).map(numbered_id).collect();
    let recorded: HashSet<String> = store.delivered(&ids).await.unwrap().into_keys().collect();
    assert!(
        !recorded.is_empty(),
        "deliveries were recorded before the kill"
    );
    drop(store);

    segment.set_mode(SegmentMode::Accept);
    let before_rerun = segment.messages().len();
    let rerun = app.run(&["sync", "--json"]).await;
    assert_eq!(rerun.status.code(), Some(0), "stderr: {}", stderr(&rerun));
    assert_eq!(
        segment.deliveries_by_user().len(),
        50_000,
        "every customer in Segment"
    );
    let resent: Vec<String> = segment.messages()[before_rerun..]
        .iter()
        .map(|m| m["traits"]["commercetoolsId"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        resent.iter().all(|id| !recorded.contains(id)),
        "a delivery recorded before the kill was sent again"
    );
    assert_eq!(resent.len(), 50_000 - recorded.len());
}

#[tokio::test]
async fn an_interrupted_sync_records_what_was_in_flight_and_exits_130() {
    let customers: Vec<Value> = numbered_jsons(50_000);
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(200))).await;
    let ctp = FakeCommercetools::start(customers).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));

    let child = app
        .command(&["sync", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    segment
        .wait_for_messages(5_000, Duration::from_secs(120))
        .await;
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "stderr: {}",
        stderr(&output)
    );
    let acknowledged = segment.deliveries_by_user().len();
    assert!(acknowledged < 50_000, "interrupted before the end");
    let said: Vec<Value> = stderr(&output)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("sync interrupted"))
        })
        .collect();
    assert_eq!(said.len(), 1, "stderr: {}", stderr(&output));
    assert_eq!(said[0]["signal"], "SIGINT");
    assert!(
        !said[0]["target"].as_str().unwrap().contains("serve"),
        "logged under the sync: {}",
        said[0]
    );

    let store =
        segment_sync_adapters::sqlite_state::SqliteStateStore::open(&app.state_path()).unwrap();
    use segment_sync_ports::SyncStateStore as _;
    let ids: Vec<String> = (0..50_000).map(numbered_id).collect();
    let recorded = store.delivered(&ids).await.unwrap().len();
    assert_eq!(
        recorded, acknowledged,
        "every acknowledged batch was recorded"
    );
    assert_eq!(store.high_water_mark().await.unwrap(), None, "mark unmoved");
    let runs = store.runs(1).await.unwrap();
    assert_eq!(
        runs[0].status,
        segment_sync_domain::sync::RunStatus::Aborted
    );
    assert_eq!(runs[0].error.as_deref(), Some("interrupted"));
}

#[tokio::test]
async fn malformed_lines_of_two_exports_are_two_dead_letters() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let export = format!("{}\n{{\"broken\": \n", numbered_json(1));
    for name in ["monday.ndjson", "tuesday.ndjson"] {
        let input = app.write_file(name, &export);
        let output = app
            .run(&["sync", "--input", input.to_str().unwrap(), "--json"])
            .await;
        assert_eq!(
            summary(&output)["rejected"],
            1,
            "{name}: {}",
            stderr(&output)
        );
    }

    let letters = app.run(&["dead-letters", "list", "--json"]).await;
    let letters: Value = serde_json::from_str(&stdout(&letters)).unwrap();

    assert_eq!(letters.as_array().unwrap().len(), 2, "{letters}");
    for name in ["monday.ndjson line 2", "tuesday.ndjson line 2"] {
        assert!(letters.to_string().contains(name), "{name} in {letters}");
    }
}
