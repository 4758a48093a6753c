//! The embedded store's background threads (the applier, the log's syncer, fjall's flushes
//! and compactions) run at a lower scheduling priority than the threads answering requests.
//!
//! They still get every idle cycle, so they keep up; but when a request wakes up while a
//! compaction runs, the scheduler hands the core to the request first. On a 2-core machine
//! a compaction holding one core for tens of milliseconds otherwise sets the answers' p99.

/// How many steps of nice below the threads answering requests: at 5, a busy background
/// thread gets a third of a request thread's share of a core, so it is never starved and
/// the applier does not fall so far behind that answers wait for it.
const LOWER_BY: i32 = 5;

/// Lowers the calling thread's priority; threads it starts from now on inherit it.
pub(crate) fn lower_current_thread() {
    // SAFETY: `nice` takes and returns integers only; on Linux it changes the calling
    // thread's nice value alone. Lowering a priority cannot fail (it clamps at 19), so its
    // result is not needed.
    unsafe { libc::nice(LOWER_BY) };
}

/// Runs `f` on a new thread at background priority and returns what it returns: threads
/// that `f` starts (fjall's workers, started when the database opens) inherit the priority.
pub(crate) fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            lower_current_thread();
            f()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value, from `/proc` (the `thread-priority` crate reports
    /// the static priority, always 0 for normal threads).
    fn nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("a Linux /proc");
        let after_name = stat.rsplit_once(") ").expect("a stat line").1;
        let nice = after_name.split(' ').nth(16).expect("the nice field");
        nice.parse().expect("a number")
    }

    #[test]
    fn threads_started_at_background_priority_inherit_it() {
        let normal = nice();
        let (own, inherited) = run(|| {
            let inherited = std::thread::spawn(nice).join().expect("no panic");
            (nice(), inherited)
        });
        assert_eq!(own, (normal + i64::from(LOWER_BY)).min(19), "nice {own}");
        assert_eq!(inherited, own);
        assert_eq!(nice(), normal, "the caller is unchanged");
    }
}
