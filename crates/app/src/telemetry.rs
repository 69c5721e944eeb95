//! Logging: `RUST_LOG` filters, `LOG_FORMAT` picks `json` or `pretty`; logs go to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber once; later calls do nothing.
pub fn init(settings: &LogSettings) {
    // The settings checked the filter; a default keeps logging on regardless.
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
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
