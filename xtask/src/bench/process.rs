//! The `segment-sync` children the bench runs: their environment, their output
//! files, and how long and how large they ran.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use segment_sync_testkit::fake_commercetools::{self, FakeCommercetools};
use segment_sync_testkit::fake_segment::{self, FakeSegment};

/// The token `serve` requires of the webhook load's clients.
pub const WEBHOOK_TOKEN: &str = "bench-webhook-token";

/// What the children need to reach the fakes, and where they keep their files.
pub struct ChildEnv {
    pub dir: PathBuf,
    segment_url: String,
    commercetools_url: String,
}

impl ChildEnv {
    pub fn new(dir: PathBuf, segment: &FakeSegment, commercetools: &FakeCommercetools) -> Self {
        Self {
            dir,
            segment_url: segment.url().to_owned(),
            commercetools_url: commercetools.url().to_owned(),
        }
    }

    /// The binary with an environment that reaches only the fakes; its stdout
    /// and stderr go to `<name>.stdout` and `<name>.stderr` in [`ChildEnv::dir`].
    pub fn command(&self, binary: &Path, name: &str) -> Command {
        let mut command = Command::new(binary);
        command
            // No `.env` of the developer's is picked up from here.
            .current_dir(&self.dir)
            .env("SEGMENT_WRITE_KEY", fake_segment::WRITE_KEY)
            .env("SEGMENT_ENDPOINT", &self.segment_url)
            .env("CTP_PROJECT_KEY", fake_commercetools::PROJECT)
            .env("CTP_CLIENT_ID", fake_commercetools::CLIENT_ID)
            .env("CTP_CLIENT_SECRET", fake_commercetools::CLIENT_SECRET)
            .env("CTP_AUTH_URL", &self.commercetools_url)
            .env("CTP_API_URL", &self.commercetools_url)
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
            fs::File::create(self.output_path(name, "stdout")),
            fs::File::create(self.output_path(name, "stderr")),
        ) {
            command.stdout(stdout).stderr(stderr);
        }
        command
    }

    pub fn output_path(&self, name: &str, stream: &str) -> PathBuf {
        self.dir.join(format!("{name}.{stream}"))
    }

    pub fn output(&self, name: &str, stream: &str) -> String {
        fs::read_to_string(self.output_path(name, stream)).unwrap_or_default()
    }

    /// The last line of a child's stderr, to say why it failed.
    pub fn last_error_line(&self, name: &str) -> String {
        let stderr = self.output(name, "stderr");
        let line = stderr.lines().last().unwrap_or("no output").trim();
        line.chars().take(160).collect()
    }
}

/// Where a child keeps its state: a SQLite file in [`ChildEnv::dir`], or a fresh
/// database on the test PostgreSQL server (dropped with the value).
pub enum BenchState {
    Sqlite,
    Postgres(segment_sync_testkit::postgres::TestDatabase),
}

impl BenchState {
    /// A fresh PostgreSQL database, or why there is none.
    pub async fn postgres() -> Result<Self, String> {
        segment_sync_testkit::postgres::TestDatabase::try_create()
            .await
            .map(Self::Postgres)
    }

    /// The `--state` of a child called `name`.
    pub fn argument(&self, env: &ChildEnv, name: &str) -> std::ffi::OsString {
        match self {
            Self::Sqlite => env.dir.join(format!("{name}.db")).into_os_string(),
            Self::Postgres(database) => database.url().into(),
        }
    }

    /// What a row's label says of it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres(_) => ", PostgreSQL state",
        }
    }
}

/// How a child that ran to its end went.
pub struct Measured {
    pub wall: Duration,
    pub peak_rss_kib: Option<u64>,
    pub status: ExitStatus,
}

/// Runs a child to its end, or kills it at the timeout, sampling its peak RSS.
///
/// The peak is the kernel's own high-water mark (`VmHWM`), read every 10 ms; it
/// only misses growth in the last 10 ms of the run, which is spent exiting.
pub fn measure(mut command: Command, timeout: Duration) -> Result<Measured> {
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
        // Sampling, not waiting for work: the child's end is polled with try_wait.
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Measured {
        wall: started.elapsed(),
        peak_rss_kib: peak,
        status,
    })
}

/// The peak resident set of a running process, in KiB (Linux only).
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Kills a child however the measurement ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_peak_rss_is_readable() {
        let kib = vm_hwm_kib(std::process::id()).expect("Linux exposes VmHWM");
        assert!(kib > 0);
    }
}
