//! The application's integration tests, in one binary.

mod serve;
mod serve_support;
