use std::sync::Arc;

use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_domain::sync::DeadLetterKind;
use segment_sync_domain::{Customer, DeliveryError, Outcome, UserIdStrategy};
use segment_sync_ports::{
    MockSegmentClient, MockSyncStateStore, PendingOutcome, SourceRecord, SyncStateStore,
};

use super::*;

fn customer(id: &str, first_name: &str) -> Customer {
    Customer {
        id: id.to_owned(),
        version: 1,
        email: Some(format!("{id}@example.com")),
        first_name: Some(first_name.to_owned()),
        ..Customer::default()
    }
}

/// A Segment client that answers every message with `outcome`.
fn segment_answering(outcome: Outcome) -> MockSegmentClient {
    let mut segment = MockSegmentClient::new();
    segment
        .expect_identify()
        .returning(move |_| Ok(PendingOutcome::ready(outcome.clone())));
    segment
}

/// A deadline the tests never reach.
fn later() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(60)
}

fn state() -> Arc<SqliteStateStore> {
    Arc::new(SqliteStateStore::open_in_memory().expect("in-memory state"))
}

fn service(segment: MockSegmentClient, state: Arc<dyn SyncStateStore>) -> SyncService {
    SyncService::new(Arc::new(segment), state, UserIdStrategy::Email.into())
}

#[tokio::test]
async fn an_unchanged_customer_never_reaches_segment() {
    let state = state();
    service(segment_answering(Outcome::Delivered), state.clone())
        .deliver(customer("c1", "Ada"), later())
        .await
        .unwrap();
    let mut segment = MockSegmentClient::new();
    segment.expect_identify().never();
    let again = service(segment, state)
        .deliver(customer("c1", "Ada"), later())
        .await
        .unwrap();
    assert_eq!(again, Delivery::Unchanged);
}

#[tokio::test]
async fn a_stale_dead_letter_goes_when_the_customer_turns_out_unchanged() {
    let state = state();
    // Content A is delivered; content B fails and becomes a dead letter.
    let delivering = service(segment_answering(Outcome::Delivered), state.clone());
    assert!(matches!(
        delivering
            .deliver(customer("c1", "A"), later())
            .await
            .unwrap(),
        Delivery::Delivered { .. }
    ));
    let failing = service(
        segment_answering(Outcome::Failed(DeliveryError::ConnectionFailed)),
        state.clone(),
    );
    assert_eq!(
        failing.deliver(customer("c1", "B"), later()).await.unwrap(),
        Delivery::Failed(DeliveryError::ConnectionFailed)
    );
    let letters = state.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::Failed);

    // Back to A: Segment has it, and B must not be replayed over it later.
    assert_eq!(
        delivering
            .deliver(customer("c1", "A"), later())
            .await
            .unwrap(),
        Delivery::Unchanged
    );
    assert!(state.dead_letters().await.unwrap().is_empty());
    assert!(delivering
        .replayable(None, 10)
        .await
        .unwrap()
        .messages
        .is_empty());
}

