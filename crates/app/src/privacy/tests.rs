//! The deletion rule over the in-memory ports, on tokio's paused clock.

use segment_sync_testkit::memory::{MemoryRegulations, MemoryStateStore};

use super::*;

fn email(id: &str) -> String {
    format!("{id}@example.com")
}

/// `ids` recorded as delivered, each under its email.
async fn delivered(state: &MemoryStateStore, ids: &[String]) {
    let deliveries: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), email(id))).collect();
    state.deliver_as(&deliveries).await;
}

/// `count` users Segment accepted in a regulation this month.
async fn regulated_this_month(state: &MemoryStateStore, count: u64) {
    let now = OffsetDateTime::now_utc();
    let earlier: Vec<DeletionRecord> = (0..count)
        .map(|n| DeletionRecord {
            id: 0,
            subject: format!("earlier-{n}"),
            regulation_type: "SUPPRESS_WITH_DELETE".to_owned(),
            requested_at: now,
            regulation_id: Some("reg-earlier".to_owned()),
            sent_at: Some(now),
            status: Some("FINISHED".to_owned()),
        })
        .collect();
    state.import_deletions(&earlier).await.unwrap();
}

fn numbered(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("c{n:05}")).collect()
}

fn by_id(ids: &[String]) -> Vec<Subject> {
    ids.iter().cloned().map(Subject::CustomerId).collect()
}

struct World {
    state: Arc<MemoryStateStore>,
    segment: MemoryRegulations,
    deletions: Arc<Deletions>,
}

fn world(on: bool) -> World {
    let state = Arc::new(MemoryStateStore::new());
    let segment = MemoryRegulations::new();
    let regulator = on.then(|| Regulator {
        client: Arc::new(segment.clone()),
        kind: RegulationType::SuppressWithDelete,
    });
    let deletions = Arc::new(Deletions::new(state.clone(), regulator));
    World {
        state,
        segment,
        deletions,
    }
}

#[tokio::test]
async fn a_forgotten_customer_is_erased_and_its_user_id_regulated_once() {
    let w = world(true);
    delivered(&w.state, &numbered(2)).await;

    let answers = w.deletions.forget(&by_id(&numbered(1))).await.unwrap();
    assert_eq!(answers[0].user_ids, [email("c00000")]);
    assert_eq!(answers[0].queued, 1);
    assert_eq!(w.state.fingerprint("c00000"), None, "erased at once");
    assert!(w.state.fingerprint("c00001").is_some());

    let sent = w.deletions.send_queued().await.unwrap();
    assert_eq!(sent.users, 1);
    assert_eq!(w.segment.calls().len(), 1);
    assert_eq!(w.segment.calls()[0].0, RegulationType::SuppressWithDelete);
    assert_eq!(w.segment.regulated_subjects(), [email("c00000")]);
    let kept = w.state.deletions_after(None, 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].regulation_id.as_deref(),
        Some(sent.regulations[0].as_str())
    );
    assert_eq!(kept[0].status.as_deref(), Some(REQUESTED));

    assert_eq!(w.deletions.send_queued().await.unwrap(), Sent::default());
    assert_eq!(w.segment.calls().len(), 1, "nothing sent twice");
}

