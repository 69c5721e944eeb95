//! `segment-sync serve` as a process: configuration refusals and SIGTERM.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

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
    let port = free_port();
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("WEBHOOK_TOKEN", "hook-token");
    let mut child = app
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let start = std::time::Instant::now();
    loop {
        if let Ok(answer) = http.get(format!("{base}/healthz")).send().await {
            if answer.status().is_success() {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut created = json!({
        "notificationType": "Message",
        "type": "CustomerCreated",
        "resource": {"typeId": "customer", "id": "cust-00000001"},
        "resourceVersion": 1,
        "customer": customer(1, 0),
    });
    created["customer"]["id"] = json!("cust-00000001");
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
    eventually(
        "the identify to reach Segment",
        Duration::from_secs(30),
        || segment.requests() >= 1,
    )
    .await;

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
    assert_eq!(exit.code(), Some(0));
    assert_eq!(segment.message_count(), 1);
}
