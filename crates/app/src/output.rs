//! What a person running a command sees: progress while it runs, a summary at the end.

use std::fmt;
use std::io::{BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use segment_sync_domain::sync::RunCounts;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::pipeline::LiveCounts;
use crate::Failure;

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How much a run has to read, when it is known: what turns the progress
/// spinner into a bar with a total and an estimate of the time left.
#[derive(Debug, Clone)]
pub enum Extent {
    /// An export file: the bytes read so far (as stored, gzipped or not) of its
    /// size.
    Bytes {
        /// Updated by the source as it reads.
        read: Arc<AtomicU64>,
        /// The file's size.
        total: u64,
    },
    /// The API, read whole: about as many customers as the last whole run read.
    Customers {
        /// The customers the last run that read every customer read.
        expected: u64,
    },
    /// Neither: stdin, or an incremental run.
    Unknown,
}

impl Extent {
    /// The position and the length of the bar for `counts`, or `None` for a
    /// spinner. The length grows with the position when the guess was short.
    pub fn progress(&self, counts: &RunCounts) -> Option<(u64, u64)> {
        match self {
            Self::Bytes { read, total } => {
                let read = read.load(Ordering::Relaxed);
                Some((read, (*total).max(read)))
            }
            Self::Customers { expected } => Some((counts.read, (*expected).max(counts.read))),
            Self::Unknown => None,
        }
    }

    /// The bar's layout: bytes shown as sizes, customers as counts.
    fn template(&self) -> &'static str {
        match self {
            Self::Bytes { .. } => {
                "{bar:30} {bytes}/{total_bytes} · {elapsed} elapsed, about {eta} left\n{msg}"
            }
            Self::Customers { .. } => {
                "{bar:30} {pos}/~{len} customers · {elapsed} elapsed, about {eta} left\n{msg}"
            }
            Self::Unknown => "{spinner} {elapsed} {msg}",
        }
    }
}