#[tokio::test]
async fn with_deletion_off_a_customer_is_erased_here_and_nothing_reaches_segment() {
    let w = world(false);
    delivered(&w.state, &numbered(1)).await;
    let answers = w.deletions.forget(&by_id(&numbered(1))).await.unwrap();
    assert_eq!(answers[0].customer_ids, ["c00000"]);
    assert_eq!(answers[0].queued, 0);
    assert_eq!(w.deletions.send_queued().await.unwrap(), Sent::default());
    assert!(w.segment.calls().is_empty());
    assert!(w.state.deletions_after(None, 10).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_deletions_goes_to_segment_in_one_request_at_most_per_5000() {
    let w = world(true);
    let ids = numbered(7_500);
    delivered(&w.state, &ids).await;
    let (stop, stopped) = watch::channel(false);
    let regulator = tokio::spawn(Arc::clone(&w.deletions).regulate_in_background(stopped));

    for chunk in ids[..2_500].chunks(1) {
        w.deletions.forget(&by_id(chunk)).await.unwrap();
    }
    // The gathering time passes on the paused clock; the regulator sends them.
    tokio::time::sleep(GATHER * 2).await;
    assert_eq!(w.segment.calls().len(), 1);
    assert_eq!(w.segment.calls()[0].1.len(), 2_500);

    w.deletions.forget(&by_id(&ids[2_500..])).await.unwrap();
    stop.send(true).unwrap();
    regulator.await.unwrap();
    let sizes: Vec<usize> = w.segment.calls().iter().map(|(_, s)| s.len()).collect();
    assert_eq!(
        sizes,
        [2_500, 5_000],
        "the rest sent at shutdown, 5,000 a request"
    );
    let mut regulated = w.segment.regulated_subjects();
    regulated.sort();
    regulated.dedup();
    assert_eq!(regulated.len(), 7_500, "every user once");
}

#[tokio::test]
async fn past_the_monthly_allowance_deletions_stay_queued() {
    let w = world(true);
    regulated_this_month(&w.state, MONTHLY_REGULATED_USERS_LIMIT - 1).await;
    delivered(&w.state, &numbered(3)).await;
    w.deletions.forget(&by_id(&numbered(3))).await.unwrap();

    let sent = w.deletions.send_queued().await.unwrap();
    assert_eq!(sent.users, 1, "one left in the month");
    assert_eq!(sent.over_limit, 2);
    assert_eq!(w.state.queued_deletions(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_request_is_kept_with_its_reason_and_an_unavailable_api_loses_nothing() {
    let w = world(true);
    delivered(&w.state, &numbered(2)).await;
    w.deletions.forget(&by_id(&numbered(1))).await.unwrap();
    w.segment.fail_next(RegulationError::Unavailable {
        reason: "HTTP 503".to_owned(),
    });
    assert!(matches!(
        w.deletions.send_queued().await,
        Err(DeletionError::Regulation(
            RegulationError::Unavailable { .. }
        ))
    ));
    assert_eq!(
        w.state.queued_deletions(10).await.unwrap().len(),
        1,
        "still queued"
    );
    assert_eq!(w.deletions.send_queued().await.unwrap().users, 1);

    w.deletions.forget(&by_id(&numbered(2)[1..])).await.unwrap();
    w.segment.fail_next(RegulationError::Refused {
        status: 422,
        message: "invalid subject".to_owned(),
    });
    let sent = w.deletions.send_queued().await.unwrap();
    assert_eq!(sent.refused, 1);
    assert!(w.state.queued_deletions(10).await.unwrap().is_empty());
    let kept = w.state.deletions_after(None, 10).await.unwrap();
    assert_eq!(kept[1].regulation_id, None);
    assert_eq!(
        kept[1].status.as_deref(),
        Some("refused (HTTP 422): invalid subject")
    );
}

#[test]
fn an_argument_with_an_at_sign_is_a_user_id() {
    assert_eq!(
        subject(" jane@example.com "),
        Subject::UserId("jane@example.com".to_owned())
    );
    assert_eq!(subject("c-1"), Subject::CustomerId("c-1".to_owned()));
}

#[test]
fn a_month_starts_on_its_first_day_at_midnight_utc() {
    let now = time::macros::datetime!(2026-11-30 23:59:59 +02:00);
    assert_eq!(
        month_start(now),
        time::macros::datetime!(2026-11-01 00:00:00 UTC)
    );
}

#[test]
fn the_next_month_starts_on_its_first_day_even_after_december() {
    let now = time::macros::datetime!(2026-11-30 23:59:59 +02:00);
    assert_eq!(
        next_month_start(now),
        time::macros::datetime!(2026-12-01 00:00:00 UTC)
    );
    let december = time::macros::datetime!(2026-12-31 12:00:00 UTC);
    assert_eq!(
        next_month_start(december),
        time::macros::datetime!(2027-01-01 00:00:00 UTC)
    );
}

#[tokio::test]
async fn a_refusal_stops_the_sending_and_leaves_the_rest_queued() {
    let w = world(true);
    let ids = numbered(7_000);
    delivered(&w.state, &ids).await;
    w.deletions.forget(&by_id(&ids)).await.unwrap();
    w.segment.fail_next(RegulationError::Refused {
        status: 404,
        message: "not found".to_owned(),
    });

    let sent = w.deletions.send_queued().await.unwrap();

    assert_eq!(sent.refused, 5_000);
    assert_eq!(w.segment.calls().len(), 1, "no request after a refusal");
    assert_eq!(w.state.queued_deletions(10_000).await.unwrap().len(), 2_000);
}

#[tokio::test(start_paused = true)]
async fn past_the_allowance_the_regulator_sends_nothing_and_keeps_the_queue() {
    let w = world(true);
    regulated_this_month(&w.state, MONTHLY_REGULATED_USERS_LIMIT).await;
    delivered(&w.state, &numbered(1)).await;
    w.deletions.forget(&by_id(&numbered(1))).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let regulator = tokio::spawn(Arc::clone(&w.deletions).regulate_in_background(stopped));

    // Well past the gathering time, but not yet next month: nothing is tried.
    tokio::time::sleep(MAX_GATHER * 3).await;
    assert!(w.segment.calls().is_empty());
    stop.send(true).unwrap();
    regulator.await.unwrap();
    assert!(w.segment.calls().is_empty(), "still past the allowance");
    assert_eq!(w.state.queued_deletions(10).await.unwrap().len(), 1);
}
