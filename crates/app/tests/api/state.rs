//! The state shared by runs: one sync at a time, a killed run taken over and shown
//! abandoned, and moving a state elsewhere without resending anything.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// The runs listed by `runs --json` on `state`.
async fn runs(app: &App, state: &str) -> Vec<Value> {
    let listed = app.run(&["runs", "--json", "--state", state]).await;
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    serde_json::from_str::<Value>(&stdout(&listed))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_second_sync_on_the_same_state_exits_2_naming_the_first() {
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(300))).await;
    let ctp = FakeCommercetools::start(numbered_jsons(5_000)).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));

    let mut first = app.command(&["sync"]).spawn().unwrap();
    segment.wait_for_requests(1, Duration::from_secs(60)).await;
    let second = app.run(&["sync"]).await;
    let replay = app.run(&["dead-letters", "replay"]).await;
    first.kill().unwrap();
    first.wait().unwrap();

    for refused in [&second, &replay] {
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(refused));
        let line = stderr(refused);
        assert!(
            line.trim_end()
                .starts_with("another sync is running (run #1, started "),
            "{line}"
        );
        assert!(line.contains(&format!("pid {}", first.id())), "{line}");
    }
}

#[tokio::test]
async fn after_a_killed_sync_the_next_takes_over_and_runs_show_it_abandoned() {
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(300))).await;
    let ctp = FakeCommercetools::start(numbered_jsons(3_000)).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));

    let mut killed = app.command(&["sync"]).spawn().unwrap();
    segment.wait_for_requests(1, Duration::from_secs(60)).await;
    killed.kill().unwrap();
    killed.wait().unwrap();

    segment.set_mode(SegmentMode::Accept);
    let next = app.run(&["sync", "--json"]).await;
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    assert_eq!(summary(&next)["read"], 3_000);

    let runs = runs(&app, "segment-sync.db").await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[1]["status"], "abandoned");
    assert!(runs[1]["finished_at"].is_string());
    let text = stdout(&app.run(&["runs"]).await);
    assert!(text.contains(" abandoned"), "{text}");
}

#[tokio::test]
async fn a_copied_state_sends_nothing_again() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let customers = numbered_jsons(1_200);
    let input = app.write_file("in.ndjson", &ndjson(&customers));
    let input = input.to_str().unwrap();
    let first = app.run(&["sync", "--input", input, "--json"]).await;
    assert_eq!(summary(&first)["sent"], 1_200, "{}", stderr(&first));

    let copied = app
        .run(&[
            "state",
            "copy",
            "--from",
            "segment-sync.db",
            "--to",
            "moved.db",
        ])
        .await;
    assert_eq!(copied.status.code(), Some(0), "{}", stderr(&copied));
    assert!(
        stdout(&copied).starts_with("copied 1200 deliveries, 0 dead letters, 0 deletions, 1 runs"),
        "{}",
        stdout(&copied)
    );

    let again = app
        .run(&["sync", "--input", input, "--json", "--state", "moved.db"])
        .await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(summary(&again)["sent"], 0);
    assert_eq!(summary(&again)["unchanged"], 1_200);
    assert_eq!(segment.message_count(), 1_200, "nothing sent twice");
    let moved = runs(&app, "moved.db").await;
    assert!(moved
        .iter()
        .any(|run| run["kind"] == "sync" && run["counts"]["sent"] == 1_200));
}

#[tokio::test]
async fn copying_a_state_onto_itself_or_from_nowhere_is_refused() {
    let app = App::new();
    let same = app
        .run(&["state", "copy", "--from", "a.db", "--to", "a.db"])
        .await;
    assert_eq!(same.status.code(), Some(2));
    assert!(stderr(&same).contains("same state"), "{}", stderr(&same));
    let nowhere = app
        .run(&["state", "copy", "--from", "missing.db", "--to", "b.db"])
        .await;
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(stderr(&nowhere).starts_with("no state database at missing.db"));
    assert!(!app.dir.path().join("b.db").exists());
}
