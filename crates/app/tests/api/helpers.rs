//! The runner for the real binary, wired to the testkit's fakes on local ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use segment_sync_testkit::child_log::ChildLog;
pub use segment_sync_testkit::customers::{
    customer_created, ndjson, numbered_id, numbered_json, numbered_jsons, timestamp_now,
    without_email,
};
pub use segment_sync_testkit::fake_commercetools::{
    AuthMode, FakeCommercetools, CLIENT_ID, CLIENT_SECRET, PROJECT,
};
pub use segment_sync_testkit::fake_segment::{FakeSegment, SegmentMode, WRITE_KEY};
use serde_json::Value;

/// The real binary, in its own working directory, with a clean environment.
pub struct App {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl App {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Segment and commercetools fakes wired in, with the write key set.
    pub fn with_fakes(self, segment: &FakeSegment, ctp: Option<&FakeCommercetools>) -> Self {
        let app = self
            .env("SEGMENT_WRITE_KEY", WRITE_KEY)
            .env("SEGMENT_ENDPOINT", segment.url());
        match ctp {
            Some(ctp) => app
                .env("CTP_PROJECT_KEY", ctp.project())
                .env("CTP_CLIENT_ID", CLIENT_ID)
                .env("CTP_CLIENT_SECRET", CLIENT_SECRET)
                .env("CTP_AUTH_URL", ctp.url())
                .env("CTP_API_URL", ctp.url()),
            None => app,
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("segment-sync.db")
    }

    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_segment-sync"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                if std::env::var_os("TEST_LOG").is_some() {
                    "debug"
                } else {
                    "warn"
                },
            )
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// `segment-sync serve --listen 127.0.0.1:0 <extra>…` running, logging at
    /// info, with the address it bound read back from its log.
    pub async fn serve(&self, extra: &[&str]) -> Served {
        self.serve_with(extra, &[]).await
    }

    /// As [`App::serve`], with `env` set for this process only.
    pub async fn serve_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Served {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut command = self.command(&args);
        command
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut log = ChildLog::follow(child.stderr.take().unwrap(), None);
        let addr = log
            .listening_addr(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Served {
            child,
            log,
            base: format!("http://{addr}"),
        }
    }

    /// Runs the binary to completion off the async executor.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

/// A `serve` started by [`App::serve`].
pub struct Served {
    pub child: Child,
    pub log: ChildLog,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Served {
    /// The webhook's URL.
    pub fn webhook(&self) -> String {
        format!("{}/webhooks/commercetools", self.base)
    }

    /// Sends SIGTERM, as an orchestrator stops it.
    pub fn terminate(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// Waits for it to exit; panics with its last log lines unless it exits 0.
    pub async fn exits_cleanly(self) {
        let Self { mut child, log, .. } = self;
        let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert_eq!(exit.code(), Some(0), "{}", log.last_lines());
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `--json` summary: the last stdout line.
pub fn summary(output: &Output) -> Value {
    let text = stdout(output);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(output)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {line}"))
}

pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
