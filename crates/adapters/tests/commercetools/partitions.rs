//! The walk over several id ranges at once: every customer exactly once whatever
//! its id looks like, the changed-since window in every range, one failing range
//! reported after the others were read, and overloads that slow the walk down
//! and let it speed up again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use segment_sync_adapters::commercetools::{CommercetoolsConfig, HttpCustomerSource};
use segment_sync_domain::retry::RetryPolicy;
use segment_sync_ports::{CustomerQuery, CustomerSource, SelfCheck, SourceError, SourceRecord};
use segment_sync_testkit::customers::customer_json;
use segment_sync_testkit::fake_commercetools::{Failure, FakeCommercetools};
use segment_sync_testkit::generate;
use serde_json::{json, Value};
use time::macros::datetime;

use super::{config, source, walk_all};

/// A source over `api` walking `concurrency` ranges with pages of `page_size`.
fn partitioned(api: &FakeCommercetools, concurrency: u32, page_size: u32) -> HttpCustomerSource {
    let mut config: CommercetoolsConfig = config(api.url());
    config.concurrency = concurrency;
    config.page_size = page_size;
    source(config)
}

/// Every id read, checked to be read once.
fn once_each(read: Vec<String>) -> BTreeSet<String> {
    let count = read.len();
    let set: BTreeSet<String> = read.into_iter().collect();
    assert_eq!(set.len(), count, "a customer was read twice");
    set
}

fn customers_with_ids(ids: &[String]) -> Vec<Value> {
    ids.iter().map(|id| customer_json(id, 1, None)).collect()
}

