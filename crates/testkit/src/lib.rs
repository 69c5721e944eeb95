//! Test support for segment-sync, shared by every crate's tests and by
//! `cargo xtask bench`. Never a dependency of the product itself.
//!
//! - [`contract`]: one suite per port; every implementation runs its port's suite.
//! - [`memory`]: in-memory implementations of the ports, which pass those suites.
//! - [`fake_segment`], [`fake_commercetools`], [`fake_public_api`]: HTTP stand-ins
//!   on local ports (port 0) for the Tracking API, commercetools and Segment's
//!   Public API (regulations).
//! - [`generate`]: realistic commercetools customers, deterministic and streamed.
//! - [`customers`]: one customer shape for tests, as JSON and as the domain type.
//! - [`child_log`]: the JSON log of a `segment-sync` child, for the address it bound.
//! - [`postgres`]: a fresh database per test on the test PostgreSQL server.
//! - [`sender_auth`]: tokens signed like Google, SNS messages signed like AWS, and
//!   the local hosts of their keys.

pub mod child_log;
pub mod contract;
pub mod customers;
pub mod fake_commercetools;
pub mod fake_public_api;
pub mod fake_segment;
pub mod generate;
mod http;
pub mod memory;
pub mod postgres;
pub mod sender_auth;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The longest a test support waits for something it expects (an outcome, a
/// message, a write) before it fails the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Locks a fake's state. A test that panicked while holding the lock must not
/// hide its own failure behind a poisoned mutex in the next assertion.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
