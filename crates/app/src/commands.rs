//! The commands: each takes the sections of the [`Settings`] it needs, wires the
//! adapters, runs, and reports what happened with an exit code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use segment_sync_domain::identify::IdentifyRules;
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_ports::{
    CustomerQuery, CustomerSource, RunStart, Settlement, StateError, SyncStateStore,
};
use tokio::sync::watch;

use crate::cli::{RunsArgs, ServeArgs, SyncArgs};
use crate::output::{summary, Extent, Mode, Progress, RulesNote, Stdout};
use crate::pipeline::{
    self, Abort, LiveCounts, Ports, Report, Request, SyncOptions, DRAIN_TIMEOUT,
};
use crate::serve::{self, ServeDeps, ServeOptions};
use crate::service::{classify, Classified, SyncService};
use crate::settings::{Settings, SourceSettings, StateLocation};
use crate::{privacy, wiring};
use crate::{Exit, Failure};

/// `segment-sync sync`.
pub async fn sync(args: &SyncArgs, settings: &Settings) -> Result<Exit, Failure> {
    if args.dry_run {
        let (rules, source) = Settings::require((&settings.rules, &settings.source))?;
        let query = args
            .since
            .map_or(CustomerQuery::All, CustomerQuery::ChangedSince);
        let source = wiring::source(source)?.port;
        return dry_run(source.as_ref(), query, rules, args.json).await;
    }
    let (rules, segment, source_settings, state, retention, deletion) = Settings::require((
        &settings.rules,
        &settings.segment,
        &settings.source,
        &settings.state,
        &settings.retention,
        &settings.deletion,
    ))?;
    let (source, extent) = wiring::source_and_extent(source_settings)?;
    let source = source.port;
    let ports = Ports {
        state: wiring::state(state).await?.port,
        segment: wiring::segment(segment)?.port,
    };
    purge_letters(ports.state.as_ref(), *retention).await?;
    let deletions = wiring::deletions(Arc::clone(&ports.state), deletion.as_ref())?;
    let extent = match (extent, source_settings) {
        (Extent::Unknown, SourceSettings::Api(_)) => api_extent(ports.state.as_ref(), args).await,
        (extent, _) => extent,
    };
    let service = SyncService::new(
        Arc::clone(&ports.segment),
        Arc::clone(&ports.state),
        rules.clone(),
    );
    let options = SyncOptions {
        request: Request {
            full: args.full,
            since: args.since,
        },
        source_name: source_settings.to_string(),
        drain_timeout: DRAIN_TIMEOUT,
    };
    let live = Arc::new(LiveCounts::default());
    let progress = Progress::start(Arc::clone(&live), extent);
    let clock = Instant::now();
    let report = pipeline::sync(
        source.as_ref(),
        &ports,
        &service,
        &options,
        live,
        interrupt_on_signal(),
    )
    .await;
    progress.finish();
    if let Ok(report) = &report {
        privacy::after_sync(&deletions, report.gone.as_deref())
            .await
            .map_err(fatal)?;
    }
    conclude(report, clock, args.json)
}

/// How many customers a run of the API is likely to read: as many as the most
/// that a recent successful run of the API read, when this run reads every
/// customer (`--full`, or a first run); unknown for an incremental run, which
/// reads only what changed. The state's failure here only costs the bar its total.
async fn api_extent(state: &dyn SyncStateStore, args: &SyncArgs) -> Extent {
    let reads_all =
        args.since.is_none() && (args.full || matches!(state.high_water_mark().await, Ok(None)));
    if !reads_all {
        return Extent::Unknown;
    }
    let runs = state.runs(RECENT_RUNS).await.unwrap_or_default();
    expected_customers(&runs).map_or(Extent::Unknown, |expected| Extent::Customers { expected })
}

/// How many runs back [`api_extent`] looks.
const RECENT_RUNS: usize = 20;

/// The most customers a sync of the API that ran to its end read among `runs`.
fn expected_customers(runs: &[RunRecord]) -> Option<u64> {
    runs.iter()
        .filter(|run| {
            run.kind == "sync"
                && matches!(
                    run.status,
                    RunStatus::Succeeded | RunStatus::CompletedWithErrors
                )
                && run.source.as_deref() == Some("api")
        })
        .map(|run| run.counts.read)
        .filter(|&read| read > 0)
        .max()
}

