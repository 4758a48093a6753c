//! Tuning of the mimalloc allocator the `riskgate` binary runs on.

/// `mi_option_purge_delay` in `mimalloc.h` (the same index in libmimalloc-sys's v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse instead of returning it to the OS after a second.
///
/// A replay allocates and frees at a steady rate for minutes. Memory given back and touched
/// again is cleared by the kernel, 2 MiB at a time with transparent huge pages, which cost up
/// to 15% of a run; its memory is bounded by the engine's state anyway. `MIMALLOC_PURGE_DELAY`
/// set in the environment still wins. No effect when mimalloc is not the global allocator.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide integer option; mimalloc allows this at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads a process-wide integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 1000, "not mimalloc's purge delay (default 1000 ms)");
            keep_freed_memory();
            assert_eq!(get(), -1);
        }
    }
}
