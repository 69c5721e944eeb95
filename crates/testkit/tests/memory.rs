//! What the in-memory ports add to their ports' contracts: scripts, switches,
//! logs and waiters.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use segment_sync_domain::identify::identify;
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind};
use segment_sync_domain::{
    Customer, DeliveryError, Fingerprint, Identify, Outcome, UserIdStrategy,
};
use segment_sync_ports::{
    CustomerQuery, CustomerSource, Delivered, RunStart, SegmentClient, SegmentError, Settlement,
    SourceError, SourceRecord, StateError, SyncStateStore,
};
use segment_sync_testkit::memory::{
    Gate, MemorySegment, MemorySource, MemoryStateStore, SegmentBehaviour,
};
use time::macros::datetime;

fn customer(id: &str, last_modified_at: Option<&str>) -> Customer {
    Customer {
        id: id.to_owned(),
        version: 1,
        email: Some(format!("{id}@example.com")),
        last_modified_at: last_modified_at.map(str::to_owned),
        ..Customer::default()
    }
}

fn message(id: &str) -> Identify {
    identify(&customer(id, None), UserIdStrategy::Email).unwrap()
}

fn is_pending<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
    future
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

#[tokio::test]
async fn queued_behaviours_come_first_then_the_standing_one() {
    let segment = MemorySegment::new();
    segment.behave_next(SegmentBehaviour::Fail(DeliveryError::NetworkTimeout));
    segment.behave_next(SegmentBehaviour::Reject(DeliveryError::InvalidPayload));
    segment.behave_next(SegmentBehaviour::Refuse(SegmentError::Closed));

    let first = segment.identify(message("a")).await.unwrap().await;
    let second = segment.identify(message("b")).await.unwrap().await;
    let third = segment.identify(message("c")).await.unwrap_err();
    let fourth = segment.identify(message("d")).await.unwrap().await;

    assert_eq!(first, Outcome::Failed(DeliveryError::NetworkTimeout));
    assert_eq!(second, Outcome::Rejected(DeliveryError::InvalidPayload));
    assert_eq!(third, SegmentError::Closed);
    assert_eq!(fourth, Outcome::Delivered, "the standing behaviour");
    let kept: Vec<String> = segment
        .sent_json()
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kept,
        ["a@example.com", "b@example.com", "d@example.com"],
        "a refused message is not kept"
    );
}

#[tokio::test]
async fn a_gate_holds_outcomes_and_flushes_until_it_opens() {
    let gate = Gate::new();
    let segment = MemorySegment::behaving(SegmentBehaviour::Gated(gate.clone()));
    let outcome = segment.identify(message("a")).await.unwrap();
    let mut outcome = pin!(outcome);
    let flush = segment.flush();
    let mut flush = pin!(flush);

    assert!(is_pending(outcome.as_mut()), "held by the gate");
    assert!(is_pending(flush.as_mut()), "the flush waits for the gate");
    assert!(!gate.is_open());

    gate.open();

    assert_eq!(flush.await, Ok(()));
    assert_eq!(outcome.await, Outcome::Delivered);
}

#[tokio::test]
async fn a_late_delivery_comes_after_its_delay() {
    let segment = MemorySegment::behaving(SegmentBehaviour::DeliverAfter(Duration::from_millis(1)));

    let outcome = segment.identify(message("a")).await.unwrap();

    assert_eq!(outcome.await, Outcome::Delivered);
}

#[tokio::test]
async fn a_401_latches_and_is_remembered() {
    let segment = MemorySegment::new();
    segment.behave_next(SegmentBehaviour::Unauthorized);

    let outcome = segment.identify(message("a")).await.unwrap().await;

    assert_eq!(outcome, Outcome::Failed(DeliveryError::Unauthorized));
    assert!(segment.is_unauthorized());
    assert_eq!(
        segment.identify(message("b")).await.unwrap_err(),
        SegmentError::InvalidWriteKey,
        "even though the standing behaviour delivers"
    );
    assert_eq!(segment.sent().len(), 1);
}

#[tokio::test]
async fn waiting_for_messages_wakes_when_they_come() {
    let segment = Arc::new(MemorySegment::new());
    let sender = Arc::clone(&segment);
    let waiter = tokio::spawn(async move { segment.wait_for_sent(3).await });

    for id in ["a", "b", "c"] {
        sender.identify(message(id)).await.unwrap();
    }

    waiter.await.expect("the waiter returns once 3 were sent");
    assert!(!sender.is_closed());
    sender
        .close_and_flush(Duration::from_secs(1))
        .await
        .unwrap();
    assert!(sender.is_closed());
}

