//! `segment-sync serve` as a process: configuration refusals and SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use segment_sync_testkit::child_log::ChildLog;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn serve_refuses_to_start_without_a_token() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let app = App::new().with_fakes(&segment, Some(&ctp));
    let output = app.run(&["serve", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output).trim_end(),
        "WEBHOOK_TOKEN is not set: set it, or pass --allow-unauthenticated to accept unauthenticated requests"
    );
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    let segment = FakeSegment::start(SegmentMode::Slow(Duration::from_millis(800))).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("WEBHOOK_TOKEN", "hook-token");
    // Port 0, and the address it bound read back from its log (info level, JSON).
    let mut child = app
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = ChildLog::follow(child.stderr.take().unwrap(), None);
    let addr = log
        .listening_addr(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(health.status().is_success(), "{}", health.status());

    let created = customer_created(&numbered_json(1));
    let request = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/webhooks/commercetools");
        async move {
            let answer = http
                .post(url)
                .bearer_auth("hook-token")
                .json(&created)
                .send()
                .await
                .unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        }
    });
    segment.wait_for_requests(1, Duration::from_secs(30)).await;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let (status, body) = request.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "delivered"}));
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", log.last_lines());
    assert_eq!(segment.message_count(), 1);
}