#[tokio::test]
async fn a_delivery_clears_the_customers_dead_letters() {
    let state = state();
    service(
        segment_answering(Outcome::Failed(DeliveryError::NetworkTimeout)),
        state.clone(),
    )
    .deliver(customer("c1", "A"), later())
    .await
    .unwrap();
    assert_eq!(state.dead_letters().await.unwrap().len(), 1);
    service(segment_answering(Outcome::Delivered), state.clone())
        .deliver(customer("c1", "B"), later())
        .await
        .unwrap();
    assert!(state.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn refused_and_untransformable_customers_are_dead_letters_with_their_reason() {
    let state = state();
    let refusing = service(
        segment_answering(Outcome::Rejected(DeliveryError::BadRequest {
            detail: None,
        })),
        state.clone(),
    );
    assert_eq!(
        refusing
            .deliver(customer("c1", "A"), later())
            .await
            .unwrap(),
        Delivery::Rejected(DeliveryError::BadRequest { detail: None })
    );
    let mut huge = customer("c2", "A");
    huge.first_name = Some("x".repeat(40_000));
    assert_eq!(
        refusing.deliver(huge, later()).await.unwrap(),
        Delivery::Rejected(DeliveryError::PayloadTooLarge)
    );
    let letters = state.dead_letters().await.unwrap();
    let codes: Vec<(&str, &str, bool)> = letters
        .iter()
        .map(|l| (l.customer_id.as_str(), l.code.as_str(), l.payload.is_some()))
        .collect();
    assert_eq!(
        codes,
        [
            ("c1", "bad_request", true),
            ("c2", "payload_too_large", false)
        ]
    );
}

#[tokio::test]
async fn a_customer_without_email_is_skipped_without_asking_anyone() {
    let mut segment = MockSegmentClient::new();
    segment.expect_identify().never();
    let mut state = MockSyncStateStore::new();
    state.expect_claim().never();
    state.expect_settle().never();
    let mut no_email = customer("c1", "A");
    no_email.email = None;
    let outcome = service(segment, Arc::new(state))
        .deliver(no_email, later())
        .await
        .unwrap();
    assert_eq!(outcome, Delivery::Skipped(SkipReason::NoEmail));
}

#[tokio::test]
async fn one_customer_costs_at_most_two_round_trips_to_the_state() {
    let mut state = MockSyncStateStore::new();
    state
        .expect_claim()
        .times(1)
        .returning(|_, _, _| Ok(Default::default()));
    state.expect_settle().times(1).returning(|_| Ok(()));
    let outcome = service(segment_answering(Outcome::Delivered), Arc::new(state))
        .deliver(customer("c1", "A"), later())
        .await
        .unwrap();
    assert!(matches!(outcome, Delivery::Delivered { .. }));
}

#[tokio::test]
async fn decisions_keep_the_records_order_and_resending_ignores_what_segment_has() {
    let state = state();
    let delivering = service(segment_answering(Outcome::Delivered), state.clone());
    delivering
        .deliver(customer("c2", "B"), later())
        .await
        .unwrap();
    let mut no_email = customer("c3", "C");
    no_email.email = None;
    let records = || {
        vec![
            SourceRecord::Customer(Box::new(customer("c1", "A"))),
            SourceRecord::Customer(Box::new(customer("c2", "B"))),
            SourceRecord::Customer(Box::new(no_email.clone())),
            SourceRecord::Malformed {
                position: "line 4".to_owned(),
                customer_id: None,
                reason: "expected value".to_owned(),
            },
        ]
    };
    let kinds = |decisions: Vec<Decision>| -> Vec<&'static str> {
        decisions
            .iter()
            .map(|d| match d {
                Decision::Send(_) => "send",
                Decision::Unchanged { .. } => "unchanged",
                Decision::Skipped { .. } => "skipped",
                Decision::Rejected { .. } => "rejected",
                Decision::Stale { .. } => "stale",
                Decision::Busy(_) => "busy",
                Decision::Refused { .. } => "refused",
            })
            .collect()
    };
    assert_eq!(
        kinds(delivering.decide(records(), false, "test").await.unwrap()),
        ["send", "unchanged", "skipped", "rejected"]
    );
    assert_eq!(
        kinds(delivering.decide(records(), true, "test").await.unwrap()),
        ["send", "send", "skipped", "rejected"]
    );
    let letters = state.dead_letters().await.unwrap();
    assert_eq!(letters[0].customer_id, "line 4");
    assert!(letters[0].reason.starts_with("Invalid payload at line 4"));
}

#[tokio::test]
async fn a_failed_dead_letter_is_replayable_and_an_unusable_one_becomes_rejected() {
    let state = state();
    service(
        segment_answering(Outcome::Failed(DeliveryError::ServerError { status: 503 })),
        state.clone(),
    )
    .deliver(customer("c1", "A"), later())
    .await
    .unwrap();
    let mut broken = state.dead_letters().await.unwrap().remove(0);
    broken.customer_id = "c2".to_owned();
    broken.payload = Some("{not json".to_owned());
    state.add_dead_letters(&[broken]).await.unwrap();

    let replay = service(segment_answering(Outcome::Delivered), state.clone())
        .replayable(None, 10)
        .await
        .unwrap();
    assert_eq!(replay.read, 2);
    assert!(replay.next.is_some());
    assert_eq!(replay.messages.len(), 1);
    assert_eq!(replay.messages[0].customer_id(), "c1");
    assert_eq!(replay.unusable, 1);
    let kinds: Vec<(String, DeadLetterKind)> = state
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.customer_id, l.kind))
        .collect();
    assert!(kinds.contains(&("c2".to_owned(), DeadLetterKind::Rejected)));
}

#[tokio::test]
async fn a_client_that_refuses_the_message_is_an_error_to_retry() {
    let mut segment = MockSegmentClient::new();
    segment
        .expect_identify()
        .returning(|_| Err(segment_sync_ports::SegmentError::Closed));
    let outcome = service(segment, state())
        .deliver(customer("c1", "A"), later())
        .await;
    assert!(matches!(outcome, Err(ServiceError::Segment(_))));
}
