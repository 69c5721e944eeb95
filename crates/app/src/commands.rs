//! The commands: each takes the sections of the [`Settings`] it needs, wires the
//! adapters, runs, and reports what happened with an exit code.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use segment_sync_domain::sync::{DeadLetterKind, RunCounts};
use segment_sync_domain::UserIdStrategy;
use segment_sync_ports::{CustomerQuery, CustomerSource};
use tokio::sync::watch;

use crate::cli::{RunsArgs, ServeArgs, SyncArgs};
use crate::output::{summary, Progress};
use crate::pipeline::{self, Abort, LiveCounts, Ports, Report, Request, DRAIN_TIMEOUT};
use crate::serve::{self, ServeDeps, ServeOptions};
use crate::service::{classify, Classified, SyncService};
use crate::settings::{Settings, SourceSettings};
use crate::wiring;
use crate::{Exit, Failure};

/// `segment-sync sync`.
pub async fn sync(args: &SyncArgs, settings: &Settings) -> Result<Exit, Failure> {
    if args.dry_run {
        let (strategy, source) = Settings::require((&settings.user_id, &settings.source))?;
        let query = args
            .since
            .map_or(CustomerQuery::All, CustomerQuery::ChangedSince);
        return dry_run(wiring::source(source)?.port.as_ref(), query, *strategy).await;
    }
    let (strategy, segment, source, state) = Settings::require((
        &settings.user_id,
        &settings.segment,
        &settings.source,
        &settings.state,
    ))?;
    let source = wiring::source(source)?.port;
    let ports = Ports {
        state: wiring::state(state)?.port,
        segment: wiring::segment(segment)?.port,
    };
    let service = SyncService::new(
        Arc::clone(&ports.segment),
        Arc::clone(&ports.state),
        *strategy,
    );
    let request = Request {
        full: args.full,
        since: args.since,
    };
    let live = Arc::new(LiveCounts::default());
    let progress = Progress::start(Arc::clone(&live));
    let clock = Instant::now();
    let report = pipeline::sync(
        source.as_ref(),
        &ports,
        &service,
        request,
        DRAIN_TIMEOUT,
        live,
        interrupt_on_signal(),
    )
    .await;
    progress.finish();
    conclude(report, clock, args.json)
}

/// `segment-sync dead-letters replay`.
pub async fn dead_letters_replay(json: bool, settings: &Settings) -> Result<Exit, Failure> {
    let (strategy, segment, state) =
        Settings::require((&settings.user_id, &settings.segment, &settings.state))?;
    let segment = wiring::segment(segment)?.port;
    let state = wiring::state(state)?.port;
    let service = SyncService::new(Arc::clone(&segment), Arc::clone(&state), *strategy);
    let ports = Ports { segment, state };
    let clock = Instant::now();
    let live = Arc::new(LiveCounts::default());
    let report = pipeline::replay(&ports, &service, DRAIN_TIMEOUT, live).await;
    conclude(report, clock, json)
}

/// Prints the summary of a run that sent to Segment and picks the exit code.
fn conclude(report: Result<Report, Abort>, clock: Instant, json: bool) -> Result<Exit, Failure> {
    let report = report.map_err(fatal)?;
    summary(
        &report.counts,
        clock.elapsed(),
        json,
        &mut std::io::stdout().lock(),
    );
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
    source: &dyn CustomerSource,
    query: CustomerQuery,
    strategy: UserIdStrategy,
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
                Classified::Skipped { reason, .. } => {
                    counts.skipped += 1;
                    tracing::debug!(%reason, "skipped");
                }
                Classified::Rejected { letter, .. } => {
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
pub async fn dead_letters_list(json: bool, settings: &Settings) -> Result<Exit, Failure> {
    let (state,) = Settings::require((&settings.state,))?;
    let letters = wiring::state(state)?
        .port
        .dead_letters()
        .await
        .map_err(fatal)?;
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

/// `segment-sync runs`.
pub async fn runs(args: &RunsArgs, settings: &Settings) -> Result<Exit, Failure> {
    let (state,) = Settings::require((&settings.state,))?;
    let runs = wiring::state(state)?
        .port
        .runs(args.limit)
        .await
        .map_err(fatal)?;
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

/// `segment-sync serve`: wires the adapters and serves until SIGTERM or SIGINT.
pub async fn serve(args: &ServeArgs, settings: &Settings) -> Result<Exit, Failure> {
    let (strategy, segment, commercetools, state, webhook) = Settings::require((
        &settings.user_id,
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
    let state = wiring::state(state)?.port;
    let deps = ServeDeps {
        service: SyncService::new(Arc::clone(&segment), Arc::clone(&state), *strategy),
        segment,
        source: wiring::source(&SourceSettings::Api(Box::new(commercetools.clone())))?.port,
        state,
        token: webhook.token.clone(),
    };
    let options = ServeOptions {
        listen: webhook.listen,
        allow_unauthenticated: args.allow_unauthenticated,
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
