//! `cargo xtask bench`: the figures of issue 8 in one table.
//!
//! Each step that cannot run (the binary does not build, a command is missing)
//! becomes `n/a (reason)` in its row and the others still run, so a partial
//! picture is always printed. Everything talks to the testkit's fakes on
//! 127.0.0.1: a Segment that only counts identify calls, and a commercetools API
//! that generates each page of customers when it is asked for.
//!
//! - [`criterion`]: the domain's criterion benchmark.
//! - [`sync_runs`]: `sync` from files and from the API.
//! - [`webhook`]: `serve` under concurrent load.
//! - [`process`]: the children's environment, wall time and peak memory.
//! - [`table`]: the table and how figures are written.

mod criterion;
mod process;
mod sync_runs;
mod table;
mod webhook;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use segment_sync_testkit::fake_commercetools::FakeCommercetools;
use segment_sync_testkit::fake_segment::FakeSegment;
use segment_sync_testkit::generate::DEFAULT_SEED;

use self::process::{BenchState, ChildEnv};
use self::table::Table;

/// Customers in the smaller file run and in the API backfill.
const SMALL_RUN: u64 = 200_000;
/// Customers in the larger file run: peak memory must not grow with the count.
const LARGE_RUN: u64 = 1_000_000;

/// Which rows a run measures: all of them, or those `--only` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    Criterion,
    File,
    Api,
    Webhook,
}

impl Only {
    fn parse(args: &[String]) -> Result<Self> {
        match args {
            [] => Ok(Self::All),
            [flag, what] if flag == "--only" => match what.as_str() {
                "criterion" => Ok(Self::Criterion),
                "file" => Ok(Self::File),
                "api" => Ok(Self::Api),
                "webhook" => Ok(Self::Webhook),
                other => bail!("--only takes criterion, file, api or webhook, not {other}"),
            },
            _ => bail!("usage: cargo xtask bench [--only criterion|file|api|webhook]"),
        }
    }

    fn runs(self, row: Self) -> bool {
        self == Self::All || self == row
    }
}

/// Runs every benchmark (or those `--only` names) and prints the table on stdout.
pub fn command(args: &[String]) -> Result<()> {
    let only = Only::parse(args)?;
    let started = Instant::now();
    let mut table = Table::default();

    if only.runs(Only::Criterion) {
        criterion::run(&mut table);
    }
    if only == Only::Criterion {
        print!("{}", table.render());
        return Ok(());
    }

    let binary = build_release();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(end_to_end(binary, only, &mut table))?;

    println!();
    println!(
        "segment-sync benchmarks ({} cores available, {:.0} s in all)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    print!("{}", table.render());
    Ok(())
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
async fn end_to_end(binary: Result<PathBuf, String>, only: Only, table: &mut Table) -> Result<()> {
    let binary = binary.as_deref().map_err(String::as_str);
    let data = crate::workspace_root().join("target").join("bench-data");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;

    let segment = FakeSegment::builder().counts_only().start().await;
    let commercetools = FakeCommercetools::generated(SMALL_RUN, DEFAULT_SEED).await;
    let scratch = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&data)
        .context("cannot make a scratch folder")?;
    let env = ChildEnv::new(scratch.path().to_owned(), &segment, &commercetools);

    if only.runs(Only::File) {
        let small_file = sync_runs::customers_file(&data, SMALL_RUN)?;
        let large_file = sync_runs::customers_file(&data, LARGE_RUN)?;
        for run in [
            (SMALL_RUN, small_file.as_path(), "small"),
            (LARGE_RUN, large_file.as_path(), "large"),
        ] {
            let state = Ok(&BenchState::Sqlite);
            sync_runs::from_file(binary, &env, &segment, run, state, table).await;
        }
        // The same small run on a PostgreSQL state, beside the SQLite figures.
        let postgres = BenchState::postgres().await;
        let run = (SMALL_RUN, small_file.as_path(), "small-postgres");
        let state = postgres.as_ref().map_err(String::as_str);
        sync_runs::from_file(binary, &env, &segment, run, state, table).await;
    }
    if only.runs(Only::Api) {
        sync_runs::fake_page_building(&commercetools, SMALL_RUN, table).await;
        sync_runs::from_api(binary, &env, (&commercetools, &segment), SMALL_RUN, table).await;
    }
    if only.runs(Only::Webhook) {
        webhook::run(binary, &env, Ok(&BenchState::Sqlite), table).await;
        let postgres = BenchState::postgres().await;
        let state = postgres.as_ref().map_err(String::as_str);
        webhook::run(binary, &env, state, table).await;
    }
    drop(scratch);
    Ok(())
}
