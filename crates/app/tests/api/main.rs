//! The application's integration tests, in one binary.

mod helpers;
mod serve;
mod serve_support;
mod sync;