/// Shows a run's progress on stderr: a progress line on a terminal, periodic log
/// lines otherwise.
pub struct Progress {
    ticker: JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts showing `live` until [`Progress::finish`]; on a terminal, a bar
    /// with a total and the time left when `extent` is known, else a spinner.
    pub fn start(live: Arc<LiveCounts>, extent: Extent) -> Self {
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = if extent.progress(&RunCounts::default()).is_some() {
                ProgressBar::new(0)
            } else {
                ProgressBar::new_spinner()
            };
            bar.set_style(
                ProgressStyle::with_template(extent.template())
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let shown = bar.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    let counts = live.snapshot();
                    if let Some((position, length)) = extent.progress(&counts) {
                        shown.set_length(length);
                        shown.set_position(position);
                    }
                    shown.set_message(describe(&counts, started.elapsed()));
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
    describe_as(counts, elapsed, "sent")
}

/// The counts in words; `sent` is what the sent count is called (a dry run sends
/// nothing: it "would send").
fn describe_as(counts: &RunCounts, elapsed: Duration, sent: &str) -> String {
    format!(
        "read {} · {sent} {} · unchanged {} · skipped {} · rejected {} · failed {} · {:.0} customers/s",
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
    /// Only when true, so that the summary of contract §7 is otherwise unchanged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    rules_changed: bool,
    /// Only after a complete `--full` walk of the API: customers no longer there.
    #[serde(skip_serializing_if = "Option::is_none")]
    gone: Option<u64>,
}

/// What a sync's summary says about the identify rules (the `userId` strategy
/// and the mapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RulesNote {
    /// Nothing to say: the rules are those of the last run, or this is not a sync.
    #[default]
    Unchanged,
    /// They changed since the last run, and every customer was compared.
    ChangedComparedAll,
    /// They changed, but this run did not compare every customer (`--since`, or
    /// it stopped early): the next sync does.
    ChangedComparedSome,
}

impl RulesNote {
    /// The line for the summary, given how many profiles were sent; `None` when
    /// there is nothing to say.
    pub fn line(self, sent: u64) -> Option<String> {
        let sent = match sent {
            1 => "1 changed profile sent".to_owned(),
            n => format!("{n} changed profiles sent"),
        };
        // Each sentence on one line: the troubleshooting guide quotes them.
        match self {
            Self::Unchanged => None,
            Self::ChangedComparedAll => Some(format!(
                "the identify rules changed since the last run: every customer was compared; {sent}"
            )),
            Self::ChangedComparedSome => Some(format!(
                "the identify rules changed since the last run: {sent}, but not every customer was compared; the next sync without --since compares every customer"
            )),
        }
    }
}

/// How a run sent: for real, or as a dry run that only builds the payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Messages went to Segment.
    Sent,
    /// A dry run: nothing was sent.
    DryRun,
}

/// Prints the summary: a line on stderr (and one more when the identify rules
/// changed), and with `json` one object on `out`. `gone`: how many customers a
/// complete walk of the API found no longer there, when it looked.
pub fn summary(
    counts: &RunCounts,
    elapsed: Duration,
    mode: Mode,
    rules: RulesNote,
    gone: Option<u64>,
    json: bool,
    out: &mut Stdout,
) -> Result<(), Failure> {
    let sent = match mode {
        Mode::Sent => "sent",
        Mode::DryRun => "would send",
    };
    let mut counted = describe_as(counts, elapsed, sent).replace(" · ", ", ");
    if let Some(gone) = gone {
        counted += &format!(", gone {gone}");
    }
    eprintln!("{counted} in {:.2} s", elapsed.as_secs_f64());
    if let Some(line) = rules.line(counts.sent) {
        eprintln!("{line}");
    }
    if json {
        let summary = JsonSummary {
            read: counts.read,
            sent: counts.sent,
            unchanged: counts.unchanged,
            skipped: counts.skipped,
            rejected: counts.rejected,
            failed: counts.failed,
            duration_ms: elapsed.as_millis(),
            rules_changed: rules != RulesNote::Unchanged,
            gone,
        };
        out.json_line(&summary)?;
    }
    Ok(())
}

/// Standard output, buffered, for what a command prints as its result. A reader
/// that goes away (`| head -1`) ends the printing quietly: later lines are
/// dropped and the command carries on, or stops where printing was its only job.
pub struct Stdout {
    out: Option<BufWriter<std::io::Stdout>>,
}

impl Default for Stdout {
    fn default() -> Self {
        Self {
            out: Some(BufWriter::new(std::io::stdout())),
        }
    }
}

impl Stdout {
    /// Whether the reader went away.
    pub fn is_closed(&self) -> bool {
        self.out.is_none()
    }

    /// Writes one line (dropped once the reader went away).
    pub fn line(&mut self, text: impl fmt::Display) -> Result<(), Failure> {
        self.write_with(|out| writeln!(out, "{text}"))
    }

    /// Writes a value as one line of JSON.
    pub fn json_line(&mut self, value: &impl Serialize) -> Result<(), Failure> {
        self.write_with(|out| {
            serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
            writeln!(out)
        })
    }

    /// Writes a value as indented JSON.
    pub fn json_pretty(&mut self, value: &impl Serialize) -> Result<(), Failure> {
        self.write_with(|out| {
            serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
            writeln!(out)
        })
    }

    /// Writes one element of an indented JSON array that is printed a piece at a
    /// time (`first` opens it); [`Stdout::json_array_end`] closes it. The result
    /// reads as [`Stdout::json_pretty`] of the whole array would.
    pub fn json_array_item(&mut self, first: bool, value: &impl Serialize) -> Result<(), Failure> {
        let piece = json_array_piece(first, value).map_err(|e| Failure::Other(e.into()))?;
        self.write_with(|out| out.write_all(piece.as_bytes()))
    }

    /// Closes an array begun by [`Stdout::json_array_item`] (`empty`: none was).
    pub fn json_array_end(&mut self, empty: bool) -> Result<(), Failure> {
        self.write_with(|out| out.write_all(json_array_end(empty).as_bytes()))
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<(), Failure> {
        self.write_with(Write::flush)
    }

    fn write_with(
        &mut self,
        write: impl FnOnce(&mut BufWriter<std::io::Stdout>) -> std::io::Result<()>,
    ) -> Result<(), Failure> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        match write(out) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                // Nothing more can reach the reader; what is buffered goes with
                // it (the writer's own flush on drop ignores the same error).
                self.out = None;
                Ok(())
            }
            Err(error) => Err(Failure::Other(
                anyhow::Error::new(error).context("cannot write to stdout"),
            )),
        }
    }
}

