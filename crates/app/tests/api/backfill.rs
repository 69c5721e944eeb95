//! An API backfill over several id ranges, through the real binary: what one
//! failing range does to a run, and how the next run makes up for it.

use std::collections::HashSet;

use segment_sync_ports::SyncStateStore as _;
use segment_sync_testkit::customers::customer_json;
use segment_sync_testkit::fake_commercetools::Failure;
use serde_json::{json, Value};

use crate::helpers::*;

/// `count` customers with hex ids spread evenly over the id space, each with
/// an email, modified just now.
fn spread_customers(count: u32) -> Vec<Value> {
    let step = u32::MAX / count;
    (0..count)
        .map(|n| {
            let mut customer = customer_json(
                &format!("{:08x}-0000-4000-8000-000000000000", n * step),
                1,
                Some(&format!("spread{n}@example.com")),
            );
            customer["lastModifiedAt"] = json!(timestamp_now());
            customer
        })
        .collect()
}

fn in_failing_range(customer: &Value) -> bool {
    let id = customer["id"].as_str().unwrap();
    ("8".."c").contains(&id)
}

#[tokio::test]
async fn a_failing_range_fails_the_run_after_the_others_are_delivered_and_the_next_run_catches_up()
{
    let customers = spread_customers(4_000);
    let segment = FakeSegment::start(SegmentMode::Accept).await;
    let ctp = FakeCommercetools::start(customers.clone()).await;
    // The third of four ranges answers 500 (not retried) from its first page on.
    ctp.fail_when(|request| {
        let predicate = request.param("where")?;
        predicate
            .ends_with(r#"id < "c""#)
            .then(|| Failure::status(500))
    });
    let app = App::new()
        .with_fakes(&segment, Some(&ctp))
        .env("CTP_CONCURRENCY", "2");

    let failed = app.run(&["sync", "--json", "--concurrency", "4"]).await;

    assert_eq!(failed.status.code(), Some(3), "stderr: {}", stderr(&failed));
    assert!(
        stderr(&failed).contains("customer query answered 500"),
        "stderr: {}",
        stderr(&failed)
    );
    let others: HashSet<String> = customers
        .iter()
        .filter(|c| !in_failing_range(c))
        .map(|c| c["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(others.len(), 3_000);
    let delivered = segment.deliveries_by_user();
    assert_eq!(
        delivered.keys().cloned().collect::<HashSet<_>>(),
        others,
        "the other ranges' customers, and only those"
    );
    assert!(delivered.values().all(|n| *n == 1));
    assert_eq!(summary(&failed)["read"], 3_000);
    assert_eq!(summary(&failed)["sent"], 3_000);
    let store =
        segment_sync_adapters::sqlite_state::SqliteStateStore::open(&app.state_path()).unwrap();
    assert_eq!(
        store.high_water_mark().await.unwrap(),
        None,
        "the mark stays while a range is unread"
    );
    drop(store);

    ctp.stop_failing();
    let caught_up = app.run(&["sync", "--json"]).await;

    assert_eq!(
        caught_up.status.code(),
        Some(0),
        "stderr: {}",
        stderr(&caught_up)
    );
    assert_eq!(summary(&caught_up)["read"], 4_000);
    assert_eq!(
        summary(&caught_up)["sent"],
        1_000,
        "only the range not read"
    );
    assert_eq!(summary(&caught_up)["unchanged"], 3_000);
    let delivered = segment.deliveries_by_user();
    assert_eq!(delivered.len(), 4_000);
    assert!(delivered.values().all(|n| *n == 1), "nobody sent twice");
    let store =
        segment_sync_adapters::sqlite_state::SqliteStateStore::open(&app.state_path()).unwrap();
    assert!(store.high_water_mark().await.unwrap().is_some());
    // The second run walked two ranges, as CTP_CONCURRENCY says.
    let starts: HashSet<String> = ctp
        .customer_queries()
        .iter()
        .filter_map(|q| q.param("where").map(str::to_owned))
        .filter(|w| !w.contains(r#"id > ""#))
        .collect();
    assert!(starts.contains(r#"id < "8""#), "{starts:?}");
    assert!(starts.contains(r#"id >= "8""#), "{starts:?}");
}
