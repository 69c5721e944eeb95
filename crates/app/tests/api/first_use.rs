//! What a new user meets first, through the real binary: a closed stdout, the dry
//! run's summary, read-only commands on a state that does not exist, the lists'
//! JSON, and `check` telling the truth.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_dry_run_piped_into_head_ends_quietly_with_exit_0() {
    let app = App::new();
    let customers: Vec<Value> = numbered_jsons(20_000);
    let input = app.write_file("in.ndjson", &ndjson(&customers));
    let mut command = app.command(&["sync", "--input", input.to_str().unwrap(), "--dry-run"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader (`head -1`) goes away after one line.
        let output = child.wait_with_output().unwrap();
        (first, output)
    })
    .await
    .unwrap();
    let (first, output) = output;
    assert!(first.contains(r#""type":"identify""#), "{first}");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !stderr(&output).to_lowercase().contains("broken pipe"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_dry_run_with_json_ends_with_its_summary_and_says_would_send() {
    let app = App::new();
    let input = app.write_file(
        "in.ndjson",
        &ndjson(&[numbered_json(1), without_email(numbered_json(2))]),
    );
    let output = app
        .run(&[
            "sync",
            "--input",
            input.to_str().unwrap(),
            "--dry-run",
            "--json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let counts = summary(&output);
    assert_eq!(counts["read"], 2);
    assert_eq!(counts["sent"], 1);
    assert_eq!(counts["skipped"], 1);
    assert_eq!(
        stdout(&output).lines().count(),
        2,
        "one payload, one summary"
    );
    assert!(
        stderr(&output).contains("would send 1"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn read_only_commands_do_not_create_a_missing_state() {
    let app = App::new();
    for args in [
        &["runs"][..],
        &["dead-letters", "list"][..],
        &["runs", "--state", "elsewhere.db"][..],
    ] {
        let output = app.run(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).starts_with("no state database at "),
            "{}",
            stderr(&output)
        );
    }
    assert!(!app.state_path().exists());
    assert!(!app.dir.path().join("elsewhere.db").exists());
}

#[tokio::test]
async fn an_input_directory_is_named_as_one() {
    let app = App::new();
    let output = app
        .run(&[
            "sync",
            "--dry-run",
            "--input",
            app.dir.path().to_str().unwrap(),
        ])
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("it is a directory, not an export file"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn dead_letters_list_json_shows_payloads_as_objects_and_kinds_in_lowercase() {
    let segment = FakeSegment::start(SegmentMode::Down).await;
    let app = App::new()
        .with_fakes(&segment, None)
        .env("SEGMENT_MAX_ATTEMPTS", "1");
    let input = app.write_file("in.ndjson", &ndjson(&[numbered_json(1)]));
    let run = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));

    let listed = app.run(&["dead-letters", "list", "--json"]).await;
    let letters: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let letter = &letters[0];
    assert_eq!(letter["kind"], "failed");
    assert_eq!(letter["payload"]["type"], "identify", "{letter}");
    assert_eq!(letter["code"], "max_retries_exceeded");

    let text = app.run(&["dead-letters", "list"]).await;
    assert!(stdout(&text).contains("\tfailed\t"), "{}", stdout(&text));
}

#[tokio::test]
async fn runs_show_their_source_status_words_duration_and_counts_in_text_as_in_json() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new().with_fakes(&segment, None);
    let input = app.write_file("in.ndjson", &ndjson(&[numbered_json(1)]));
    let run = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));

    let json: Value = serde_json::from_str(&stdout(&app.run(&["runs", "--json"]).await)).unwrap();
    assert_eq!(json[0]["status"], "succeeded");
    let source = format!("file {}", input.display());
    assert_eq!(json[0]["source"], source.as_str());
    assert!(json[0]["duration_ms"].is_u64(), "{json}");
    assert_eq!(json[0]["counts"]["sent"], 1);
    let text = stdout(&app.run(&["runs"]).await);
    assert!(
        text.starts_with(&format!("#1 sync from {source} ")),
        "{text}"
    );
    assert!(text.contains(" succeeded took="), "{text}");
    assert!(text.contains(" read=1 sent=1 "), "{text}");
}

#[tokio::test]
async fn check_refuses_what_sync_refuses_and_speaks_json() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![numbered_json(1)]).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("SEGMENT_ENDPOINT", "ftp://x")
        .env("SEGMENT_SYNC_USER_ID", "foo");
    let output = app.run(&["check", "--json"]).await;
    assert_eq!(output.status.code(), Some(1));
    let lines: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let failed: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ok"] == false)
        .map(|l| l["fix"].as_str().unwrap())
        .collect();
    assert!(
        failed.iter().any(|f| f.contains("SEGMENT_SYNC_USER_ID")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.contains("SEGMENT_ENDPOINT: ftp://x")),
        "{failed:?}"
    );
    let sync = app.run(&["sync"]).await;
    assert_eq!(
        sync.status.code(),
        Some(2),
        "sync refuses the same settings"
    );
}

