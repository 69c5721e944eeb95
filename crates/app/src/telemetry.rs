//! Logging: `RUST_LOG` filters, `LOG_FORMAT` picks `json` or `pretty`; logs go to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::Vars;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(vars: &Vars) {
    let filter = EnvFilter::try_new(vars.get("RUST_LOG").unwrap_or("info"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match vars.get("LOG_FORMAT") {
        Some("json") => true,
        Some("pretty") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) finds a subscriber already set; that is fine.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
