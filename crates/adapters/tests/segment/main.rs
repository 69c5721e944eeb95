//! The Segment HTTP adapter against local servers: wiremock for scripted answers,
//! a hand-rolled TCP server for dropped connections, faults and slowness.

mod helpers;

mod delivery;
mod load;
mod refusals;
mod retries;