#[tokio::test]
async fn check_names_the_auth_url_when_the_auth_host_is_unreachable() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![numbered_json(1)]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("CTP_AUTH_URL", &unreachable)
        // Unset, as a new user has it: check then logs only errors.
        .env("RUST_LOG", "");
    let output = app.run(&["check"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let token = text
        .lines()
        .skip_while(|l| !l.contains("commercetools token"))
        .nth(1)
        .unwrap_or_default();
    assert!(token.contains("CTP_AUTH_URL"), "{text}");
    assert!(
        stderr(&output).trim().is_empty(),
        "retry warnings stay out of the report: {}",
        stderr(&output)
    );
}

/// The JSON log lines of a run's stderr whose message is `message`.
fn log_lines(stderr: &str, message: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == message)
        .collect()
}

#[tokio::test]
async fn each_customer_not_sent_is_logged_by_id_and_reason_up_to_a_limit() {
    let segment = FakeSegment::start(SegmentMode::Down).await;
    let app = App::new()
        .with_fakes(&segment, None)
        .env("SEGMENT_MAX_ATTEMPTS", "1")
        .env("RUST_LOG", "info");
    // 250 without an email, 3 with one (which Segment will not take).
    let mut customers: Vec<Value> = (0..250).map(|i| without_email(numbered_json(i))).collect();
    customers.extend((1000..1003).map(numbered_json));
    let input = app.write_file("in.ndjson", &ndjson(&customers));
    let output = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);

    let skipped = log_lines(&err, "customer skipped");
    assert_eq!(skipped.len(), 100, "the first 100, then a count");
    assert_eq!(skipped[0]["reason"], "customer has no email");
    assert!(skipped[0]["customer_id"]
        .as_str()
        .unwrap()
        .starts_with("cust-"));
    assert!(err.contains("150 more customers skipped"), "{err}");

    let failed = log_lines(&err, "customer not delivered; it is in the dead letters");
    assert_eq!(failed.len(), 3);
    assert_eq!(
        failed[0]["reason"],
        "Max retries exceeded (last: 500 Internal Server Error)"
    );
    let early = log_lines(
        &err,
        "Segment did not take a batch; the run goes on and what fails goes to the dead letters",
    );
    assert_eq!(early.len(), 1, "said once, as soon as it happens");
    assert!(
        err.contains("last failure: Max retries exceeded (last: 500 Internal Server Error)"),
        "{err}"
    );
    assert!(
        !err.to_lowercase().contains("@example.com"),
        "no email in the logs"
    );
}

