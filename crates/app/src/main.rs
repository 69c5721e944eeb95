//! `segment-sync`: keeps Segment user profiles in step with commercetools customers.

// Parsing and building a customer's message allocates many small strings;
// mimalloc makes sync --input about half again as fast as the system allocator
// (docs/performance.md); built without transparent huge pages to keep RSS down.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(segment_sync::run());
}
