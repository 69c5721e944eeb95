//! The engine over the in-memory ports, on tokio's paused clock: no sockets, no
//! real timers, and a timeout of minutes passes in no time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use segment_sync_domain::sync::{DeadLetterKind, RunStatus};
use segment_sync_domain::{Customer, DeliveryError, IdentifyRules, UserIdStrategy};
use segment_sync_ports::{
    CustomerQuery, CustomerSource, MockCustomerPages, MockCustomerSource, MockSegmentClient,
    SegmentClient, SourceCapabilities, SourceError, SyncStateStore,
};
use segment_sync_testkit::memory::{
    Gate, MemorySegment, MemorySource, MemoryStateStore, SegmentBehaviour,
};
use tokio::sync::watch;

use super::*;

const DRAIN: Duration = Duration::from_secs(120);

/// A source of customers, a state, and a fresh Segment client per run, as each
/// run of the binary has.
struct World {
    source: Arc<MemorySource>,
    state: Arc<MemoryStateStore>,
}

impl World {
    /// `count` customers, every `no_email_every`-th without an email.
    fn new(count: usize, no_email_every: usize) -> Self {
        let source = MemorySource::new().with_page_size(100);
        for i in 0..count {
            source.put(customer(i, no_email_every == 0 || i % no_email_every != 0));
        }
        Self {
            source: Arc::new(source),
            state: Arc::new(MemoryStateStore::new()),
        }
    }

    fn with_source(source: MemorySource) -> Self {
        Self {
            source: Arc::new(source),
            state: Arc::new(MemoryStateStore::new()),
        }
    }

    fn parts(&self, segment: &Arc<MemorySegment>) -> (Ports, SyncService) {
        self.parts_under(segment, UserIdStrategy::Email.into())
    }

    fn parts_under(
        &self,
        segment: &Arc<MemorySegment>,
        rules: IdentifyRules,
    ) -> (Ports, SyncService) {
        let segment: Arc<dyn SegmentClient> = segment.clone();
        let state: Arc<dyn SyncStateStore> = self.state.clone();
        let service = SyncService::new(segment.clone(), state.clone(), rules);
        (Ports { segment, state }, service)
    }

    async fn sync_with(
        &self,
        segment: &Arc<MemorySegment>,
        request: Request,
        interrupt: watch::Receiver<bool>,
    ) -> Report {
        self.sync_under(segment, UserIdStrategy::Email.into(), request, interrupt)
            .await
    }

    async fn sync_under(
        &self,
        segment: &Arc<MemorySegment>,
        rules: IdentifyRules,
        request: Request,
        interrupt: watch::Receiver<bool>,
    ) -> Report {
        let (ports, service) = self.parts_under(segment, rules);
        run(self.source.as_ref(), &ports, &service, request, interrupt).await
    }

    async fn sync(&self, segment: &Arc<MemorySegment>) -> Report {
        self.sync_with(segment, Request::default(), never()).await
    }

    async fn replay(&self, segment: &Arc<MemorySegment>) -> Report {
        let (ports, service) = self.parts(segment);
        replay(&ports, &service, DRAIN, Arc::new(LiveCounts::default()))
            .await
            .expect("the replay starts and ends")
    }
}

fn options(request: Request) -> SyncOptions {
    SyncOptions {
        request,
        source_name: "memory".to_owned(),
        drain_timeout: DRAIN,
    }
}

fn customer(i: usize, with_email: bool) -> Customer {
    Customer {
        id: format!("c{i:05}"),
        version: 1,
        email: with_email.then(|| format!("user{i}@example.com")),
        first_name: Some(format!("First{i}")),
        // Just now: inside an incremental run's look-back window.
        last_modified_at: Some(crate::service::now_rfc3339()),
        ..Customer::default()
    }
}

fn segment(behaviour: SegmentBehaviour) -> Arc<MemorySegment> {
    Arc::new(MemorySegment::behaving(behaviour))
}

/// One sync of `source` over these ports, as a run of the binary does it.
async fn run(
    source: &dyn CustomerSource,
    ports: &Ports,
    service: &SyncService,
    request: Request,
    interrupt: watch::Receiver<bool>,
) -> Report {
    let live = Arc::new(LiveCounts::default());
    sync(source, ports, service, &options(request), live, interrupt)
        .await
        .expect("the run starts and ends")
}

