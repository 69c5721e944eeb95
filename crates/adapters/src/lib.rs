//! The adapters of segment-sync: the ports implemented over real I/O.
//!
//! Each adapter owns its client library (reqwest, rusqlite, tokio's file I/O) and
//! translates that library's errors into its port's error at its edge.

pub mod segment;
