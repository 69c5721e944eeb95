//! `segment-sync`: keeps Segment user profiles in step with commercetools customers.

// Parsing and building a customer's message allocates many small strings;
// mimalloc makes sync --input about half again as fast as the system allocator
// (docs/performance.md); built without transparent huge pages to keep RSS down.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` in its version 2 (`mimalloc.h`, `mi_option_e`);
/// the libmimalloc-sys bindings name only its stable options.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable by which mimalloc lets an operator set the delay.
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

fn main() {
    return_freed_memory_at_once();
    std::process::exit(segment_sync::run());
}

/// mimalloc keeps freed memory for 10 ms before it returns it to the system. A
/// walk of 16 id ranges frees and takes page-sized buffers faster than that,
/// from several threads, and its peak RSS stood 35 MiB above the memory it
/// used; returned at once, the run stays well under 64 MiB at the same rate
/// (docs/performance.md). A delay set in the environment is left as it is.
#[allow(unsafe_code)]
fn return_freed_memory_at_once() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
        return;
    }
    // SAFETY: mi_option_set stores a number in mimalloc's option table; it takes
    // no pointer. It is not synchronised, so it runs here, before any other
    // thread of this program exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc's own, not one the bindings check: read
    /// back, it must be the purge delay's documented default of 10 ms, or an
    /// upgrade of mimalloc moved it and `main` would set another option.
    #[test]
    #[allow(unsafe_code)]
    fn the_option_set_is_mimallocs_purge_delay() {
        if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
            return;
        }
        // SAFETY: mi_option_get reads a number from mimalloc's option table.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 10);
    }
}
