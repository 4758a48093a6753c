//! The embedded store's background threads (the applier, the log's syncer, fjall's flushes
//! and compactions) run at a lower scheduling priority than the threads answering requests.
//!
//! They still get every idle cycle, so they keep up; but when a request wakes up while a
//! compaction runs, the scheduler hands the core to the request first. On a 2-core machine
//! a compaction holding one core for tens of milliseconds otherwise sets the answers' p99.

use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};

/// The priority on thread-priority's 0..=99 scale (normal is 50): nice 5 on Linux, a third
/// of a request thread's share of a busy core, so a background thread is never starved and
/// the applier does not fall so far behind that answers wait for it.
const BACKGROUND: u8 = 35;

/// Lowers the calling thread's priority; threads it starts from now on inherit it.
pub(crate) fn lower_current_thread() {
    let lowered = ThreadPriorityValue::try_from(BACKGROUND)
        .map_err(|e| e.to_string())
        .and_then(|value| {
            set_current_thread_priority(ThreadPriority::Crossplatform(value))
                .map_err(|e| e.to_string())
        });
    // Not fatal: the store works the same, answers only compete with it for the CPU.
    if let Err(error) = lowered {
        tracing::warn!(%error, "cannot lower the priority of a background thread");
    }
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
        assert!(own > normal, "the priority was not lowered: nice {own}");
        assert_eq!(inherited, own);
        assert_eq!(nice(), normal, "the caller is unchanged");
    }
}
