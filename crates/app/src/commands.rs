//! The commands: each takes the sections of the [`Settings`] it needs, wires the
//! adapters, runs, and reports what happened with an exit code.

use std::sync::Arc;
use std::time::Instant;

use segment_sync_domain::identify::IdentifyRules;
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_ports::{CustomerQuery, CustomerSource, RunStart, Settlement, StateError};
use tokio::sync::watch;

use crate::cli::{RunsArgs, ServeArgs, SyncArgs};
use crate::output::{summary, Mode, Progress, RulesNote, Stdout};
use crate::pipeline::{
    self, Abort, LiveCounts, Ports, Report, Request, SyncOptions, DRAIN_TIMEOUT,
};
use crate::serve::{self, ServeDeps, ServeOptions};
use crate::service::{classify, Classified, SyncService};
use crate::settings::{Settings, SourceSettings, StateLocation};
use crate::wiring;
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
    let (rules, segment, source_settings, state) = Settings::require((
        &settings.rules,
        &settings.segment,
        &settings.source,
        &settings.state,
    ))?;
    let source = wiring::source(source_settings)?.port;
    let ports = Ports {
        state: wiring::state(state).await?.port,
        segment: wiring::segment(segment)?.port,
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
    let progress = Progress::start(Arc::clone(&live));
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
    conclude(report, clock, args.json)
}

/// `segment-sync dead-letters replay`.
pub async fn dead_letters_replay(json: bool, settings: &Settings) -> Result<Exit, Failure> {
    let (rules, segment, state) =
        Settings::require((&settings.rules, &settings.segment, &settings.state))?;
    let segment = wiring::segment(segment)?.port;
    let state = wiring::state(state).await?.port;
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
    summary(
        &report.counts,
        clock.elapsed(),
        Mode::Sent,
        rules,
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

/// `segment-sync dead-letters list`.
pub async fn dead_letters_list(json: bool, settings: &Settings) -> Result<Exit, Failure> {
    let (state,) = Settings::require((&settings.state,))?;
    let letters = wiring::existing_state(state)
        .await?
        .port
        .dead_letters()
        .await
        .map_err(fatal)?;
    let mut out = Stdout::default();
    if json {
        let listed: Vec<ListedDeadLetter<'_>> =
            letters.iter().map(ListedDeadLetter::from).collect();
        out.json_pretty(&listed)?;
    } else if letters.is_empty() {
        out.line("no dead letters")?;
    } else {
        for letter in &letters {
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
    }
    out.flush()?;
    Ok(Exit::Success)
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

/// One line of `runs`: id, kind, start, status, how long it took, the counts.
fn describe_run(run: &RunRecord) -> String {
    let c = run.counts;
    let took = run
        .finished_at
        .as_deref()
        .and_then(|finished| seconds_between(&run.started_at, finished))
        .map(|s| format!(" took={s:.1}s"))
        .unwrap_or_default();
    format!(
        "#{} {} {} {}{took} read={} sent={} unchanged={} skipped={} rejected={} failed={}{}",
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
    let (rules, segment, commercetools, state, webhook) = Settings::require((
        &settings.rules,
        &settings.segment,
        &settings.commercetools,
        &settings.state,
        &settings.webhook,
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
    let letters = source.dead_letters().await.map_err(fatal)?;
    target.add_dead_letters(&letters).await.map_err(fatal)?;
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
        "copied {deliveries} deliveries, {} dead letters, {} runs and the high-water mark ({}) from {from_location} to {to_location}",
        letters.len(),
        runs.len(),
        mark.map_or_else(|| "none".to_owned(), |m| m.to_string())
    ))?;
    out.flush()?;
    Ok(Exit::Success)
}
