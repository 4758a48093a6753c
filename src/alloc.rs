//! Tuning of the mimalloc allocator the `riskgate` binary runs on.

/// `mi_option_purge_delay` in `mimalloc.h` (the same index in libmimalloc-sys's v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse instead of returning it to the OS after a short delay.
///
/// A replay allocates and frees at a steady rate for minutes. Memory given back and touched
/// again is cleared by the kernel, 2 MiB at a time with transparent huge pages, which cost up
/// to 15% of a run; its memory is bounded by the engine's state anyway. The option set in
/// the environment (`MIMALLOC_PURGE_DELAY`, or its old name `MIMALLOC_RESET_DELAY`) still
/// wins. No effect when mimalloc is not the global allocator.
pub fn keep_freed_memory() {
    if !set_in_environment() {
        // SAFETY: sets a process-wide integer option; mimalloc allows this at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

fn set_in_environment() -> bool {
    ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads a process-wide integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if !set_in_environment() {
            // Purging is on by default (a delay in ms); -1 turns it off.
            assert!(get() > 0, "not mimalloc's purge delay: {}", get());
            keep_freed_memory();
            assert_eq!(get(), -1);
        }
    }
}