/// `segment-sync dead-letters replay`.
pub async fn dead_letters_replay(json: bool, settings: &Settings) -> Result<Exit, Failure> {
    let (rules, segment, state, retention) = Settings::require((
        &settings.rules,
        &settings.segment,
        &settings.state,
        &settings.retention,
    ))?;
    let segment = wiring::segment(segment)?.port;
    let state = wiring::state(state).await?.port;
    purge_letters(state.as_ref(), *retention).await?;
    let service = SyncService::new(Arc::clone(&segment), Arc::clone(&state), rules.clone());
    let ports = Ports { segment, state };
    let clock = Instant::now();
    let live = Arc::new(LiveCounts::default());
    let report = pipeline::replay(&ports, &service, DRAIN_TIMEOUT, live).await;
    conclude(report, clock, json)
}

/// Prints the summary of a run that sent to Segment and picks the exit code. A
/// closed stdout loses the summary, not the run.
fn conclude(report: Result<Report, Abort>, clock: Instant, json: bool) -> Result<Exit, Failure> {
    let report = match report {
        Ok(report) => report,
        // Another run holds the state: a usage error, like the configuration ones.
        Err(Abort::State(busy @ StateError::AnotherRun { .. })) => {
            return Err(Failure::Usage(busy.to_string()))
        }
        Err(abort) => return Err(fatal(abort)),
    };
    let rules = match (report.rules_changed, report.compared_all) {
        (false, _) => RulesNote::Unchanged,
        (true, true) => RulesNote::ChangedComparedAll,
        (true, false) => RulesNote::ChangedComparedSome,
    };
    let mut out = Stdout::default();
    let gone = report.gone.as_ref().map(|gone| gone.len() as u64);
    summary(
        &report.counts,
        clock.elapsed(),
        Mode::Sent,
        rules,
        gone,
        json,
        &mut out,
    )?;
    out.flush()?;
    if let Some(last) = &report.last_failure {
        eprintln!("last failure: {last}");
    }
    match &report.abort {
        None if report.counts.all_accounted_for() => Ok(Exit::Success),
        None => Ok(Exit::Partial),
        Some(Abort::Interrupted) => {
            eprintln!("interrupted: what was acknowledged is recorded; run again to continue");
            Ok(Exit::Interrupted)
        }
        Some(abort) => Err(Failure::Fatal(abort.to_string())),
    }
}

fn fatal(error: impl std::fmt::Display) -> Failure {
    Failure::Fatal(error.to_string())
}

/// A flag that turns true on Ctrl-C or SIGTERM.
fn interrupt_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let signal = crate::signal::terminate_or_interrupt().await;
        tracing::warn!(
            %signal,
            "sync interrupted: no more customers are read; in-flight batches finish (interrupt again to stop at once)"
        );
        let _ = tx.send(true);
        crate::signal::terminate_or_interrupt().await;
        eprintln!("interrupted again: stopping now; unrecorded deliveries are sent again next run");
        std::process::exit(Exit::Interrupted as i32);
    });
    rx
}

