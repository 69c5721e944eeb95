//! (c)–(f) `segment-sync sync` runs: from generated NDJSON files and from the
//! fake commercetools API, each against the fake Segment.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use segment_sync_domain::walk::{DEFAULT_CONCURRENCY, MAX_CONCURRENCY};
use segment_sync_testkit::fake_commercetools::FakeCommercetools;
use segment_sync_testkit::fake_segment::FakeSegment;
use segment_sync_testkit::generate::{self, DEFAULT_SEED, GENERATOR_VERSION};

use super::process::{measure, BenchState, ChildEnv};
use super::table::{per_second, thousands, Met, Table};

/// Bounds a run, so that the whole bench stays within minutes even when the binary is slow.
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

/// The NDJSON file of `count` generated customers, written once and reused.
pub fn customers_file(data: &Path, count: u64) -> Result<PathBuf> {
    let path = data.join(format!(
        "customers-{count}-seed{DEFAULT_SEED}-v{GENERATOR_VERSION}.ndjson"
    ));
    if !path.exists() {
        eprintln!(
            "generating {} customers into {}",
            thousands(count),
            path.display()
        );
        let partial = path.with_extension("partial");
        generate::write_ndjson(&partial, count, DEFAULT_SEED)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        fs::rename(&partial, &path).context("cannot move the generated file in place")?;
    }
    Ok(path)
}

/// `sync --input <file>`: a throughput row and a peak-RSS row. The targets are
/// those of the SQLite state; on PostgreSQL the figures are shown beside them.
pub async fn from_file(
    binary: Result<&Path, &str>,
    env: &ChildEnv,
    segment: &FakeSegment,
    (count, file, name): (u64, &Path, &str),
    state: Result<&BenchState, &str>,
    table: &mut Table,
) {
    let on = state.map_or(", PostgreSQL state", BenchState::label);
    let label = format!("sync --input, {} customers{on}", thousands(count));
    let rss_label = format!("peak RSS, sync --input {}{on}", thousands(count));
    let sqlite = matches!(state, Ok(BenchState::Sqlite));
    let (target, rss_target) = if sqlite {
        (">= 100,000/s", "<= 64 MiB")
    } else {
        ("-", "-")
    };
    let (binary, state) = match (binary, state) {
        (Ok(binary), Ok(state)) => (binary, state),
        (Err(why), _) | (_, Err(why)) => {
            table.not_available(label, target, why);
            table.not_available(rss_label, rss_target, why);
            return;
        }
    };
    let mut command = env.command(binary, name);
    command
        .arg("sync")
        .arg("--input")
        .arg(file)
        .arg("--json")
        .arg("--state")
        .arg(state.argument(env, name));
    match run(command, env, name, segment).await {
        Ok(run) => {
            let rate = count as f64 / run.wall.as_secs_f64();
            let figure = format!("{} ({})", per_second(rate), run.note(count));
            if sqlite {
                let met = rate >= 100_000.0 && run.complete(count);
                table.check(label, figure, target, met);
            } else {
                table.add(label, figure, target, Met::Neither);
            }
            table.rss(rss_label, run.peak_rss_kib, sqlite);
        }
        Err(e) => {
            let why = format!("{e:#}");
            table.not_available(label, target, &why);
            table.not_available(rss_label, rss_target, &why);
        }
    }
}

/// Page latencies and id ranges of the API rows: no latency, to show that
/// several ranges cost nothing when the API answers at once, then a realistic
/// 150 ms per page of 500 customers, where one cursor waits on every page.
const API_RUNS: [(Duration, u32); 5] = [
    (Duration::ZERO, 1),
    (Duration::ZERO, DEFAULT_CONCURRENCY),
    (PAGE_LATENCY, 1),
    (PAGE_LATENCY, DEFAULT_CONCURRENCY),
    (PAGE_LATENCY, MAX_CONCURRENCY),
];

