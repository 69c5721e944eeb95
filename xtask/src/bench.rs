//! `cargo xtask bench`: the figures of issue 8 in one table.
//!
//! Each step that cannot run (the binary does not build, a command is missing)
//! becomes `n/a (reason)` in its row and the others still run, so a partial
//! picture is always printed. Everything talks to fakes on 127.0.0.1.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::generate::{self, DEFAULT_SEED};

/// Customers in the smaller file run and in the API backfill.
const SMALL_RUN: u64 = 200_000;
/// Customers in the larger file run: peak memory must not grow with the count.
const LARGE_RUN: u64 = 1_000_000;
/// Webhook requests in total, and how many are in flight at once.
const WEBHOOK_REQUESTS: usize = 12_000;
const WEBHOOK_CLIENTS: usize = 64;
/// Bounds that keep the whole bench within a few minutes even when the binary is slow.
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

const PROJECT_KEY: &str = "bench-project";
const WEBHOOK_TOKEN: &str = "bench-webhook-token";
const MIB: f64 = 1024.0 * 1024.0;

/// One line of the table.
struct Row {
    benchmark: String,
    figure: String,
    target: &'static str,
    met: Met,
}

enum Met {
    Yes,
    No,
    /// No target, or no figure to compare.
    Neither,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn add(
        &mut self,
        benchmark: impl Into<String>,
        figure: String,
        target: &'static str,
        met: Met,
    ) {
        self.0.push(Row {
            benchmark: benchmark.into(),
            figure,
            target,
            met,
        });
    }

    fn not_available(&mut self, benchmark: impl Into<String>, target: &'static str, why: &str) {
        self.add(benchmark, format!("n/a ({why})"), target, Met::Neither);
    }

    fn check(
        &mut self,
        benchmark: impl Into<String>,
        figure: String,
        target: &'static str,
        met: bool,
    ) {
        self.add(
            benchmark,
            figure,
            target,
            if met { Met::Yes } else { Met::No },
        );
    }

