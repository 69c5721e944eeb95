//! The `segment-sync` application: configuration, the commands, the webhook
//! server, and the wiring of adapters to ports. `main.rs` only calls [`run`].

pub mod serve;

/// Parses the command line, runs the command and returns the process exit code.
pub fn run() -> i32 {
    0
}
