//! Each adapter against its port's contract suite from the testkit, exactly as
//! the in-memory ports are: one module per adapter (and per way of building it).
//! `cargo test -p segment-sync-adapters --test contracts` runs them all.

mod commercetools;
mod file_source;
mod postgres_state;
mod public_api;
mod segment;
mod sqlite_state;