#[tokio::test]
async fn uniform_uuids_are_read_once_each_by_as_many_cursors_at_once() {
    let count = 3_000;
    let api = FakeCommercetools::builder()
        .generated(count, generate::DEFAULT_SEED)
        .page_latency(Duration::from_millis(300))
        .start()
        .await;
    let source = partitioned(&api, 8, 100);

    let read = once_each(walk_all(&source, CustomerQuery::All).await.unwrap());

    let all: BTreeSet<String> = (0..count)
        .map(|index| generate::customer_id(generate::DEFAULT_SEED, index))
        .collect();
    assert_eq!(read, all);
    assert_eq!(api.max_in_flight(), 8, "one request per range at once");
    let queries = api.customer_queries();
    let firsts: BTreeSet<&str> = queries
        .iter()
        .filter_map(|q| q.param("where"))
        .filter(|w| !w.contains(r#"id > ""#))
        .collect();
    assert_eq!(firsts.len(), 8, "each range starts once: {firsts:?}");
    assert!(firsts.contains(r#"id < "2""#), "{firsts:?}");
    assert!(firsts.contains(r#"id >= "2" and id < "4""#), "{firsts:?}");
    assert!(firsts.contains(r#"id >= "e""#), "{firsts:?}");
    for query in &queries {
        assert_eq!(query.param("offset"), None);
        assert_eq!(query.param("withTotal"), Some("false"));
        assert_eq!(query.param("sort"), Some("id asc"));
    }
}

#[tokio::test]
async fn skewed_ids_all_in_one_range_are_still_read_once_each() {
    let ids: Vec<String> = (0..1_234).map(|n| format!("0{n:07x}-skewed")).collect();
    let api = FakeCommercetools::start(customers_with_ids(&ids)).await;
    let source = partitioned(&api, 16, 100);

    let read = once_each(walk_all(&source, CustomerQuery::All).await.unwrap());

    assert_eq!(read, ids.into_iter().collect());
}

#[tokio::test]
async fn ids_that_are_not_hex_land_in_exactly_one_range() {
    let mut ids: Vec<String> = [
        "!bang",
        "+plus",
        "-dash",
        "0",
        "00",
        "1",
        "9~",
        "A-upper",
        "ZZZ",
        "_under",
        "`tick",
        "f",
        "ff",
        "g-after-hex",
        "customer-42",
        "zzz",
        "~tilde",
        "ä-umlaut",
        "日本",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    ids.extend((0..300).map(|n| format!("imported-{n}")));
    let api = FakeCommercetools::start(customers_with_ids(&ids)).await;

    for concurrency in [2, 7, 16, 64] {
        let source = partitioned(&api, concurrency, 10);
        let read = once_each(walk_all(&source, CustomerQuery::All).await.unwrap());
        assert_eq!(read, ids.iter().cloned().collect(), "{concurrency} ranges");
    }
}

#[tokio::test]
async fn changed_since_holds_in_every_range() {
    let since = datetime!(2024-05-01 10:00:00 UTC);
    let customers: Vec<Value> = (0..2_000u64)
        .map(|n| {
            let mut customer = customer_json(&format!("{:08x}", n * 2_147_483), 1, None);
            customer["lastModifiedAt"] = json!(if n % 3 == 0 {
                "2024-04-30T23:59:59.999Z"
            } else {
                "2024-05-01T10:00:00.000Z"
            });
            customer
        })
        .collect();
    let wanted: BTreeSet<String> = customers
        .iter()
        .filter(|c| c["lastModifiedAt"] != "2024-04-30T23:59:59.999Z")
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let api = FakeCommercetools::start(customers).await;
    let source = partitioned(&api, 4, 100);

    let read = once_each(
        walk_all(&source, CustomerQuery::ChangedSince(since))
            .await
            .unwrap(),
    );

    assert_eq!(read, wanted);
    let queries = api.customer_queries();
    assert!(queries.len() > 4, "several pages per range");
    for query in queries {
        let predicate = query.param("where").unwrap_or_default();
        assert!(
            predicate.starts_with(r#"lastModifiedAt >= "2024-05-01T10:00:00.000Z""#),
            "{predicate}"
        );
    }
}

#[tokio::test]
async fn a_failing_range_fails_the_walk_after_the_others_are_read() {
    let ids: Vec<String> = (0..1_600u32)
        .map(|n| format!("{:08x}", n.wrapping_mul(2_684_354)))
        .collect();
    let api = FakeCommercetools::start(customers_with_ids(&ids)).await;
    // The third of four ranges, `["8", "c")`, answers 500 on its second page.
    api.fail_when(|request| {
        let predicate = request.param("where")?;
        (predicate.contains(r#"id > "8"#) && predicate.ends_with(r#"id < "c""#))
            .then(|| Failure::status(500))
    });
    let source = partitioned(&api, 4, 50);

    let mut pages = source.customers(CustomerQuery::All).await.unwrap();
    let mut read = Vec::new();
    let error = loop {
        match pages.next_page().await {
            Ok(Some(page)) => read.extend(page.records.into_iter().map(|r| match r {
                SourceRecord::Customer(c) => c.id,
                SourceRecord::Malformed { reason, .. } => panic!("{reason}"),
            })),
            Ok(None) => panic!("the walk ended as if complete"),
            Err(error) => break error,
        }
    };

    assert!(
        matches!(&error, SourceError::Protocol(reason) if reason.contains("500")),
        "{error:?}"
    );
    let read = once_each(read);
    let failed_range = |id: &String| id.as_str() >= "8" && id.as_str() < "c";
    let others: BTreeSet<String> = ids.iter().filter(|id| !failed_range(id)).cloned().collect();
    assert!(
        read.is_superset(&others),
        "every customer of the other ranges was handed out first"
    );
    assert_eq!(
        read.iter().filter(|id| failed_range(id)).count(),
        50,
        "only the failing range's first page"
    );
}

#[tokio::test]
async fn an_overload_storm_halves_the_requests_in_flight_and_they_recover() {
    let api = FakeCommercetools::builder()
        .generated(50_000, generate::DEFAULT_SEED)
        .page_latency(Duration::from_millis(80))
        .start()
        .await;
    let storm = Arc::new(AtomicBool::new(true));
    let raging = Arc::clone(&storm);
    api.fail_when(move |_| raging.load(Ordering::SeqCst).then(|| Failure::status(503)));
    let mut config = config(api.url());
    config.concurrency = 8;
    config.page_size = 100;
    config.retry = RetryPolicy {
        max_attempts: 100,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::commercetools()
    };
    let source = source(config);
    let reader = tokio::spawn(async move { walk_all(&source, CustomerQuery::All).await });

    api.wait_for_queries(40, Duration::from_secs(10)).await;
    storm.store(false, Ordering::SeqCst);
    api.reset_max_in_flight();
    // Well within the hold that follows an overload: about 0.4 s at four at once.
    let answered = api.customer_queries().len();
    api.wait_for_queries(answered + 20, Duration::from_secs(10))
        .await;
    let during_hold = api.reset_max_in_flight();
    let read = reader.await.unwrap().unwrap();
    let recovered = api.max_in_flight();

    assert!(
        during_hold <= 4,
        "{during_hold} requests at once right after the storm"
    );
    assert_eq!(recovered, 8, "back to every range at once");
    assert_eq!(once_each(read).len(), 50_000, "the storm lost no customer");
}

#[tokio::test]
async fn the_self_check_reads_the_first_page_with_one_cursor_whatever_the_ranges() {
    let ids: Vec<String> = (0..1_000u32)
        .map(|n| format!("{:08x}", n.wrapping_mul(4_294_967)))
        .collect();
    let api = FakeCommercetools::start(customers_with_ids(&ids)).await;
    let source = partitioned(&api, 16, 500);

    let lines = source.self_check().await;

    assert!(lines.iter().all(|line| line.passed()), "{lines:?}");
    assert!(
        lines[1]
            .to_string()
            .contains("500 customer(s) on the first page"),
        "{lines:?}"
    );
    // The first page over the whole id space, and at most the next one read
    // ahead before the check let go of the walk: no range of its own.
    let queries = api.customer_queries();
    assert_eq!(queries[0].param("where"), None, "the whole id space");
    assert!(queries.len() <= 2, "{} requests", queries.len());
    assert!(
        queries
            .iter()
            .all(|q| !q.param("where").unwrap_or_default().contains("id <")),
        "no id range"
    );
}