/// How long the fake takes over each page in the latency rows.
const PAGE_LATENCY: Duration = Duration::from_millis(150);

/// `sync` backfills from the fake commercetools API serving `count` generated
/// customers, each into a fresh state: [`API_RUNS`], a throughput row and a
/// peak-RSS row each. With latency, the default concurrency must reach
/// 30,000/s and ten times one cursor within 64 MiB; without, it must be no
/// slower than one cursor.
pub async fn from_api(
    binary: Result<&Path, &str>,
    env: &ChildEnv,
    (api, segment): (&FakeCommercetools, &FakeSegment),
    count: u64,
    table: &mut Table,
) {
    let mut one_cursor = [None, None];
    for (latency, concurrency) in API_RUNS {
        let with_latency = latency > Duration::ZERO;
        let label = format!(
            "sync from the API (fake{}), {} customers, {}",
            if with_latency {
                format!(", {} ms pages", latency.as_millis())
            } else {
                String::new()
            },
            thousands(count),
            if concurrency == 1 {
                "1 cursor".to_owned()
            } else {
                format!("{concurrency} ranges")
            }
        );
        let rss_label = format!("peak RSS, {label}");
        let (target, rss_target) = match (with_latency, concurrency) {
            (_, 1) | (true, MAX_CONCURRENCY) => ("-", false),
            (true, _) => (">= 30,000/s and 10x 1 cursor", true),
            (false, _) => (">= 1 cursor", false),
        };
        let binary = match binary {
            Ok(binary) => binary,
            Err(why) => return table.not_available(label, target, why),
        };
        api.set_page_latency(latency);
        let name = format!("api-{}ms-{concurrency}", latency.as_millis());
        let mut command = env.command(binary, &name);
        command
            .args(["sync", "--json", "--concurrency"])
            .arg(concurrency.to_string())
            .arg("--state")
            .arg(env.dir.join(format!("{name}.db")));
        let run = run(command, env, &name, segment).await;
        api.set_page_latency(Duration::ZERO);
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                table.not_available(label, target, &format!("{e:#}"));
                continue;
            }
        };
        let rate = count as f64 / run.wall.as_secs_f64();
        let figure = format!("{} ({})", per_second(rate), run.note(count));
        let slot = usize::from(with_latency);
        match (concurrency, one_cursor[slot]) {
            (1, _) => {
                one_cursor[slot] = Some(rate);
                table.add(label, figure, target, Met::Neither);
            }
            (MAX_CONCURRENCY, _) if with_latency => table.add(label, figure, target, Met::Neither),
            (_, Some(single)) => {
                let met = if with_latency {
                    rate >= 30_000.0 && rate >= 10.0 * single
                } else {
                    rate >= single
                };
                table.check(
                    label,
                    format!("{figure}, {:.1}x 1 cursor", rate / single),
                    target,
                    met && run.complete(count),
                );
            }
            (_, None) => table.add(label, figure, target, Met::Neither),
        }
        table.rss(rss_label, run.peak_rss_kib, rss_target);
    }
}