/// `sync --dry-run`: every payload built and validated, printed as NDJSON, and
/// with `json` the summary as the last line. A reader that goes away ends it.
async fn dry_run(
    source: &dyn CustomerSource,
    query: CustomerQuery,
    rules: &IdentifyRules,
    json: bool,
) -> Result<Exit, Failure> {
    let clock = Instant::now();
    let mut counts = RunCounts::default();
    let mut pages = source.customers(query).await.map_err(fatal)?;
    let mut out = Stdout::default();
    while let Some(page) = pages.next_page().await.map_err(fatal)? {
        for record in page.records {
            counts.read += 1;
            match classify(record, rules) {
                Classified::Message(message) => {
                    counts.sent += 1;
                    out.line(message.json())?;
                }
                Classified::Skipped {
                    customer_id,
                    reason,
                } => {
                    counts.skipped += 1;
                    tracing::info!(customer_id, %reason, "would skip");
                }
                Classified::Rejected { letter, .. } => {
                    counts.rejected += 1;
                    tracing::warn!(customer_id = %letter.customer_id, reason = %letter.reason, "would reject");
                }
            }
        }
        if out.is_closed() {
            // Nobody reads the payloads any more: a preview piped to `head`.
            return Ok(Exit::Success);
        }
    }
    summary(
        &counts,
        clock.elapsed(),
        Mode::DryRun,
        RulesNote::Unchanged,
        None,
        json,
        &mut out,
    )?;
    out.flush()?;
    Ok(if counts.all_accounted_for() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// Dead letters read per page by `dead-letters list`.
const LETTERS_PAGE: usize = 500;

/// `segment-sync dead-letters list`, a page at a time: a large list never sits
/// in memory whole.
pub async fn dead_letters_list(json: bool, settings: &Settings) -> Result<Exit, Failure> {
    let (state,) = Settings::require((&settings.state,))?;
    let state = wiring::existing_state(state).await?.port;
    let mut out = Stdout::default();
    let mut printed = 0usize;
    let mut after = None;
    while !out.is_closed() {
        let page = state
            .dead_letters_after(after, LETTERS_PAGE)
            .await
            .map_err(fatal)?;
        let Some(last) = page.last() else { break };
        after = Some(last.cursor);
        for stored in &page {
            let letter = &stored.letter;
            if json {
                out.json_array_item(printed == 0, &ListedDeadLetter::from(letter))?;
            } else {
                out.line(format_args!(
                    "{}\t{}\t{}\t{}\tattempts={}\t{}",
                    letter.recorded_at,
                    letter.kind,
                    letter.customer_id,
                    letter.code,
                    letter.attempts,
                    letter.reason
                ))?;
            }
            printed += 1;
        }
    }
    if json {
        out.json_array_end(printed == 0)?;
    } else if printed == 0 {
        out.line("no dead letters")?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// `segment-sync dead-letters purge`: removes the dead letters recorded longer
/// ago than `older_than` (else the retention setting).
pub async fn dead_letters_purge(
    older_than: Option<Duration>,
    settings: &Settings,
) -> Result<Exit, Failure> {
    let (state, retention) = Settings::require((&settings.state, &settings.retention))?;
    let older_than = older_than.unwrap_or(*retention);
    let state = wiring::existing_state(state).await?.port;
    let purged = purge_letters(state.as_ref(), older_than).await?;
    let mut out = Stdout::default();
    out.line(format_args!(
        "removed {purged} dead letters recorded more than {} ago",
        humantime::format_duration(older_than)
    ))?;
    out.flush()?;
    Ok(Exit::Success)
}

/// Removes the dead letters recorded longer ago than `older_than`; says how many.
pub async fn purge_letters(
    state: &dyn SyncStateStore,
    older_than: Duration,
) -> Result<u64, Failure> {
    let before = time::OffsetDateTime::now_utc() - older_than;
    let purged = state.purge_dead_letters(before).await.map_err(fatal)?;
    if purged > 0 {
        tracing::info!(
            purged,
            older_than = %humantime::format_duration(older_than),
            "old dead letters removed"
        );
    }
    Ok(purged)
}

/// A dead letter as `dead-letters list --json` shows it: the payload as the JSON
/// object it is, not a string holding it.
#[derive(serde::Serialize)]
struct ListedDeadLetter<'a> {
    customer_id: &'a str,
    kind: &'a str,
    code: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
    attempts: u32,
    recorded_at: &'a str,
}

impl<'a> From<&'a DeadLetter> for ListedDeadLetter<'a> {
    fn from(letter: &'a DeadLetter) -> Self {
        Self {
            customer_id: &letter.customer_id,
            kind: letter.kind.as_str(),
            code: &letter.code,
            reason: &letter.reason,
            // Payloads are the messages this tool wrote: always JSON.
            payload: letter
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok()),
            fingerprint: letter.fingerprint.as_deref(),
            attempts: letter.attempts,
            recorded_at: &letter.recorded_at,
        }
    }
}

/// `segment-sync runs`.
pub async fn runs(args: &RunsArgs, settings: &Settings) -> Result<Exit, Failure> {
    let (state,) = Settings::require((&settings.state,))?;
    let runs = wiring::existing_state(state)
        .await?
        .port
        .runs(args.limit)
        .await
        .map_err(fatal)?;
    let mut out = Stdout::default();
    if args.json {
        let runs: Vec<RunView<'_>> = runs.iter().map(RunView::from).collect();
        out.json_pretty(&runs)?;
    } else if runs.is_empty() {
        out.line("no runs yet")?;
    } else {
        for run in &runs {
            out.line(describe_run(run))?;
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// A run as `runs --json` shows it: the record and how long it took.
#[derive(serde::Serialize)]
struct RunView<'a> {
    #[serde(flatten)]
    run: &'a RunRecord,
    /// Absent while it runs.
    duration_ms: Option<u64>,
}

impl<'a> From<&'a RunRecord> for RunView<'a> {
    fn from(run: &'a RunRecord) -> Self {
        Self {
            run,
            duration_ms: run_seconds(run).map(|s| (s * 1_000.0).round() as u64),
        }
    }
}

/// How long a finished run took.
fn run_seconds(run: &RunRecord) -> Option<f64> {
    run.finished_at
        .as_deref()
        .and_then(|finished| seconds_between(&run.started_at, finished))
}

/// One line of `runs`: id, kind, source, start, status, how long it took, the
/// counts — what `runs --json` shows, in the same words.
fn describe_run(run: &RunRecord) -> String {
    let c = run.counts;
    let took = run_seconds(run)
        .map(|s| format!(" took={s:.1}s"))
        .unwrap_or_default();
    let source = run
        .source
        .as_deref()
        .map(|source| format!(" from {source}"))
        .unwrap_or_default();
    format!(
        "#{} {}{source} {} {}{took} read={} sent={} unchanged={} skipped={} rejected={} failed={}{}",
        run.id,
        run.kind,
        run.started_at,
        run.status,
        c.read,
        c.sent,
        c.unchanged,
        c.skipped,
        c.rejected,
        c.failed,
        run.error
            .as_ref()
            .map(|e| format!(" error={e}"))
            .unwrap_or_default()
    )
}

fn seconds_between(start: &str, end: &str) -> Option<f64> {
    let parse = |at: &str| {
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
    };
    Some((parse(end)? - parse(start)?).as_seconds_f64())
}

/// `segment-sync serve`: wires the adapters and serves until SIGTERM or SIGINT.
pub async fn serve(args: &ServeArgs, settings: &Settings) -> Result<Exit, Failure> {
    let (rules, segment, commercetools, state, webhook, deletion) = Settings::require((
        &settings.rules,
        &settings.segment,
        &settings.commercetools,
        &settings.state,
        &settings.webhook,
        &settings.deletion,
    ))?;
    // The recorder must exist before the Segment client records its metrics.
    serve::install_metrics();
    let mut segment = segment.clone();
    segment.flush_interval = wiring::SERVE_FLUSH_INTERVAL;
    let segment = wiring::segment(&segment)?.port;
    let state = wiring::state(state).await?.port;
    let deps = ServeDeps {
        service: SyncService::new(Arc::clone(&segment), Arc::clone(&state), rules.clone()),
        segment,
        source: wiring::source(&SourceSettings::Api(Box::new(commercetools.clone())))?.port,
        deletions: wiring::deletions(Arc::clone(&state), deletion.as_ref())?,
        state,
        token: webhook.token.clone(),
        oidc: webhook.oidc.clone(),
        sns_cert_hosts: webhook.sns_cert_hosts.clone(),
    };
    let options = ServeOptions {
        listen: webhook.listen,
        allow_unauthenticated: args.allow_unauthenticated,
        max_connections: webhook.max_connections,
        ..ServeOptions::default()
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", options.listen)))?;
    serve::serve(listener, deps, &options, serve::shutdown_signal())
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    Ok(Exit::Success)
}

/// Deliveries copied per page by `state copy`.
const COPY_PAGE: usize = 1_000;

/// `segment-sync state copy`: everything a state holds, into another state. Both
/// are held as runs while it copies, so that no sync changes them meanwhile.
pub async fn state_copy(from: &str, to: &str) -> Result<Exit, Failure> {
    let from_location = StateLocation::parse("--from", from)?;
    let to_location = StateLocation::parse("--to", to)?;
    if from_location == to_location {
        return Err(Failure::Usage(
            "--from and --to name the same state".to_owned(),
        ));
    }
    let source = wiring::existing_state(&from_location).await?.port;
    let target = wiring::state(&to_location).await?.port;
    let holder = format!("pid {} (state copy)", std::process::id());
    let start = |started_at| RunStart {
        kind: "state copy".to_owned(),
        started_at,
        source: Some(from_location.to_string()),
        holder: holder.clone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let lease = |result: Result<_, StateError>| {
        result.map_err(|e| match e {
            busy @ StateError::AnotherRun { .. } => Failure::Usage(busy.to_string()),
            other => fatal(other),
        })
    };
    let source_lease = lease(source.begin_run(start(now)).await)?;
    let target_lease = lease(target.begin_run(start(now)).await)?;

    let mut deliveries = 0usize;
    let mut after = None;
    loop {
        let page = source
            .deliveries_after(after.take(), COPY_PAGE)
            .await
            .map_err(fatal)?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer_id.clone());
        let delivered: Vec<_> = page.iter().map(|row| row.as_delivered()).collect();
        target
            .settle(Settlement {
                delivered: &delivered,
                holder: &holder,
                ..Settlement::default()
            })
            .await
            .map_err(fatal)?;
        deliveries += page.len();
    }
    let mut letters = 0usize;
    let mut after = None;
    loop {
        let page = source
            .dead_letters_after(after, COPY_PAGE)
            .await
            .map_err(fatal)?;
        let Some(last) = page.last() else { break };
        after = Some(last.cursor);
        letters += page.len();
        let page: Vec<DeadLetter> = page.into_iter().map(|stored| stored.letter).collect();
        target.add_dead_letters(&page).await.map_err(fatal)?;
    }
    let mut deletions = 0usize;
    let mut after = None;
    loop {
        let page = source
            .deletions_after(after, COPY_PAGE)
            .await
            .map_err(fatal)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        deletions += page.len();
        target.import_deletions(&page).await.map_err(fatal)?;
    }
    let runs: Vec<RunRecord> = source
        .runs(usize::MAX)
        .await
        .map_err(fatal)?
        .into_iter()
        .filter(|run| run.id != source_lease.id())
        .collect();
    target.import_runs(&runs).await.map_err(fatal)?;
    let mark = source.high_water_mark().await.map_err(fatal)?;
    if let Some(mark) = mark {
        target.set_high_water_mark(mark).await.map_err(fatal)?;
    }
    if let Some(rules) = source.rules_fingerprint().await.map_err(fatal)? {
        target.set_rules_fingerprint(rules).await.map_err(fatal)?;
    }

    let counts = RunCounts::default();
    for (state, lease) in [(&source, source_lease), (&target, target_lease)] {
        state
            .finish_run(lease.id(), RunStatus::Succeeded, counts, None)
            .await
            .map_err(fatal)?;
    }
    let mut out = Stdout::default();
    out.line(format_args!(
        "copied {deliveries} deliveries, {letters} dead letters, {deletions} deletions, {} runs and the high-water mark ({}) from {from_location} to {to_location}",
        runs.len(),
        mark.map_or_else(|| "none".to_owned(), |m| m.to_string())
    ))?;
    out.flush()?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use segment_sync_testkit::memory::MemoryStateStore;

    fn sync_args(args: &[&str]) -> SyncArgs {
        let mut all = vec!["segment-sync", "sync"];
        all.extend_from_slice(args);
        match crate::cli::Cli::try_parse_from(all).unwrap().command {
            crate::cli::Command::Sync(args) => args,
            other => panic!("{other:?}"),
        }
    }

    async fn run(state: &MemoryStateStore, source: &str, status: RunStatus, read: u64) {
        let lease = state
            .begin_run(RunStart {
                kind: "sync".to_owned(),
                started_at: time::OffsetDateTime::now_utc(),
                source: Some(source.to_owned()),
                holder: "test".to_owned(),
            })
            .await
            .unwrap();
        let counts = RunCounts {
            read,
            ..RunCounts::default()
        };
        state
            .finish_run(lease.id(), status, counts, None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_whole_read_of_the_api_expects_what_the_biggest_recent_api_run_read() {
        let state = MemoryStateStore::new();
        assert!(matches!(
            api_extent(&state, &sync_args(&["--full"])).await,
            Extent::Unknown
        ));
        run(&state, "api", RunStatus::Succeeded, 1_000).await;
        run(&state, "api", RunStatus::Succeeded, 12).await;
        run(&state, "api", RunStatus::Aborted, 5_000).await;
        run(&state, "file big.ndjson", RunStatus::Succeeded, 9_000).await;

        assert!(matches!(
            api_extent(&state, &sync_args(&["--full"])).await,
            Extent::Customers { expected: 1_000 }
        ));
        // No mark yet: the run reads every customer.
        assert!(matches!(
            api_extent(&state, &sync_args(&[])).await,
            Extent::Customers { expected: 1_000 }
        ));
        state
            .set_high_water_mark(time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert!(
            matches!(api_extent(&state, &sync_args(&[])).await, Extent::Unknown),
            "an incremental run reads only what changed"
        );
        assert!(matches!(
            api_extent(&state, &sync_args(&["--since", "2024-05-01T00:00:00Z"])).await,
            Extent::Unknown
        ));
    }
}
