//! The JSON log of a `segment-sync` child process (`LOG_FORMAT=json`), read from
//! its stderr as it runs: above all the address `serve --listen 127.0.0.1:0`
//! bound, which it logs as `webhook listening` with an `addr` field. Binding port
//! 0 and reading the address back leaves no window in which another process
//! could take the port, as a bind-then-drop "free port" does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::lock;

/// The message `serve` logs once it listens.
pub const LISTENING: &str = "webhook listening";

/// How many of the last lines are kept to explain a failure.
const KEPT_LINES: usize = 20;

/// Why no listening address was read.
#[derive(Debug, thiserror::Error)]
pub enum ListeningError {
    /// The log ended (the process exited) first.
    #[error("the process ended without logging `{LISTENING}`; its last lines:\n{0}")]
    Ended(String),
    /// The deadline passed first.
    #[error("no `{LISTENING}` within {0:?}; the last lines:\n{1}")]
    TimedOut(Duration, String),
}

/// A child's stderr, followed on its own thread until it ends.
pub struct ChildLog {
    addr: Option<oneshot::Receiver<SocketAddr>>,
    last_lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl ChildLog {
    /// Follows `stderr` (a child's, piped) line by line, copying every line to
    /// `copy` when given, so that the child never blocks on a full pipe.
    pub fn follow(
        stderr: impl Read + Send + 'static,
        mut copy: Option<Box<dyn Write + Send>>,
    ) -> Self {
        let (found, addr) = oneshot::channel();
        let last_lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&last_lines);
        let reader = std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(copy) = copy.as_mut() {
                    let _ = writeln!(copy, "{line}");
                }
                if found.is_some() {
                    if let Some(addr) = listening_addr(&line) {
                        if let Some(found) = found.take() {
                            let _ = found.send(addr);
                        }
                    }
                }
                let mut kept = lock(&kept);
                if kept.len() == KEPT_LINES {
                    kept.remove(0);
                }
                kept.push(line);
            }
            if let Some(copy) = copy.as_mut() {
                let _ = copy.flush();
            }
        });
        Self {
            addr: Some(addr),
            last_lines,
            reader,
        }
    }

    /// Blocks until the log ends (the child closed its stderr, usually by
    /// exiting) and every line has been copied.
    pub fn wait_for_end(self) {
        let _ = self.reader.join();
    }

    /// The address the child logged as [`LISTENING`], waiting up to `timeout`.
    /// Later calls return the same error the first one did.
    pub async fn listening_addr(
        &mut self,
        timeout: Duration,
    ) -> Result<SocketAddr, ListeningError> {
        let Some(addr) = self.addr.as_mut() else {
            return Err(ListeningError::Ended(self.last_lines()));
        };
        let result = match tokio::time::timeout(timeout, addr).await {
            Ok(Ok(addr)) => return Ok(addr),
            Ok(Err(_)) => Err(ListeningError::Ended(self.last_lines())),
            Err(_) => Err(ListeningError::TimedOut(timeout, self.last_lines())),
        };
        self.addr = None;
        result
    }

    /// The last lines read so far, joined.
    pub fn last_lines(&self) -> String {
        lock(&self.last_lines).join("\n")
    }
}

/// The `addr` of a JSON log line whose message is [`LISTENING`].
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let event: Value = serde_json::from_str(line).ok()?;
    // A flattened event has its fields at the top; a nested one under `fields`.
    let fields = if event.get("message").is_some() {
        &event
    } else {
        event.get("fields")?
    };
    if fields["message"] != LISTENING {
        return None;
    }
    fields["addr"].as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_address_comes_from_the_listening_line_and_every_line_is_copied() {
        let log = concat!(
            "not json\n",
            r#"{"level":"INFO","message":"starting","addr":"127.0.0.1:1"}"#,
            "\n",
            r#"{"level":"INFO","message":"webhook listening","addr":"127.0.0.1:4321"}"#,
            "\n",
            r#"{"level":"INFO","fields":{"message":"webhook listening","addr":"127.0.0.1:9"}}"#,
            "\n",
        );
        let copy = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut child = ChildLog::follow(
            std::io::Cursor::new(log.as_bytes().to_vec()),
            Some(Box::new(Shared(Arc::clone(&copy)))),
        );
        let addr = child.listening_addr(Duration::from_secs(5)).await.unwrap();
        assert_eq!(addr, "127.0.0.1:4321".parse().unwrap());
        child.wait_for_end();
        assert_eq!(
            String::from_utf8(copy.lock().unwrap().clone()).unwrap(),
            log
        );
        assert_eq!(
            listening_addr(r#"{"fields":{"message":"webhook listening","addr":"127.0.0.1:9"}}"#),
            Some("127.0.0.1:9".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn a_log_that_ends_without_it_says_so_with_its_last_lines() {
        let mut child = ChildLog::follow(std::io::Cursor::new(b"boom: no token\n".to_vec()), None);
        let error = child
            .listening_addr(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ListeningError::Ended(lines) if lines.contains("boom")),
            "{error}"
        );
        assert!(child.listening_addr(Duration::from_secs(5)).await.is_err());
    }
}