/// How fast the fake commercetools builds pages of its customers on one thread.
/// It must outpace the API run it serves, or that row measures the fake.
pub async fn fake_page_building(api: &FakeCommercetools, count: u64, table: &mut Table) {
    const LABEL: &str = "fake API page building, 1 core";
    const TARGET: &str = ">= 100,000/s";
    let api = api.clone();
    let measured = tokio::task::spawn_blocking(move || {
        let pages = count.div_ceil(500).max(1);
        let started = Instant::now();
        let mut built = 0;
        for page in 0..pages {
            // Pages that start evenly over the id space: every customer about once.
            let from = format!(r#"id >= "{:08x}""#, u64::from(u32::MAX) * page / pages);
            let (status, body) =
                api.query_answer(&[("limit", "500"), ("withTotal", "false"), ("where", &from)]);
            if status != 200 {
                return Err(format!("the fake answered {status}"));
            }
            built += page_count(&body).ok_or("a page without a count")?;
        }
        Ok((built, started.elapsed()))
    })
    .await;
    match measured {
        Ok(Ok((built, elapsed))) => {
            let rate = built as f64 / elapsed.as_secs_f64();
            table.check(
                LABEL,
                format!("{} ({} customers)", per_second(rate), thousands(built)),
                TARGET,
                rate >= 100_000.0,
            );
        }
        Ok(Err(why)) => table.not_available(LABEL, TARGET, &why),
        Err(e) => table.not_available(LABEL, TARGET, &format!("panicked: {e}")),
    }
}

/// The `count` of a query answer, read from its opening (the fake writes it
/// before the results) rather than by parsing the page.
fn page_count(body: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(&body[..body.len().min(128)]).ok()?;
    let digits = head.split_once(r#""count":"#)?.1;
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

/// What a finished `sync` did.
struct SyncRun {
    wall: Duration,
    peak_rss_kib: Option<u64>,
    status: ExitStatus,
    summary: serde_json::Value,
    segment_messages: u64,
}

impl SyncRun {
    fn field(&self, name: &str) -> u64 {
        self.summary[name].as_u64().unwrap_or(0)
    }

    /// Whether every customer was accounted for and Segment received what was sent.
    fn complete(&self, count: u64) -> bool {
        self.field("read") == count && self.field("sent") == self.segment_messages
    }

    fn note(&self, count: u64) -> String {
        let mut note = format!(
            "{:.2} s, read {}, sent {}, skipped {}",
            self.wall.as_secs_f64(),
            thousands(self.field("read")),
            thousands(self.field("sent")),
            thousands(self.field("skipped")),
        );
        if !self.status.success() {
            let _ = write!(note, ", exit {}", self.status.code().unwrap_or(-1));
        }
        if self.field("read") != count {
            let _ = write!(note, ", expected {}", thousands(count));
        }
        if self.field("sent") != self.segment_messages {
            let _ = write!(note, ", Segment got {}", thousands(self.segment_messages));
        }
        note
    }
}

async fn run(
    command: Command,
    env: &ChildEnv,
    name: &str,
    segment: &FakeSegment,
) -> Result<SyncRun> {
    let before = segment.message_count();
    let measured = tokio::task::spawn_blocking(move || measure(command, SYNC_TIMEOUT))
        .await
        .context("the measuring thread panicked")??;
    let segment_messages = segment.message_count() - before;
    let stdout = env.output(name, "stdout");
    let summary = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(serde_json::Value::is_object);
    let Some(summary) = summary else {
        bail!(
            "exit {}, no JSON summary: {}",
            measured.status.code().unwrap_or(-1),
            env.last_error_line(name)
        );
    };
    Ok(SyncRun {
        wall: measured.wall,
        peak_rss_kib: measured.peak_rss_kib,
        status: measured.status,
        summary,
        segment_messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fake_page_building_row_counts_every_customer_about_once() {
        let api = FakeCommercetools::generated(5_000, DEFAULT_SEED).await;
        let mut table = Table::default();
        fake_page_building(&api, 5_000, &mut table).await;
        let text = table.render();
        let row = text.lines().nth(2).unwrap();
        assert!(row.contains("fake API page building"), "{text}");
        // Ten pages from evenly spread starts: the uniform ids put about 500
        // customers between two starts, and a page holds at most 500.
        let built: u64 = row
            .split(" (")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .map(|n| n.replace(',', "").parse().unwrap())
            .unwrap();
        assert!((4_000..=5_000).contains(&built), "{text}");
    }

    #[test]
    fn the_count_is_read_from_the_opening_of_a_page() {
        assert_eq!(
            page_count(br#"{"limit":500,"offset":0,"count":437,"results":[]}"#),
            Some(437)
        );
        assert_eq!(page_count(br#"{"results":[]}"#), None);
    }
}
