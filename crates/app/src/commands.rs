//! The commands: each reads its configuration, wires the adapters it needs and
//! reports what happened with an exit code.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use segment_sync_domain::sync::{DeadLetterKind, RunCounts, RunStatus};
use segment_sync_ports::{CustomerQuery, SegmentClient, SyncStateStore};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::cli::{RunsArgs, ServeArgs, StateArg, SyncArgs};
use crate::config::Vars;
use crate::output::{summary, Progress};
use crate::pipeline::{
    self, classify, Abort, Classified, LiveCounts, PipelineOptions, PipelineReport, Ports,
};
use crate::wiring;
use crate::{Exit, Failure};

/// Changes committed just before a run started may become visible to queries a
/// little later; an incremental run looks back this much before the mark.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How long the last flush of a run may take.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// `segment-sync sync`.
pub async fn sync(args: &SyncArgs, vars: &Vars) -> Result<Exit, Failure> {
    let strategy = vars.user_id_strategy()?;
    if args.dry_run {
        let source = wiring::customer_source(vars, args.input.as_deref())?;
        let query = args
            .since
            .map_or(CustomerQuery::All, CustomerQuery::ChangedSince);
        return dry_run(source.as_ref(), query, strategy).await;
    }
    let write_key = vars.write_key()?;
    let source = wiring::customer_source(vars, args.input.as_deref())?;
    let state = wiring::state_store(&vars.state_path(args.state.state.as_deref()))?;
    let segment = wiring::segment_client(vars, write_key)?;

    let started_at = OffsetDateTime::now_utc();
    let from_api = args.input.is_none();
    let high_water_mark = state.high_water_mark().await.map_err(fatal)?;
    let query = match (args.full, args.since, high_water_mark) {
        (true, _, _) => CustomerQuery::All,
        (false, Some(since), _) => CustomerQuery::ChangedSince(since),
        // An export may be older than the last run: read it whole and let the
        // fingerprints decide.
        (false, None, _) if !from_api => CustomerQuery::All,
        (false, None, Some(mark)) => CustomerQuery::ChangedSince(mark - SAFETY_MARGIN),
        (false, None, None) => CustomerQuery::All,
    };
    // The mark may move only when this run covered everything since the last mark.
    let covers_since_mark = from_api
        && match (query, high_water_mark) {
            (CustomerQuery::All, _) => true,
            (CustomerQuery::ChangedSince(from), Some(mark)) => from <= mark,
            (CustomerQuery::ChangedSince(_), None) => false,
        };
    tracing::info!(
        ?query,
        full = args.full,
        source = if from_api { "api" } else { "file" },
        "sync starting"
    );

    let run_id = state.start_run("sync", started_at).await.map_err(fatal)?;
    let live = Arc::new(LiveCounts::default());
    let progress = Progress::start(Arc::clone(&live));
    let clock = Instant::now();
    let ports = Ports {
        source,
        segment: Arc::clone(&segment),
        state: Arc::clone(&state),
    };
    let options = PipelineOptions {
        query,
        resend_unchanged: args.full,
        strategy,
        drain_timeout: DRAIN_TIMEOUT,
    };
    let report = pipeline::run(&ports, &options, live, interrupt_on_signal()).await;
    progress.finish();
    if report.abort.is_none() && report.counts.failed == 0 && covers_since_mark {
        state.set_high_water_mark(started_at).await.map_err(fatal)?;
    }
    conclude(
        segment.as_ref(),
        state.as_ref(),
        run_id,
        &report,
        clock,
        args.json,
    )
    .await
}

/// Ends a run that sent to Segment: closes the client, records how the run
/// ended, prints the summary and picks the exit code.
async fn conclude(
    segment: &dyn SegmentClient,
    state: &dyn SyncStateStore,
    run_id: i64,
    report: &PipelineReport,
    clock: Instant,
    json: bool,
) -> Result<Exit, Failure> {
    if let Err(error) = segment.close_and_flush(DRAIN_TIMEOUT).await {
        tracing::warn!(%error, "Segment client did not close cleanly");
    }
    finish(state, run_id, report).await?;
    summary(
        &report.counts,
        clock.elapsed(),
        json,
        &mut std::io::stdout().lock(),
    );
    exit_for(report)
}

async fn finish(
    state: &dyn SyncStateStore,
    run_id: i64,
    report: &PipelineReport,
) -> Result<(), Failure> {
    let status = match (&report.abort, report.counts.all_accounted_for()) {
        (Some(_), _) => RunStatus::Aborted,
        (None, true) => RunStatus::Succeeded,
        (None, false) => RunStatus::CompletedWithErrors,
    };
    state
        .finish_run(
            run_id,
            status,
            report.counts,
            report.abort.as_ref().map(ToString::to_string),
        )
        .await
        .map_err(fatal)
}