    fn render(&self) -> String {
        let header = ["benchmark", "figure", "target", "met?"];
        let cells: Vec<[String; 4]> = self
            .0
            .iter()
            .map(|row| {
                [
                    row.benchmark.clone(),
                    row.figure.clone(),
                    row.target.to_owned(),
                    match row.met {
                        Met::Yes => "yes",
                        Met::No => "NO",
                        Met::Neither => "-",
                    }
                    .to_owned(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 4]| {
            let mut out = String::from("|");
            for (cell, width) in cells.iter().zip(widths) {
                let pad = width - cell.chars().count();
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
            out
        };
        let mut out = line(header);
        out.push('|');
        for width in widths {
            out.push_str(&"-".repeat(width + 2));
            out.push('|');
        }
        out.push('\n');
        for row in &cells {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
        }
        out
    }
}

/// Runs every benchmark and prints the table on stdout.
pub fn command(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("cargo xtask bench takes no arguments, got {arg}");
    }
    let started = Instant::now();
    let mut table = Table::default();

    criterion(&mut table);

    let binary = build_release();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(end_to_end(binary, &mut table))?;

    println!();
    println!(
        "segment-sync benchmarks ({} cores available, {:.0} s in all)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    print!("{}", table.render());
    Ok(())
}

/// (a) The domain's criterion benchmark; each bench id ends with its batch size.
fn criterion(table: &mut Table) {
    const IDENTIFY: &str = "identify + serialise, 1 core (criterion)";
    const PARSE: &str = "JSON bytes -> identify, 1 core (criterion)";
    let mut command = crate::cargo();
    command
        .args([
            "bench",
            "-p",
            "segment-sync-domain",
            "--bench",
            "transform",
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            "4",
            "--sample-size",
            "30",
            "--output-format",
            "bencher",
        ])
        .stdout(Stdio::piped());
    eprintln!(
        "$ cargo bench -p segment-sync-domain --bench transform -- --output-format bencher …"
    );
    let output = match command.output() {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            let why = format!("cargo bench failed with {}", output.status);
            table.not_available(IDENTIFY, ">= 250,000/s", &why);
            table.not_available(PARSE, "-", &why);
            return;
        }
        Err(e) => {
            let why = format!("cannot run cargo bench: {e}");
            table.not_available(IDENTIFY, ">= 250,000/s", &why);
            table.not_available(PARSE, "-", &why);
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rates = parse_bencher(&stdout);
    match rates.get("identify") {
        Some(&rate) => table.check(
            IDENTIFY,
            per_second(rate),
            ">= 250,000/s",
            rate >= 250_000.0,
        ),
        None => table.not_available(IDENTIFY, ">= 250,000/s", "no identify line in the output"),
    }
    match rates.get("parse_and_identify") {
        Some(&rate) => table.add(PARSE, per_second(rate), "-", Met::Neither),
        None => table.not_available(PARSE, "-", "no parse_and_identify line in the output"),
    }
}

/// Elements per second by bench function, from lines such as
/// `test transform/identify/1000 ... bench:     3,456,789 ns/iter (+/- 12,345)`.
fn parse_bencher(output: &str) -> HashMap<String, f64> {
    let mut rates = HashMap::new();
    for line in output.lines() {
        let Some((name, rest)) = line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... bench:"))
        else {
            continue;
        };
        let Some(nanos) = rest
            .split_whitespace()
            .next()
            .and_then(|n| n.replace(',', "").parse::<f64>().ok())
        else {
            continue;
        };
        let mut parts = name.trim().rsplit('/');
        let (Some(elements), Some(function)) = (
            parts.next().and_then(|n| n.parse::<f64>().ok()),
            parts.next(),
        ) else {
            continue;
        };
        if nanos > 0.0 {
            rates.insert(function.to_owned(), elements * 1e9 / nanos);
        }
    }
    rates
}

/// (b) The release binary, or why there is none. `SEGMENT_SYNC_BIN` names one
/// built elsewhere (another checkout, an older version to compare with).
fn build_release() -> Result<PathBuf, String> {
    if let Some(binary) = std::env::var_os("SEGMENT_SYNC_BIN") {
        let binary = PathBuf::from(binary);
        eprintln!("using SEGMENT_SYNC_BIN={}", binary.display());
        return if binary.exists() {
            Ok(binary)
        } else {
            Err(format!("SEGMENT_SYNC_BIN {} not found", binary.display()))
        };
    }
    let mut command = crate::cargo();
    command.args(["build", "--release", "-p", "segment-sync"]);
    crate::run(command).map_err(|_| "release build failed".to_owned())?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let binary = target.join("release").join("segment-sync");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!("{} not found", binary.display()))
    }
}

/// (c)–(g): the binary against the fakes.
async fn end_to_end(binary: Result<PathBuf, String>, table: &mut Table) -> Result<()> {
    let data = crate::workspace_root().join("target").join("bench-data");
    let small_file = customers_file(&data, SMALL_RUN)?;
    let large_file = customers_file(&data, LARGE_RUN)?;

    let segment = FakeSegment::start().await?;
    let commercetools = FakeCommercetools::start(SMALL_RUN).await?;
    let scratch = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&data)
        .context("cannot make a scratch folder")?;
    let env = ChildEnv {
        dir: scratch.path().to_owned(),
        segment: segment.addr,
        commercetools: commercetools.addr,
    };

    let file_runs = [
        (SMALL_RUN, &small_file, "small"),
        (LARGE_RUN, &large_file, "large"),
    ];
    for (count, file, name) in file_runs {
        let label = format!("sync --input, {} customers", thousands(count));
        let rss_label = format!("peak RSS, sync --input {}", thousands(count));
        let binary = match &binary {
            Ok(binary) => binary,
            Err(why) => {
                table.not_available(label, ">= 100,000/s", why);
                table.not_available(rss_label, "<= 64 MiB", why);
                continue;
            }
        };
        let mut command = env.command(binary, name);
        command
            .arg("sync")
            .arg("--input")
            .arg(file)
            .arg("--json")
            .arg("--state")
            .arg(env.dir.join(format!("{name}.db")));
        match sync_run(command, &env, name, &segment).await {
            Ok(run) => {
                let rate = count as f64 / run.wall.as_secs_f64();
                table.check(
                    label,
                    format!("{} ({})", per_second(rate), run.note(count)),
                    ">= 100,000/s",
                    rate >= 100_000.0 && run.complete(count),
                );
                rss_row(table, rss_label, run.peak_rss_kib, true);
            }
            Err(e) => {
                let why = format!("{e:#}");
                table.not_available(label, ">= 100,000/s", &why);
                table.not_available(rss_label, "<= 64 MiB", &why);
            }
        }
    }

    let label = format!(
        "sync from the API (fake), {} customers",
        thousands(SMALL_RUN)
    );
    match &binary {
        Err(why) => table.not_available(label, "-", why),
        Ok(binary) => {
            let mut command = env.command(binary, "api");
            command
                .args(["sync", "--json", "--state"])
                .arg(env.dir.join("api.db"));
            match sync_run(command, &env, "api", &segment).await {
                Ok(run) => {
                    let rate = SMALL_RUN as f64 / run.wall.as_secs_f64();
                    let rss = run
                        .peak_rss_kib
                        .map_or("?".to_owned(), |kib| mib(kib as f64 * 1024.0));
                    table.add(
                        label,
                        format!(
                            "{} ({}, peak RSS {rss})",
                            per_second(rate),
                            run.note(SMALL_RUN)
                        ),
                        "-",
                        Met::Neither,
                    );
                }
                Err(e) => table.not_available(label, "-", &format!("{e:#}")),
            }
        }
    }

    match &binary {
        Err(why) => {
            table.not_available("webhook throughput, 64 clients", ">= 5,000 req/s", why);
            table.not_available("webhook latency p99", "<= 100 ms", why);
        }
        Ok(binary) => webhook(binary, &env, table).await,
    }
    drop(scratch);
    Ok(())
}

/// The NDJSON file of `count` generated customers, written once and reused.
fn customers_file(data: &Path, count: u64) -> Result<PathBuf> {
    let path = data.join(format!("customers-{count}-seed{DEFAULT_SEED}.ndjson"));
    if !path.exists() {
        eprintln!(
            "generating {} customers into {}",
            thousands(count),
            path.display()
        );
        let partial = path.with_extension("partial");
        generate::write_ndjson(&partial, count, DEFAULT_SEED)?;
        fs::rename(&partial, &path).context("cannot move the generated file in place")?;
    }
    Ok(path)
}

/// What the children need to reach the fakes, and where they keep their files.
struct ChildEnv {
    dir: PathBuf,
    segment: SocketAddr,
    commercetools: SocketAddr,
}

impl ChildEnv {
    /// The binary with an environment that reaches only the fakes; `name` names
    /// the files its output goes to.
    fn command(&self, binary: &Path, name: &str) -> Command {
        let mut command = Command::new(binary);
        let ctp = format!("http://{}", self.commercetools);
        command
            // No `.env` of the developer's is picked up from here.
            .current_dir(&self.dir)
            .env("SEGMENT_WRITE_KEY", "bench-write-key")
            .env("SEGMENT_ENDPOINT", format!("http://{}", self.segment))
            .env("CTP_PROJECT_KEY", PROJECT_KEY)
            .env("CTP_CLIENT_ID", "bench-client")
            .env("CTP_CLIENT_SECRET", "bench-secret")
            .env("CTP_AUTH_URL", &ctp)
            .env("CTP_API_URL", &ctp)
            .env_remove("CTP_REGION")
            .env_remove("CTP_SCOPES")
            .env_remove("SEGMENT_SYNC_STATE")
            .env_remove("SEGMENT_SYNC_USER_ID")
            .env_remove("PORT")
            .env("WEBHOOK_TOKEN", WEBHOOK_TOKEN)
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null());
        if let (Ok(stdout), Ok(stderr)) = (
            fs::File::create(self.dir.join(format!("{name}.stdout"))),
            fs::File::create(self.dir.join(format!("{name}.stderr"))),
        ) {
            command.stdout(stdout).stderr(stderr);
        }
        command
    }

    fn output(&self, name: &str, stream: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.{stream}"))).unwrap_or_default()
    }

    /// The last line of a child's stderr, to say why it failed.
    fn last_error_line(&self, name: &str) -> String {
        let stderr = self.output(name, "stderr");
        let line = stderr.lines().last().unwrap_or("no output").trim();
        line.chars().take(160).collect()
    }
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

async fn sync_run(
    command: Command,
    env: &ChildEnv,
    name: &str,
    segment: &FakeSegment,
) -> Result<SyncRun> {
    let before = segment.messages.load(Ordering::SeqCst);
    let measured = tokio::task::spawn_blocking(move || measure(command, SYNC_TIMEOUT))
        .await
        .context("the measuring thread panicked")??;
    let segment_messages = segment.messages.load(Ordering::SeqCst) - before;
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

struct Measured {
    wall: Duration,
    peak_rss_kib: Option<u64>,
    status: ExitStatus,
}

/// Runs a child to its end, or kills it at the timeout, sampling its peak RSS.
///
/// The peak is the kernel's own high-water mark (`VmHWM`), read every 10 ms; it
/// only misses growth in the last 10 ms of the run, which is spent exiting.
fn measure(mut command: Command, timeout: Duration) -> Result<Measured> {
    let started = Instant::now();
    let mut child = command.spawn().context("cannot start segment-sync")?;
    let mut peak: Option<u64> = None;
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for segment-sync")? {
            break status;
        }
        if let Some(hwm) = vm_hwm_kib(child.id()) {
            peak = Some(peak.map_or(hwm, |p| p.max(hwm)));
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Measured {
        wall: started.elapsed(),
        peak_rss_kib: peak,
        status,
    })
}

/// The peak resident set of a running process, in KiB (Linux only).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_row(table: &mut Table, label: String, peak_kib: Option<u64>, against_target: bool) {
    match peak_kib {
        Some(kib) if against_target => table.check(
            label,
            mib(kib as f64 * 1024.0),
            "<= 64 MiB",
            kib <= 64 * 1024,
        ),
        Some(kib) => table.add(label, mib(kib as f64 * 1024.0), "-", Met::Neither),
        None => table.not_available(label, "<= 64 MiB", "/proc/<pid>/status unreadable"),
    }
}

/// (g) `serve` under 64 concurrent clients posting `CustomerCreated` messages.
async fn webhook(binary: &Path, env: &ChildEnv, table: &mut Table) {
    const THROUGHPUT: &str = "webhook throughput, 64 clients";
    const LATENCY: &str = "webhook latency p99";
    match webhook_load(binary, env).await {
        Ok(load) => {
            let rate = load.completed as f64 / load.elapsed.as_secs_f64();
            let mut note = format!(
                "{} requests in {:.2} s",
                thousands(load.completed as u64),
                load.elapsed.as_secs_f64()
            );
            if load.failed > 0 {
                let _ = write!(note, ", {} not 2xx", thousands(load.failed as u64));
            }
            let p99 = load.percentile(0.99);
            table.check(
                THROUGHPUT,
                format!("{} req/s ({note})", thousands(rate.round() as u64)),
                ">= 5,000 req/s",
                rate >= 5_000.0 && load.failed == 0,
            );
            table.check(
                LATENCY,
                format!(
                    "{:.1} ms (p50 {:.1} ms, max {:.1} ms)",
                    millis(p99),
                    millis(load.percentile(0.5)),
                    millis(load.percentile(1.0))
                ),
                "<= 100 ms",
                p99 <= Duration::from_millis(100) && load.failed == 0,
            );
            rss_row(
                table,
                "peak RSS, serve under load".into(),
                load.peak_rss_kib,
                false,
            );
        }
        Err(e) => {
            let why = format!("{e:#}");
            table.not_available(THROUGHPUT, ">= 5,000 req/s", &why);
            table.not_available(LATENCY, "<= 100 ms", &why);
        }
    }
}

struct Load {
    completed: usize,
    failed: usize,
    elapsed: Duration,
    /// Sorted, one per completed request.
    latencies: Vec<Duration>,
    peak_rss_kib: Option<u64>,
}

impl Load {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }
}

