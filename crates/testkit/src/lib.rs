//! Test support for segment-sync, shared by every crate's tests and by
//! `cargo xtask bench`. Never a dependency of the product itself.
//!
//! - `contract`: one suite per port; every implementation runs its port's suite.
//! - `memory`: in-memory implementations of the ports, which pass those suites.
//! - `fake_segment`, `fake_commercetools`: HTTP stand-ins on local ports (port 0).
//! - `generate`: realistic commercetools customers, deterministic and streamed.

use std::time::Duration;

pub mod contract;
pub mod memory;

/// The longest a test support waits for something it expects (an outcome, a
/// message, a write) before it fails the test.
pub const DEADLINE: Duration = Duration::from_secs(10);