fn exit_for(report: &PipelineReport) -> Result<Exit, Failure> {
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
        crate::serve::shutdown_signal().await;
        tracing::warn!(
            "interrupt: no more customers are read; in-flight batches finish (interrupt again to stop at once)"
        );
        let _ = tx.send(true);
        crate::serve::shutdown_signal().await;
        eprintln!("interrupted again: stopping now; unrecorded deliveries are sent again next run");
        std::process::exit(Exit::Interrupted as i32);
    });
    rx
}

/// `sync --dry-run`: every payload built and validated, printed as NDJSON.
async fn dry_run(
    source: &dyn segment_sync_ports::CustomerSource,
    query: CustomerQuery,
    strategy: segment_sync_domain::UserIdStrategy,
) -> Result<Exit, Failure> {
    let clock = Instant::now();
    let mut counts = RunCounts::default();
    let mut pages = source.customers(query).await.map_err(fatal)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some(page) = pages.next_page().await.map_err(fatal)? {
        for record in page.records {
            counts.read += 1;
            match classify(record, strategy) {
                Classified::Message(message) => {
                    counts.sent += 1;
                    writeln!(out, "{}", message.json()).context("cannot write to stdout")?;
                }
                Classified::Skipped(reason) => {
                    counts.skipped += 1;
                    tracing::debug!(%reason, "skipped");
                }
                Classified::Rejected(letter) => {
                    counts.rejected += 1;
                    tracing::warn!(customer_id = %letter.customer_id, reason = %letter.reason, "rejected");
                }
            }
        }
    }
    out.flush().context("cannot write to stdout")?;
    drop(out);
    // stdout holds the payloads, so the summary goes to stderr only.
    summary(&counts, clock.elapsed(), false, &mut std::io::sink());
    Ok(if counts.all_accounted_for() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// `segment-sync dead-letters list`.
pub async fn dead_letters_list(json: bool, state_path: &Path) -> Result<Exit, Failure> {
    let state = wiring::state_store(state_path)?;
    let letters = state.dead_letters().await.map_err(fatal)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &letters).context("cannot write to stdout")?;
        writeln!(out).context("cannot write to stdout")?;
    } else if letters.is_empty() {
        writeln!(out, "no dead letters").context("cannot write to stdout")?;
    } else {
        for letter in &letters {
            let kind = match letter.kind {
                DeadLetterKind::Rejected => "rejected",
                DeadLetterKind::Failed => "failed",
            };
            writeln!(
                out,
                "{}\t{kind}\t{}\t{}\tattempts={}\t{}",
                letter.recorded_at, letter.customer_id, letter.code, letter.attempts, letter.reason
            )
            .context("cannot write to stdout")?;
        }
    }
    Ok(Exit::Success)
}

/// `segment-sync dead-letters replay`.
pub async fn dead_letters_replay(
    json: bool,
    state: &StateArg,
    vars: &Vars,
) -> Result<Exit, Failure> {
    let write_key = vars.write_key()?;
    let state = wiring::state_store(&vars.state_path(state.state.as_deref()))?;
    let segment = wiring::segment_client(vars, write_key)?;
    let run_id = state
        .start_run("replay", OffsetDateTime::now_utc())
        .await
        .map_err(fatal)?;
    let clock = Instant::now();
    let live = Arc::new(LiveCounts::default());
    let report = pipeline::replay(&segment, &state, live, DRAIN_TIMEOUT).await;
    conclude(
        segment.as_ref(),
        state.as_ref(),
        run_id,
        &report,
        clock,
        json,
    )
    .await
}

/// `segment-sync runs`.
pub async fn runs(args: &RunsArgs, vars: &Vars) -> Result<Exit, Failure> {
    let state = wiring::state_store(&vars.state_path(args.state.state.as_deref()))?;
    let runs = state.runs(args.limit).await.map_err(fatal)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &runs).context("cannot write to stdout")?;
        writeln!(out).context("cannot write to stdout")?;
    } else if runs.is_empty() {
        writeln!(out, "no runs yet").context("cannot write to stdout")?;
    } else {
        for run in &runs {
            let c = run.counts;
            writeln!(
                out,
                "#{} {} {} {:?} read={} sent={} unchanged={} skipped={} rejected={} failed={}{}",
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
            .context("cannot write to stdout")?;
        }
    }
    Ok(Exit::Success)
}

/// `segment-sync serve`.
pub async fn serve(args: &ServeArgs, vars: &Vars) -> Result<Exit, Failure> {
    wiring::serve(args, vars).await
}

/// `segment-sync check`.
pub async fn check(state: &StateArg, vars: &Vars) -> Result<Exit, Failure> {
    crate::check::run(state, vars).await
}
