//! The statistical score (`ctx.rba`): its cost per evaluation, and the memory of what it
//! learns (a user's profile, the global frequencies).
//!
//! Run: `cargo bench --bench rba`. Memory is measured, not estimated: this binary counts the
//! bytes its allocator holds, and prints the bytes held per profile over 10,000 profiles
//! (each built by learning 40 logins; with each user's own user agent strings, then with
//! the shared ones browsers send), on average over the users of a generated population
//! (`riskgate gen`, whose users mostly log in monthly or less) and by the global statistics
//! after a million logins.
//! `baseline/woothee_uncached` measures a fixed piece of work in the same run, to compare
//! runs on this shared, noisy machine.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use riskgate::bench_hooks::{
    RbaCase, population_profiles, typical_profile, typical_profile_shared_agents,
};
use riskgate::corpus::CorpusSpec;

/// The `riskgate` binary's allocator, counting the bytes it holds.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to mimalloc unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is mimalloc's.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is mimalloc's.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes held while `make`'s result lives.
fn held_by<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = HELD.load(Ordering::Relaxed);
    let made = make();
    (made, HELD.load(Ordering::Relaxed) - before)
}

fn bench(c: &mut Criterion) {
    let case = RbaCase::new(10_000, 200_000);
    c.bench_function("rba/score", |b| b.iter(|| black_box(case.score())));
    common::bench_host_baseline(c, "after");

    let profiles = 10_000;
    for (agents, profile) in [
        (
            "each user's own user agents",
            typical_profile as fn(u64) -> _,
        ),
        ("user agents shared", typical_profile_shared_agents),
    ] {
        let (kept, bytes) = held_by(|| (0..profiles).map(profile).collect::<Vec<_>>());
        println!(
            "rba/memory: {} bytes per profile (40 logins learned, {agents}), over {profiles} \
             profiles",
            bytes / profiles as isize
        );
        drop(kept);
    }
    // The population the evaluation replays (docs/eval): 20,000 users over 90 days.
    let spec = CorpusSpec {
        users: 20_000,
        rows: 300_000,
        days: 90,
        seed: 7,
        ..CorpusSpec::default()
    };
    let (population, bytes) = held_by(|| population_profiles(&spec));
    let population = population.expect("the generated corpus reads back");
    let logins: u64 = population.iter().map(|p| p.successes).sum();
    println!(
        "rba/memory: {} bytes per profile on average over the {} users of a generated \
         population ({:.1} logins learned each on average, `riskgate gen --users 20000 --rows \
         300000 --days 90 --seed 7`)",
        bytes / population.len().max(1) as isize,
        population.len(),
        logins as f64 / population.len().max(1) as f64
    );
    drop(population);
    let logins = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let (stats, bytes) = held_by(|| RbaCase::new(100_000, logins));
    println!(
        "rba/memory: global statistics {:.1} MB after {logins} logins of 100,000 users",
        bytes as f64 / 1e6
    );
    drop(stats);
}

criterion_group!(benches, bench);
criterion_main!(benches);
