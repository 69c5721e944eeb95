//! The application's integration tests, in one binary.

mod backfill;
mod check;
mod first_use;
mod helpers;
mod mapping;
mod privacy;
mod readme;
mod replicas;
mod rule;
mod serve;
mod serve_process;
mod serve_senders;
mod serve_support;
mod state;
mod sync;
