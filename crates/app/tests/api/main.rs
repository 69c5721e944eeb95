//! The application's integration tests, in one binary.

mod check;
mod helpers;
mod readme;
mod rule;
mod serve;
mod serve_process;
mod serve_support;
mod sync;
