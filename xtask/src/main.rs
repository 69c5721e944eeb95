//! Project chores: `cargo xtask ci`, `cargo xtask bench`, `cargo xtask generate`.
//!
//! Each command prints what it runs before running it and stops at the first failure.

use std::env;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use segment_sync_testkit::postgres::{server_url, DATABASE_URL_VARIABLE};

mod bench;
mod generate;
#[cfg(test)]
mod tidy;

const USAGE: &str = "usage: cargo xtask <ci|bench|generate>
  ci        fmt --check, clippy -D warnings, the tests, rustdoc with warnings denied
  bench     [--only criterion|file|api|webhook]: the criterion bench, a release build, then
            throughput and memory against local fakes
  generate  --count N --out PATH [--seed S]: realistic commercetools customers as NDJSON";

fn main() -> std::process::ExitCode {
    match run_task() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_task() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench::command(rest),
        Some("generate") => generate::command(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// The root of the workspace: the parent of this crate's folder.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(workspace_root());
    command
}

fn run(mut command: Command) -> Result<()> {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed with {status}");
    }
    Ok(())
}

/// Whether the test PostgreSQL server (`SEGMENT_SYNC_TEST_DATABASE_URL`, or the
/// testkit's default) accepts connections. When it does not, says so in one
/// line, or fails if [`REQUIRE_POSTGRES`] is `1`.
fn postgres_answers() -> Result<bool> {
    let address = server_address(&server_url());
    let answers = address
        .to_socket_addrs()
        .into_iter()
        .flatten()
        .any(|socket| TcpStream::connect_timeout(&socket, POSTGRES_PROBE).is_ok());
    if answers {
        return Ok(true);
    }
    if env::var(REQUIRE_POSTGRES).is_ok_and(|value| value.trim() == "1") {
        bail!(
            "no PostgreSQL answers at {address} ({DATABASE_URL_VARIABLE}), and \
             {REQUIRE_POSTGRES}=1 requires the tests that need it"
        );
    }
    eprintln!(
        "ci: no PostgreSQL answers at {address}, so the tests that need it (every name \
         containing `postgres`) are left out; start one or set {DATABASE_URL_VARIABLE}"
    );
    Ok(false)
}

/// `host:port` of the first host of a PostgreSQL URL, as `ci` probes it.
fn server_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let location = rest.rsplit_once('@').map_or(rest, |(_, location)| location);
    let hosts = location.split(['/', '?']).next().unwrap_or_default();
    let first = hosts.split(',').next().unwrap_or_default();
    let has_port = match first.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => first.contains(':'),
    };
    match (first.is_empty(), has_port) {
        (true, _) => "localhost:5432".to_owned(),
        (false, true) => first.to_owned(),
        (false, false) => format!("{first}:5432"),
    }
}

/// The test command's arguments: nextest's or cargo test's, leaving out the
/// tests that need PostgreSQL when none answers.
fn test_arguments(nextest: bool, postgres: bool) -> Vec<&'static str> {
    let mut arguments = if nextest {
        vec![
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ]
    } else {
        vec!["test", "--workspace", "--all-features"]
    };
    if !postgres {
        arguments.extend(if nextest {
            ["-E", "not test(/postgres/)"].as_slice()
        } else {
            ["--", "--skip", "postgres"].as_slice()
        });
    }
    arguments
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Set to `1` (as `.ci/run` does), a missing PostgreSQL fails `ci` instead of
/// leaving out the tests that need it.
const REQUIRE_POSTGRES: &str = "SEGMENT_SYNC_REQUIRE_POSTGRES";

/// How long `ci` waits for the test PostgreSQL server to accept a connection.
const POSTGRES_PROBE: Duration = Duration::from_secs(2);

fn ci() -> Result<()> {
    // Before anything long: a required server that is missing fails at once.
    let postgres = postgres_answers()?;

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;

    let mut test = cargo();
    test.args(test_arguments(has_nextest(), postgres));
    run(test)?;

    // nextest does not run doc tests.
    let mut doctest = cargo();
    doctest.args(["test", "--workspace", "--all-features", "--doc"]);
    run(doctest)?;

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;

    eprintln!("ci: all green");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probed_address_is_the_urls_first_host_and_port() {
        assert_eq!(
            server_address("postgres://postgres@127.0.0.1:5432/postgres"),
            "127.0.0.1:5432"
        );
        assert_eq!(
            server_address("postgresql://u:p@ss@db.internal/state?sslmode=require"),
            "db.internal:5432"
        );
        assert_eq!(server_address("postgres://a:6000,b:6001/x"), "a:6000");
        assert_eq!(server_address("postgres://[::1]/x"), "[::1]:5432");
        assert_eq!(server_address("postgres://[::1]:6543/x"), "[::1]:6543");
        assert_eq!(server_address("postgres:///x"), "localhost:5432");
    }

    #[test]
    fn without_a_server_its_tests_are_left_out_by_name() {
        assert_eq!(
            test_arguments(true, true),
            [
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--no-fail-fast"
            ]
        );
        assert_eq!(
            test_arguments(true, false)[5..],
            ["-E", "not test(/postgres/)"]
        );
        assert_eq!(
            test_arguments(false, false),
            [
                "test",
                "--workspace",
                "--all-features",
                "--",
                "--skip",
                "postgres"
            ]
        );
        assert_eq!(test_arguments(false, true).len(), 3);
    }
}
