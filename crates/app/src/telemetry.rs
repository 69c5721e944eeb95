//! Logging: `RUST_LOG` filters, `LOG_FORMAT` picks `json` or `pretty`; logs go to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber once; later calls do nothing. Without
/// `RUST_LOG`, `default_filter` applies (a command whose output is a report, such
/// as `check`, keeps its stderr for errors).
pub fn init(settings: &LogSettings, default_filter: &str) {
    // The settings checked the filter; a default keeps logging on regardless.
    let filter = settings
        .filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let json = match settings.format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Pretty) => false,
        None => !stderr_is_terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) finds a subscriber already set; that is fine.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        // Colour codes only where a terminal shows them.
        builder.with_ansi(stderr_is_terminal).try_init()
    };
}
