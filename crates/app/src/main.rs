//! `segment-sync`: keeps Segment user profiles in step with commercetools customers.

fn main() {
    std::process::exit(segment_sync::run());
}