#[tokio::test]
async fn since_with_input_keeps_only_later_customers_and_the_log_says_which() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new()
        .with_fakes(&segment, None)
        .env("RUST_LOG", "info");
    let mut customers: Vec<Value> = (0..3).map(numbered_json).collect();
    customers[1]["lastModifiedAt"] = "2024-06-01T00:00:00.000Z".into();
    let input = app.write_file("in.ndjson", &ndjson(&customers));
    let output = app
        .run(&[
            "sync",
            "--input",
            input.to_str().unwrap(),
            "--since",
            "2024-05-15T00:00:00Z",
            "--json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(summary(&output)["read"], 1);
    assert_eq!(segment.message_count(), 1);
    let starting = log_lines(&stderr(&output), "sync starting");
    assert_eq!(
        starting[0]["query"], "changed since 2024-05-15T00:00:00Z",
        "the filter is said, not silent"
    );
}

/// Whether a logged value reads like Rust's debug formatting rather than a plain
/// value: `Some(2)`, `None`, `ChangedSince(…)`, a quoted string.
fn looks_like_debug(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let variant = text.split_once('(').is_some_and(|(head, _)| {
        !head.is_empty()
            && head.chars().all(char::is_alphanumeric)
            && head.starts_with(char::is_uppercase)
    });
    variant || text == "None" || text.starts_with('"')
}

#[tokio::test]
async fn log_fields_are_plain_values_and_a_malformed_array_element_is_named_by_its_line() {
    let segment = FakeSegment::start(SegmentMode::Down).await;
    let app = App::new()
        .with_fakes(&segment, None)
        .env("SEGMENT_MAX_ATTEMPTS", "2")
        .env(
            "RUST_LOG",
            "segment_sync=debug,segment_sync_adapters=debug,warn",
        );
    let mut bad = numbered_json(1);
    bad["addresses"] = "not a list".into();
    let export = format!(
        "[\n{},\n{},\n{}\n]\n",
        serde_json::to_string_pretty(&numbered_json(0)).unwrap(),
        serde_json::to_string_pretty(&bad).unwrap(),
        serde_json::to_string_pretty(&without_email(numbered_json(2))).unwrap(),
    );
    // `[` is line 1; the bad customer starts on the line after the first one's.
    let first_lines = serde_json::to_string_pretty(&numbered_json(0))
        .unwrap()
        .lines()
        .count();
    let bad_starts_on = 2 + first_lines;
    let fault_on = 1 + export
        .lines()
        .position(|l| l.contains("not a list"))
        .expect("the fault is in the export");
    let input = app.write_file("in.json", &export);
    let output = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);

    let lines: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() > 5, "{err}");
    for line in &lines {
        for (field, value) in line.as_object().unwrap() {
            assert!(
                !looks_like_debug(value),
                "{field} is debug-formatted in {line}"
            );
        }
    }
    let rejected = log_lines(&err, "customer rejected; it is in the dead letters");
    let reason = rejected[0]["reason"].as_str().unwrap();
    for expected in [
        format!("in.json line {bad_starts_on} (array index 1): "),
        format!(" (line {fault_on}, column "),
    ] {
        assert!(reason.contains(&expected), "{reason} names {expected}");
    }
}

#[tokio::test]
async fn pretty_logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let app = App::new()
        .with_fakes(&segment, None)
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "info");
    let input = app.write_file("in.ndjson", &ndjson(&[numbered_json(1)]));
    let output = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("INFO") && err.contains("sync starting"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "colour codes in {err:?}");
}

#[tokio::test]
async fn a_dead_letters_attempts_count_the_runs_that_failed_it_not_the_requests() {
    let segment = FakeSegment::start(SegmentMode::Down).await;
    let app = App::new()
        .with_fakes(&segment, None)
        .env("SEGMENT_MAX_ATTEMPTS", "3");
    let input = app.write_file("in.ndjson", &ndjson(&[numbered_json(1)]));
    let attempts = |output: std::process::Output| -> Value {
        let letters: Value = serde_json::from_str(&stdout(&output)).unwrap();
        letters[0]["attempts"].clone()
    };

    let first = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    assert!(segment.requests() >= 3, "three requests in the run");
    let listed = app.run(&["dead-letters", "list", "--json"]).await;
    assert_eq!(attempts(listed), 1, "one run, whatever its requests");

    let second = app.run(&["sync", "--input", input.to_str().unwrap()]).await;
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let listed = app.run(&["dead-letters", "list", "--json"]).await;
    assert_eq!(attempts(listed), 2);
}