/// One element of an indented JSON array, with what comes before it.
fn json_array_piece(first: bool, value: &impl Serialize) -> serde_json::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    let mut piece = String::from(if first { "[\n" } else { ",\n" });
    for (n, line) in text.lines().enumerate() {
        if n > 0 {
            piece.push('\n');
        }
        piece.push_str("  ");
        piece.push_str(line);
    }
    Ok(piece)
}

/// What closes an array of indented JSON pieces.
fn json_array_end(empty: bool) -> &'static str {
    if empty {
        "[]\n"
    } else {
        "\n]\n"
    }
}

impl Drop for Stdout {
    fn drop(&mut self) {
        // A last flush for callers that did not; a closed reader is fine here.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_printed_a_piece_at_a_time_reads_as_the_whole_array_printed_at_once() {
        let items = [
            serde_json::json!({"a": 1, "b": [1, 2], "c": {"d": "e"}}),
            serde_json::json!("x"),
            serde_json::json!({}),
        ];
        for count in 0..=items.len() {
            let mut printed = String::new();
            for (n, item) in items[..count].iter().enumerate() {
                printed += &json_array_piece(n == 0, item).unwrap();
            }
            printed += json_array_end(count == 0);
            let whole = serde_json::to_string_pretty(&items[..count]).unwrap() + "\n";
            assert_eq!(printed, whole, "{count} items");
        }
    }

    #[test]
    fn a_known_extent_gives_the_bar_a_position_and_a_total_that_grows_past_a_short_guess() {
        let read = Arc::new(AtomicU64::new(0));
        let file = Extent::Bytes {
            read: Arc::clone(&read),
            total: 1_000,
        };
        let counts = RunCounts::default();
        assert_eq!(file.progress(&counts), Some((0, 1_000)));
        read.store(500, Ordering::Relaxed);
        assert_eq!(file.progress(&counts), Some((500, 1_000)));
        read.store(1_200, Ordering::Relaxed);
        assert_eq!(file.progress(&counts), Some((1_200, 1_200)));

        let api = Extent::Customers { expected: 100 };
        let mut counts = RunCounts {
            read: 40,
            ..RunCounts::default()
        };
        assert_eq!(api.progress(&counts), Some((40, 100)));
        counts.read = 150;
        assert_eq!(api.progress(&counts), Some((150, 150)));

        assert_eq!(Extent::Unknown.progress(&counts), None);
    }

    #[test]
    fn a_bar_shows_its_total_and_the_time_left_and_a_spinner_does_not_pretend() {
        let known = [
            Extent::Bytes {
                read: Arc::default(),
                total: 1,
            },
            Extent::Customers { expected: 1 },
        ];
        for extent in &known {
            let template = extent.template();
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
            assert!(
                template.contains("{eta}") && template.contains("{bar"),
                "{template}"
            );
        }
        assert!(known[0].template().contains("{total_bytes}"));
        assert!(known[1].template().contains("{len}"));
        let spinner = Extent::Unknown.template();
        assert!(ProgressStyle::with_template(spinner).is_ok());
        assert!(!spinner.contains("{eta}"), "no total, no estimate");

        // indicatif estimates the time left from the position and the length.
        let bar = ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::hidden());
        let (position, length) = known[1]
            .progress(&RunCounts {
                read: 0,
                ..RunCounts::default()
            })
            .unwrap();
        bar.set_length(length);
        bar.set_position(position);
        assert_eq!(bar.length(), Some(1));
    }

    #[test]
    fn the_rules_line_is_there_only_when_the_rules_changed_and_counts_in_words() {
        assert_eq!(RulesNote::Unchanged.line(3), None);
        assert_eq!(
            RulesNote::ChangedComparedAll.line(1).unwrap(),
            "the identify rules changed since the last run: every customer was compared; 1 changed profile sent"
        );
        assert_eq!(
            RulesNote::ChangedComparedSome.line(0).unwrap(),
            "the identify rules changed since the last run: 0 changed profiles sent, but not every customer was compared; the next sync without --since compares every customer"
        );
    }
}
