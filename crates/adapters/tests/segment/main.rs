//! The Segment HTTP adapter against local servers: the testkit's fake Segment for
//! answers, faults, dropped connections and slowness, and wiremock where a test
//! pins down exact request matchers.

mod helpers;

mod delivery;
mod load;
mod refusals;
mod retries;
