//! What a person running a command sees: progress while it runs, a summary at the end.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use segment_sync_domain::sync::RunCounts;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::pipeline::LiveCounts;

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shows a run's progress on stderr: a progress line on a terminal, periodic log
/// lines otherwise.
pub struct Progress {
    ticker: JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts showing `live` until [`Progress::finish`].
    pub fn start(live: Arc<LiveCounts>) -> Self {
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let shown = bar.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    shown.set_message(describe(&live.snapshot(), started.elapsed()));
                    shown.tick();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            Self {
                ticker,
                bar: Some(bar),
            }
        } else {
            let ticker = tokio::spawn(async move {
                let mut every = tokio::time::interval(LOG_EVERY);
                every.tick().await;
                loop {
                    every.tick().await;
                    let counts = live.snapshot();
                    tracing::info!(
                        read = counts.read,
                        sent = counts.sent,
                        unchanged = counts.unchanged,
                        skipped = counts.skipped,
                        rejected = counts.rejected,
                        failed = counts.failed,
                        "progress: {}",
                        describe(&counts, started.elapsed())
                    );
                }
            });
            Self { ticker, bar: None }
        }
    }

    /// Stops showing progress.
    pub fn finish(self) {
        self.ticker.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn describe(counts: &RunCounts, elapsed: Duration) -> String {
    format!(
        "read {} · sent {} · unchanged {} · skipped {} · rejected {} · failed {} · {:.0} customers/s",
        counts.read,
        counts.sent,
        counts.unchanged,
        counts.skipped,
        counts.rejected,
        counts.failed,
        rate(counts.read, elapsed)
    )
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The `--json` summary of contract §7.
#[derive(Debug, Serialize)]
struct JsonSummary {
    read: u64,
    sent: u64,
    unchanged: u64,
    skipped: u64,
    rejected: u64,
    failed: u64,
    duration_ms: u128,
}

/// Prints the summary: a line on stderr, and with `json` one object on `out`.
pub fn summary(counts: &RunCounts, elapsed: Duration, json: bool, out: &mut dyn Write) {
    eprintln!(
        "{} in {:.2} s",
        describe(counts, elapsed).replace(" · ", ", "),
        elapsed.as_secs_f64()
    );
    if json {
        let summary = JsonSummary {
            read: counts.read,
            sent: counts.sent,
            unchanged: counts.unchanged,
            skipped: counts.skipped,
            rejected: counts.rejected,
            failed: counts.failed,
            duration_ms: elapsed.as_millis(),
        };
        // A closed stdout leaves nothing to report to.
        let _ = serde_json::to_writer(&mut *out, &summary);
        let _ = writeln!(out);
    }
}
