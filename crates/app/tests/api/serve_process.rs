//! `segment-sync serve` as a process: configuration refusals and SIGTERM.

use std::time::Duration;

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
    let served = app.serve(&[]).await;
    let base = served.base.clone();
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

    served.terminate();

    let (status, body) = request.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "delivered"}));
    served.exits_cleanly().await;
    assert_eq!(segment.message_count(), 1);
}

/// The metric families operations.md documents, with their types.
fn documented_metrics() -> Vec<(String, String)> {
    let guide = std::fs::read_to_string(workspace_root().join("docs/operations.md")).unwrap();
    guide
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| {
            let (name, rest) = row.split_once("` | ")?;
            let kind = rest.split(' ').next()?;
            ["counter", "histogram"]
                .contains(&kind)
                .then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn every_documented_metric_is_described_and_its_series_start_at_zero() {
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(vec![]).await;
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("WEBHOOK_TOKEN", "hook-token");
    let served = app.serve(&[]).await;
    let metrics = reqwest::get(format!("{}/metrics", served.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    served.terminate();
    served.exits_cleanly().await;

    let documented = documented_metrics();
    assert!(documented.len() >= 8, "{documented:?}");
    for (name, kind) in &documented {
        if name == "segment_requests_total" {
            continue; // its statuses are known only once Segment answers
        }
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!("# TYPE {name} {kind}")),
            "{name} is not a {kind}:\n{metrics}"
        );
    }
    for series in [
        "webhook_requests_total{outcome=\"error\"} 0",
        "webhook_requests_total{outcome=\"delivered\"} 0",
        "segment_messages_total{outcome=\"rejected\"} 0",
        "segment_messages_total{outcome=\"failed\"} 0",
        "segment_retries_total 0",
        "webhook_request_duration_seconds_count 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} missing at start-up:\n{metrics}"
        );
    }
}