/// An interrupt that never comes.
fn never() -> watch::Receiver<bool> {
    watch::channel(false).1
}

#[tokio::test(start_paused = true)]
async fn a_first_run_sends_each_customer_with_an_email_once_and_moves_the_mark() {
    let world = World::new(1_000, 10);
    let segment = segment(SegmentBehaviour::Deliver);

    let report = world.sync(&segment).await;

    assert_eq!(report.abort, None);
    assert_eq!(report.counts.read, 1_000);
    assert_eq!(report.counts.sent, 900);
    assert_eq!(report.counts.skipped, 100);
    assert_eq!(segment.sent().len(), 900);
    let state = world.state.snapshot();
    assert_eq!(state.delivered.len(), 900);
    assert!(state.high_water_mark.is_some(), "the mark moved");
    assert_eq!(state.runs[0].status, RunStatus::Succeeded);
    assert!(segment.is_closed(), "the run closes its client");
}

#[tokio::test(start_paused = true)]
async fn a_second_run_finds_everything_unchanged_and_sends_nothing() {
    let world = World::new(300, 0);
    world.sync(&segment(SegmentBehaviour::Deliver)).await;

    let second = segment(SegmentBehaviour::Deliver);
    let report = world.sync(&second).await;

    assert_eq!(report.counts.unchanged, 300);
    assert_eq!(report.counts.sent, 0);
    assert!(second.sent().is_empty());
    assert_eq!(world.source.walks().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn failures_keep_the_mark_and_a_replay_delivers_them() {
    let world = World::new(50, 0);
    let failing = segment(SegmentBehaviour::Fail(DeliveryError::MaxRetriesExceeded {
        last: Box::new(DeliveryError::ConnectionFailed),
    }));

    let report = world.sync(&failing).await;

    assert_eq!(report.counts.failed, 50);
    assert_eq!(report.status(), RunStatus::CompletedWithErrors);
    assert_eq!(
        report.last_failure.as_deref(),
        Some("Max retries exceeded (last: Connection failed)")
    );
    let state = world.state.snapshot();
    assert_eq!(state.high_water_mark, None, "the mark stays");
    assert_eq!(state.dead_letters.len(), 50);
    assert!(state
        .dead_letters
        .iter()
        .all(|l| l.kind == DeadLetterKind::Failed));

    let healthy = segment(SegmentBehaviour::Deliver);
    let replayed = world.replay(&healthy).await;
    assert_eq!(replayed.counts.sent, 50);
    assert_eq!(healthy.sent().len(), 50);
    let state = world.state.snapshot();
    assert!(state.dead_letters.is_empty());
    assert_eq!(state.delivered.len(), 50);
    assert_eq!(state.runs[1].kind, "replay");
}

#[tokio::test(start_paused = true)]
async fn a_replay_reads_the_dead_letters_a_page_at_a_time_and_sends_each_once() {
    let count = REPLAY_PAGE * 2 + 100;
    let world = World::new(count, 0);
    let failing = segment(SegmentBehaviour::Fail(DeliveryError::ServerError {
        status: 503,
    }));
    assert_eq!(world.sync(&failing).await.counts.failed, count as u64);

    // Failing again: each letter is tried once, not again after it moved to the
    // end of the list.
    let still_failing = segment(SegmentBehaviour::Fail(DeliveryError::ServerError {
        status: 503,
    }));
    let replayed = world.replay(&still_failing).await;
    assert_eq!(replayed.counts.read, count as u64);
    assert_eq!(replayed.counts.failed, count as u64);
    assert_eq!(world.state.snapshot().dead_letters.len(), count);

    let healthy = segment(SegmentBehaviour::Deliver);
    let replayed = world.replay(&healthy).await;
    assert_eq!(replayed.counts.sent, count as u64);
    let mut sent: Vec<String> = healthy
        .sent()
        .iter()
        .map(|m| m.customer_id().to_owned())
        .collect();
    assert_eq!(sent.len(), count, "none sent twice");
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), count, "every letter sent");
    assert!(world.state.snapshot().dead_letters.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_refused_write_key_aborts_the_run_and_keeps_the_mark() {
    let world = World::new(500, 0);
    let refused = segment(SegmentBehaviour::Unauthorized);

    let report = world.sync(&refused).await;

    assert_eq!(report.abort, Some(Abort::InvalidWriteKey));
    assert_eq!(report.status(), RunStatus::Aborted);
    let state = world.state.snapshot();
    assert!(state.delivered.is_empty());
    assert!(
        state.dead_letters.is_empty(),
        "a rerun with the right key sends them"
    );
    assert_eq!(state.high_water_mark, None);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_records_what_was_in_flight_and_keeps_the_mark() {
    let world = World::new(1_000, 0);
    let gate = Gate::new();
    let held = segment(SegmentBehaviour::Gated(gate.clone()));
    let (interrupt, interrupted) = watch::channel(false);

    let run = world.sync_with(&held, Request::default(), interrupted);
    let stop = async {
        held.wait_for_sent(150).await;
        interrupt.send_replace(true);
        gate.open();
    };
    let (report, ()) = tokio::join!(run, stop);

    assert_eq!(report.abort, Some(Abort::Interrupted));
    let sent = held.sent().len();
    assert!((150..1_000).contains(&sent), "stopped reading: {sent} sent");
    assert_eq!(
        report.counts.sent as usize, sent,
        "every handed-over message counted"
    );
    assert_eq!(
        report.counts.read,
        report.counts.sent + report.counts.failed,
        "read is what was handed over"
    );
    let state = world.state.snapshot();
    assert_eq!(
        state.delivered.len(),
        sent,
        "what was acknowledged is recorded"
    );
    assert_eq!(state.high_water_mark, None);
}

#[tokio::test(start_paused = true)]
async fn recording_that_outlasts_the_drain_timeout_aborts_the_run_and_keeps_the_mark() {
    let world = World::new(10, 0);
    world.state.set_write_delay(DRAIN * 3);
    let segment = segment(SegmentBehaviour::Deliver);

    // Start and mark writes are slow too; only the recording may time out.
    let report = world.sync(&segment).await;

    assert_eq!(report.abort, Some(Abort::Unrecorded(DRAIN)));
    assert_eq!(world.state.snapshot().high_water_mark, None);
}

#[tokio::test(start_paused = true)]
async fn a_segment_that_never_answers_ends_the_run_at_the_drain_timeout() {
    let world = World::new(5, 0);
    let stuck = segment(SegmentBehaviour::Gated(Gate::new()));

    let started = tokio::time::Instant::now();
    let report = world.sync(&stuck).await;

    assert!(matches!(
        report.abort,
        Some(Abort::Segment(_)) | Some(Abort::Unrecorded(_))
    ));
    assert!(started.elapsed() >= DRAIN, "it waited the drain timeout");
    assert_eq!(world.state.snapshot().high_water_mark, None);
}

#[tokio::test(start_paused = true)]
async fn an_export_is_read_whole_and_never_moves_the_mark() {
    let source = MemorySource::new().with_capabilities(SourceCapabilities {
        tracks_changes: false,
        by_id: true,
    });
    for i in 0..20 {
        source.put(customer(i, true));
    }
    let world = World::with_source(source);

    let report = world.sync(&segment(SegmentBehaviour::Deliver)).await;

    assert_eq!(report.counts.sent, 20);
    assert_eq!(world.state.snapshot().high_water_mark, None);
}

#[tokio::test(start_paused = true)]
async fn an_incremental_run_asks_for_changes_since_the_mark_less_the_margin() {
    let world = World::new(3, 0);
    world.sync(&segment(SegmentBehaviour::Deliver)).await;
    let mark = world.state.snapshot().high_water_mark.expect("moved");

    world.sync(&segment(SegmentBehaviour::Deliver)).await;

    assert_eq!(
        world.source.walks(),
        [
            CustomerQuery::All,
            CustomerQuery::ChangedSince(mark - SAFETY_MARGIN),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_walk_that_fails_stops_the_run_with_the_sources_error_and_never_reaches_segment() {
    let error = SourceError::Unavailable("customer query: status 503 after 6 attempt(s)".into());
    // The pages live on the reader's task, where a mock's own count would panic
    // unseen; the calls are counted here instead.
    let pages_asked = Arc::new(AtomicUsize::new(0));
    let mut source = MockCustomerSource::new();
    source
        .expect_capabilities()
        .return_const(SourceCapabilities {
            tracks_changes: true,
            by_id: true,
        });
    let (failure, asked) = (error.clone(), Arc::clone(&pages_asked));
    source
        .expect_customers()
        .withf(|query| *query == CustomerQuery::All)
        .times(1)
        .returning(move |_| {
            let mut pages = MockCustomerPages::new();
            let (failure, asked) = (failure.clone(), Arc::clone(&asked));
            pages.expect_next_page().returning(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                Err(failure.clone())
            });
            Ok(Box::new(pages))
        });
    let mut segment = MockSegmentClient::new();
    segment.expect_identify().never();
    segment.expect_flush().returning(|| Ok(()));
    segment
        .expect_close_and_flush()
        .times(1)
        .returning(|_| Ok(()));
    let segment: Arc<dyn SegmentClient> = Arc::new(segment);
    let store = Arc::new(MemoryStateStore::new());
    let state: Arc<dyn SyncStateStore> = store.clone();
    let service = SyncService::new(segment.clone(), state.clone(), UserIdStrategy::Email.into());

    let ports = Ports { segment, state };
    let report = run(&source, &ports, &service, Request::default(), never()).await;

    assert_eq!(report.abort, Some(Abort::Source(error.clone())));
    assert_eq!(report.counts.read, 0);
    assert_eq!(
        pages_asked.load(Ordering::SeqCst),
        1,
        "no page is asked for after the error"
    );
    let state = store.snapshot();
    assert_eq!(state.runs[0].status, RunStatus::Aborted);
    assert_eq!(state.runs[0].error, Some(error.to_string()));
    assert_eq!(state.high_water_mark, None);
}

/// Rules that leave `firstName` out: every customer's payload changes.
fn without_first_names() -> IdentifyRules {
    IdentifyRules::from_toml(
        UserIdStrategy::Email,
        "[traits]\nexclude = [\"firstName\"]\n",
        "mapping.toml",
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn changed_rules_are_recorded_only_once_a_run_compared_every_customer() {
    let world = World::new(10, 0);
    let first = world.sync(&segment(SegmentBehaviour::Deliver)).await;
    assert!(!first.rules_changed);
    let standard = world.state.snapshot().rules_fingerprint;
    assert!(standard.is_some(), "the first run records its rules");

    // A run that reads only `--since` compares only some customers.
    let since = Request {
        since: Some(OffsetDateTime::now_utc() + Duration::from_secs(3_600)),
        ..Request::default()
    };
    let partial = world
        .sync_under(
            &segment(SegmentBehaviour::Deliver),
            without_first_names(),
            since,
            never(),
        )
        .await;
    assert!(partial.rules_changed);
    assert!(!partial.compared_all);
    assert_eq!(partial.counts.read, 0);
    assert_eq!(
        world.state.snapshot().rules_fingerprint,
        standard,
        "the new rules are not recorded before every customer was compared"
    );

    let segment_now = segment(SegmentBehaviour::Deliver);
    let whole = world
        .sync_under(
            &segment_now,
            without_first_names(),
            Request::default(),
            never(),
        )
        .await;
    assert!(
        whole.rules_changed,
        "the next run still knows the rules changed"
    );
    assert!(whole.compared_all);
    assert_eq!(whole.counts.sent, 10);
    assert_eq!(
        world.source.walks().last(),
        Some(&segment_sync_ports::CustomerQuery::All)
    );
    assert_eq!(
        world.state.snapshot().rules_fingerprint,
        Some(without_first_names().fingerprint())
    );

    let again = world
        .sync_under(
            &segment(SegmentBehaviour::Deliver),
            without_first_names(),
            Request::default(),
            never(),
        )
        .await;
    assert!(!again.rules_changed);
    assert_eq!(again.counts.sent, 0);
}

#[tokio::test(start_paused = true)]
async fn a_state_that_never_recorded_its_rules_compares_every_customer_once() {
    // A database written before the rules were recorded: a mark, no rules.
    let world = World::new(5, 0);
    let mark = OffsetDateTime::now_utc() + Duration::from_secs(3_600);
    world.state.set_high_water_mark(mark).await.unwrap();

    let report = world
        .sync_under(
            &segment(SegmentBehaviour::Deliver),
            without_first_names(),
            Request::default(),
            never(),
        )
        .await;

    assert!(report.rules_changed);
    assert_eq!(
        world.source.walks(),
        [segment_sync_ports::CustomerQuery::All]
    );
    assert_eq!(report.counts.sent, 5);
    let again = world.sync(&segment(SegmentBehaviour::Deliver)).await;
    assert!(again.rules_changed, "back to the standard rules");
    assert_eq!(again.counts.sent, 5);
}