#[tokio::test]
async fn a_customer_put_again_keeps_its_place() {
    let source = MemorySource::new();
    source.put(customer("a", None));
    source.put(customer("b", None));
    let mut renamed = customer("a", None);
    renamed.first_name = Some("Ada".to_owned());

    source.put(renamed.clone());

    let records = source.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0], SourceRecord::Customer(Box::new(renamed)));
    assert!(source.remove("a"));
    assert!(!source.remove("a"));
    assert_eq!(source.customer_by_id("a").await.unwrap(), None);
    assert_eq!(
        source.customer_by_id("b").await.unwrap(),
        Some(customer("b", None)),
        "the index follows a removal"
    );
}

#[tokio::test]
async fn raw_records_that_are_not_customers_are_malformed_at_their_position() {
    let source = MemorySource::new();
    source.put_json(r#"{"id":"c1","version":1}"#);
    source.put_json(r#"{"id":"c2","version":"two"}"#);
    source.put_json(r#"{"version":3}"#);

    let records = source.records();

    assert!(matches!(&records[0], SourceRecord::Customer(c) if c.id == "c1"));
    assert!(
        matches!(&records[1], SourceRecord::Malformed { position, customer_id: Some(id), .. }
        if position == "record 2" && id == "c2")
    );
    assert!(
        matches!(&records[2], SourceRecord::Malformed { position, customer_id: None, reason }
        if position == "record 3" && reason == "customer has no id")
    );
    assert_eq!(
        source.customer_by_id("c2").await.unwrap(),
        None,
        "a malformed record is never found by id"
    );
}

#[tokio::test]
async fn changed_since_keeps_what_cannot_be_dated() {
    let source = MemorySource::new().with_page_size(10);
    source.put(customer("old", Some("2024-01-01T00:00:00.000Z")));
    source.put(customer("new", Some("2024-06-01T00:00:00.000Z")));
    source.put(customer("undated", None));
    source.put(customer("unreadable", Some("yesterday")));
    source.put_malformed(Some("broken"), "invalid type");

    let mut pages = source
        .customers(CustomerQuery::ChangedSince(datetime!(2024-05-01 00:00 UTC)))
        .await
        .unwrap();
    let page = pages.next_page().await.unwrap().unwrap();

    let kept: Vec<String> = page
        .records
        .iter()
        .map(|record| match record {
            SourceRecord::Customer(c) => c.id.clone(),
            SourceRecord::Malformed { customer_id, .. } => customer_id.clone().unwrap(),
        })
        .collect();
    assert_eq!(kept, ["new", "undated", "unreadable", "broken"]);
    assert_eq!(pages.next_page().await.unwrap(), None);
}

#[tokio::test]
async fn an_unavailable_source_fails_every_read_and_logs_it() {
    let source = MemorySource::new().with_page_size(1);
    source.put(customer("a", None));
    source.put(customer("b", None));
    let mut walk = source.customers(CustomerQuery::All).await.unwrap();
    assert!(walk.next_page().await.unwrap().is_some());

    source.set_unavailable(true);

    assert!(
        matches!(walk.next_page().await, Err(SourceError::Unavailable(_))),
        "mid-walk"
    );
    assert!(matches!(
        source.customers(CustomerQuery::All).await,
        Err(SourceError::Unavailable(_))
    ));
    assert!(matches!(
        source.customer_by_id("a").await,
        Err(SourceError::Unavailable(_))
    ));
    source.set_unavailable(false);
    assert!(source.customer_by_id("b").await.unwrap().is_some());
    assert_eq!(source.lookups(), ["a", "b"]);
    assert_eq!(source.walks(), [CustomerQuery::All, CustomerQuery::All]);
}

fn fingerprint(n: u128) -> Fingerprint {
    Fingerprint::from_hex(&format!("{n:032x}")).unwrap()
}

/// Records version 1 of customer `id` with fingerprint `n`.
async fn deliver(store: &MemoryStateStore, id: &str, n: u128) -> Result<(), StateError> {
    store
        .settle(Settlement {
            delivered: &[Delivered {
                customer_id: id,
                version: 1,
                fingerprint: fingerprint(n),
                user_id: "someone@example.com",
            }],
            holder: "test",
            ..Settlement::default()
        })
        .await
}

fn start(at: time::OffsetDateTime) -> RunStart {
    RunStart {
        kind: "sync".to_owned(),
        started_at: at,
        source: None,
        holder: "pid 1 on test".to_owned(),
    }
}

#[tokio::test]
async fn a_failing_store_fails_every_call_and_keeps_what_it_held() {
    let store = MemoryStateStore::new();
    deliver(&store, "a", 1).await.unwrap();

    store.set_failing(true);

    assert!(store.delivered(&["a".to_owned()]).await.is_err());
    assert!(store.settle(Settlement::default()).await.is_err());
    assert!(store.high_water_mark().await.is_err());
    assert!(store.dead_letters().await.is_err());
    assert!(store
        .begin_run(start(datetime!(2024-05-01 00:00 UTC)))
        .await
        .is_err());
    assert!(store.runs(1).await.is_err());
    assert_eq!(store.fingerprint("a"), Some(fingerprint(1)), "still held");
    store.set_failing(false);
    assert!(
        store.runs(1).await.unwrap().is_empty(),
        "the failed start made no run"
    );
}

#[tokio::test]
async fn a_snapshot_shows_everything_held() {
    let store = MemoryStateStore::new();
    let letter = DeadLetter {
        customer_id: "b".to_owned(),
        kind: DeadLetterKind::Failed,
        code: "network_timeout".to_owned(),
        reason: "Network timeout".to_owned(),
        payload: None,
        fingerprint: None,
        version: None,
        attempts: 1,
        recorded_at: "2024-05-01T10:00:00Z".to_owned(),
    };
    deliver(&store, "a", 1).await.unwrap();
    store
        .add_dead_letters(std::slice::from_ref(&letter))
        .await
        .unwrap();
    let at = datetime!(2024-05-01 10:00 UTC);
    store.set_high_water_mark(at).await.unwrap();
    let run = store.begin_run(start(at)).await.unwrap();

    let snapshot = store.snapshot();

    assert_eq!(
        snapshot.delivered.get("a").map(|row| row.fingerprint),
        Some(fingerprint(1))
    );
    assert_eq!(snapshot.dead_letters, [letter]);
    assert_eq!(snapshot.high_water_mark, Some(at));
    assert_eq!(snapshot.runs.len(), 1);
    assert_eq!(snapshot.runs[0].id, run.id());
}

#[tokio::test]
async fn waiting_on_the_store_wakes_on_the_write_that_makes_it_true() {
    let store = Arc::new(MemoryStateStore::new());
    let writer = Arc::clone(&store);
    let waiter = tokio::spawn(async move { store.wait_until(|s| s.fingerprint("b")).await });

    for (id, n) in [("a", 1), ("b", 2)] {
        deliver(&writer, id, n).await.unwrap();
    }

    assert_eq!(waiter.await.unwrap(), fingerprint(2));
}

mod regulations {
    use std::time::Duration;

    use segment_sync_ports::{RegulationClient, RegulationError, RegulationType};
    use segment_sync_testkit::memory::MemoryRegulations;

    fn one(id: &str) -> Vec<String> {
        vec![id.to_owned()]
    }

    #[tokio::test]
    async fn a_failure_told_once_ends_one_call_and_is_recorded_as_reached() {
        let client = MemoryRegulations::new();
        let unavailable = RegulationError::Unavailable {
            reason: "HTTP 503 after 6 attempts".to_owned(),
        };
        client.fail_next(unavailable.clone());

        let failed = client.regulate(RegulationType::DeleteOnly, &one("a")).await;
        let accepted = client.regulate(RegulationType::DeleteOnly, &one("b")).await;

        assert_eq!(failed, Err(unavailable));
        let id = accepted.unwrap();
        assert_eq!(client.calls().len(), 2);
        assert_eq!(client.regulations().len(), 1);
        assert_eq!(client.regulated_subjects(), ["b"]);
        assert_eq!(client.regulations()[0].id, id);
        client.wait_for_regulations(1, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn failing_always_lasts_until_lifted() {
        let client = MemoryRegulations::new();
        let refused = RegulationError::Refused {
            status: 422,
            message: "bad".to_owned(),
        };
        client.fail_always(Some(refused.clone()));
        for _ in 0..2 {
            let ended = client
                .regulate(RegulationType::SuppressOnly, &one("a"))
                .await;
            assert_eq!(ended, Err(refused.clone()));
        }
        client.fail_always(None);
        assert!(client
            .regulate(RegulationType::SuppressOnly, &one("a"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn the_status_is_initialized_until_set() {
        let client = MemoryRegulations::new();
        let id = client
            .regulate(RegulationType::SuppressWithDelete, &one("a"))
            .await
            .unwrap();
        assert_eq!(client.status(&id).await.unwrap(), "INITIALIZED");
        client.set_status(&id, "FINISHED");
        assert_eq!(client.status(&id).await.unwrap(), "FINISHED");
        assert_eq!(client.regulations()[0].status, "FINISHED");
    }
}