/// Kills the server however the load ends.
struct ServeGuard(Child);

impl Drop for ServeGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn webhook_load(binary: &Path, env: &ChildEnv) -> Result<Load> {
    let port = free_port()?;
    let mut command = env.command(binary, "serve");
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state"])
        .arg(env.dir.join("serve.db"));
    let mut server = ServeGuard(command.spawn().context("cannot start segment-sync serve")?);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(WEBHOOK_CLIENTS)
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = server.0.try_wait()? {
            bail!(
                "serve exited with {status}: {}",
                env.last_error_line("serve")
            );
        }
        let healthy = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "/healthz not answering after {} s",
                STARTUP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bodies are made before the clock starts so that only the server is measured.
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..WEBHOOK_REQUESTS as u64)
            .map(|i| Bytes::from(customer_created(50_000_000 + i)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/webhooks/commercetools");
    let started = Instant::now();
    let stop_at = started + WEBHOOK_TIMEOUT;
    let mut clients = Vec::with_capacity(WEBHOOK_CLIENTS);
    for _ in 0..WEBHOOK_CLIENTS {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() || Instant::now() > stop_at {
                    break;
                }
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(WEBHOOK_TOKEN)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await;
                let ok = match response {
                    Ok(response) => {
                        let success = response.status().is_success();
                        // Reading the body lets the connection go back to the pool.
                        let _ = response.bytes().await;
                        success
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                if !ok {
                    failed += 1;
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies = Vec::with_capacity(WEBHOOK_REQUESTS);
    let mut failed = 0;
    for client in clients {
        let (mine, my_failed) = client.await.context("a client task panicked")?;
        latencies.extend(mine);
        failed += my_failed;
    }
    let elapsed = started.elapsed();
    let peak_rss_kib = vm_hwm_kib(server.0.id());
    drop(server);
    latencies.sort_unstable();
    if failed == latencies.len() {
        bail!("every request failed: {}", env.last_error_line("serve"));
    }
    Ok(Load {
        completed: latencies.len(),
        failed,
        elapsed,
        latencies,
        peak_rss_kib,
    })
}

/// A commercetools `CustomerCreated` Platform message for generated customer `index`.
fn customer_created(index: u64) -> Vec<u8> {
    let id = generate::customer_id(DEFAULT_SEED, index);
    let mut body = Vec::with_capacity(4096);
    let _ = write!(
        ByteWriter(&mut body),
        r#"{{"notificationType":"Message","projectKey":"{PROJECT_KEY}","id":"{message_id}","version":1,"sequenceNumber":1,"resource":{{"typeId":"customer","id":"{id}"}},"resourceVersion":1,"type":"CustomerCreated","createdAt":"2024-05-01T10:00:00.000Z","lastModifiedAt":"2024-05-01T10:00:00.000Z","customer":"#,
        message_id = generate::customer_id(DEFAULT_SEED ^ 0xFEED, index),
    );
    generate::write_customer(DEFAULT_SEED, index, &mut body);
    body.push(b'}');
    body
}

/// `fmt::Write` onto bytes, for `write!` into a body.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A Segment Tracking API that acknowledges at once and counts identify calls.
struct FakeSegment {
    addr: SocketAddr,
    messages: Arc<AtomicU64>,
}

impl FakeSegment {
    async fn start() -> Result<Self> {
        let messages = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/v1/batch", post(segment_batch))
            .layer(DefaultBodyLimit::max(16 << 20))
            .with_state(messages.clone());
        let addr = serve(app).await?;
        Ok(Self { addr, messages })
    }
}

async fn segment_batch(
    State(messages): State<Arc<AtomicU64>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let text = if gzipped {
        let mut text = String::new();
        let decoded =
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text);
        if decoded.is_err() {
            return (StatusCode::BAD_REQUEST, JSON, r#"{"error":"bad gzip"}"#);
        }
        text
    } else {
        match std::str::from_utf8(&body) {
            Ok(text) => text.to_owned(),
            Err(_) => return (StatusCode::BAD_REQUEST, JSON, r#"{"error":"not UTF-8"}"#),
        }
    };
    // The app writes its messages compactly, so counting this marker counts them
    // without parsing half a megabyte of JSON per request.
    let count = text.matches(r#""type":"identify""#).count();
    messages.fetch_add(count as u64, Ordering::Relaxed);
    (StatusCode::OK, JSON, r#"{"success":true}"#)
}

const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];

/// A commercetools API over `count` generated customers, made page by page on
/// request so that memory stays flat whatever the count.
struct FakeCommercetools {
    addr: SocketAddr,
}

impl FakeCommercetools {
    async fn start(count: u64) -> Result<Self> {
        let app = Router::new()
            .route("/oauth/token", post(ctp_token))
            .route("/{project}/customers", get(ctp_customers))
            .route("/{project}/customers/{id}", get(ctp_customer))
            .with_state(count);
        let addr = serve(app).await?;
        Ok(Self { addr })
    }
}

async fn ctp_token() -> impl IntoResponse {
    (
        JSON,
        r#"{"access_token":"bench-access-token","token_type":"Bearer","expires_in":172800,"scope":"manage_customers:bench-project"}"#,
    )
}

async fn ctp_customers(
    State(count): State<u64>,
    Query(params): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    let limit = params
        .iter()
        .find(|(name, _)| name == "limit")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(20)
        .clamp(1, 500);
    // `where=id > "<last id>"`, alone or joined with other predicates.
    let start = params
        .iter()
        .filter(|(name, _)| name == "where")
        .find_map(|(_, predicate)| {
            let after = predicate.split_once("id > \"")?.1;
            generate::index_of(after.split('"').next()?)
        })
        .map_or(0, |last| last + 1);
    let end = count.min(start.saturating_add(limit));
    let mut body = Vec::with_capacity(((end.saturating_sub(start)) as usize + 1) * 2048);
    let _ = write!(
        ByteWriter(&mut body),
        r#"{{"limit":{limit},"offset":0,"count":{},"results":["#,
        end.saturating_sub(start)
    );
    for index in start..end {
        if index > start {
            body.push(b',');
        }
        generate::write_customer(DEFAULT_SEED, index, &mut body);
    }
    body.extend_from_slice(b"]}");
    (JSON, body)
}

async fn ctp_customer(
    State(count): State<u64>,
    UrlPath((_project, id)): UrlPath<(String, String)>,
) -> impl IntoResponse {
    match generate::index_of(&id).filter(|&i| i < count || i >= 50_000_000) {
        Some(index) if generate::customer_id(DEFAULT_SEED, index) == id => {
            let mut body = Vec::with_capacity(2048);
            generate::write_customer(DEFAULT_SEED, index, &mut body);
            (StatusCode::OK, JSON, body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            JSON,
            br#"{"statusCode":404,"message":"not found"}"#.to_vec(),
        ),
    }
}

async fn serve(app: Router) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a fake server")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn per_second(rate: f64) -> String {
    format!("{}/s", thousands(rate.round() as u64))
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencher_lines_become_elements_per_second() {
        let output = "\
Gnuplot not found, using plotters backend
test transform/identify/1000 ... bench:     2,500,000 ns/iter (+/- 12,345)
test transform/parse_and_identify/1000 ... bench:     8000000 ns/iter (+/- 1)
test unrelated ... bench: garbage
";
        let rates = parse_bencher(output);
        assert_eq!(rates.len(), 2);
        assert!((rates["identify"] - 400_000.0).abs() < 1e-6);
        assert!((rates["parse_and_identify"] - 125_000.0).abs() < 1e-6);
    }

    #[test]
    fn the_table_aligns_and_says_what_was_met() {
        let mut table = Table::default();
        table.check("a", "300,000/s".into(), ">= 250,000/s", true);
        table.check("bb", "1/s".into(), ">= 2/s", false);
        table.not_available("ccc", "<= 64 MiB", "release build failed");
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{text}");
        assert!(lines[2].ends_with("| yes  |"), "{text}");
        assert!(lines[3].ends_with("| NO   |"), "{text}");
        assert!(lines[4].contains("n/a (release build failed)"), "{text}");
    }

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let load = Load {
            completed: 100,
            failed: 0,
            elapsed: Duration::from_secs(1),
            latencies: (1..=100).map(Duration::from_millis).collect(),
            peak_rss_kib: None,
        };
        assert_eq!(load.percentile(0.5), Duration::from_millis(50));
        assert_eq!(load.percentile(0.99), Duration::from_millis(99));
        assert_eq!(load.percentile(1.0), Duration::from_millis(100));
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn own_peak_rss_is_readable() {
        let kib = vm_hwm_kib(std::process::id()).expect("Linux exposes VmHWM");
        assert!(kib > 0);
    }

    #[tokio::test]
    async fn the_fake_segment_counts_identify_messages_plain_and_gzipped() {
        let segment = FakeSegment::start().await.unwrap();
        let client = reqwest::Client::new();
        let batch =
            r#"{"batch":[{"type":"identify","userId":"a"},{"type":"identify","userId":"b"}]}"#;
        let plain = client
            .post(format!("http://{}/v1/batch", segment.addr))
            .body(batch)
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), 200);
        assert_eq!(plain.text().await.unwrap(), r#"{"success":true}"#);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, batch.as_bytes()).unwrap();
        let gzipped = client
            .post(format!("http://{}/v1/batch", segment.addr))
            .header(header::CONTENT_ENCODING, "gzip")
            .body(encoder.finish().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(gzipped.status(), 200);
        assert_eq!(segment.messages.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn the_fake_commercetools_walks_every_customer_by_id_cursor() {
        let api = FakeCommercetools::start(1_234).await.unwrap();
        let client = reqwest::Client::new();
        let token: serde_json::Value = client
            .post(format!("http://{}/oauth/token", api.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(token["token_type"], "Bearer");
        let mut seen = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_owned()), ("sort", "id asc".to_owned())];
            if let Some(last) = &last {
                query.push(("where", format!("id > \"{last}\"")));
            }
            let page: serde_json::Value = client
                .get(format!("http://{}/{PROJECT_KEY}/customers", api.addr))
                .query(&query)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let results = page["results"].as_array().unwrap();
            seen.extend(results.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
            last = seen.last().cloned();
            if results.len() < 500 {
                break;
            }
        }
        assert_eq!(seen.len(), 1_234);
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]));
        let one = client
            .get(format!(
                "http://{}/{PROJECT_KEY}/customers/{}",
                api.addr, seen[7]
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(one.status(), 200);
        let gone = client
            .get(format!("http://{}/{PROJECT_KEY}/customers/nope", api.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 404);
    }

    #[test]
    fn customer_created_messages_carry_the_customer() {
        let body: serde_json::Value = serde_json::from_slice(&customer_created(3)).unwrap();
        assert_eq!(body["type"], "CustomerCreated");
        assert_eq!(body["notificationType"], "Message");
        assert_eq!(body["customer"]["id"], body["resource"]["id"]);
    }
}
