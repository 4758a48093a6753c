//! Replay throughput on a generated 1M-row labelled corpus with the default policy.
//!
//! Run: `cargo bench --bench replay`. Criterion reports rows per second (`thrpt`); set
//! `RISKGATE_BENCH_ROWS` for another corpus size.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use riskgate::config::Settings;
use riskgate::corpus::{CorpusSpec, generate};
use riskgate::replay::{self, ReplaySpec};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    riskgate::alloc::keep_freed_memory(); // as the `riskgate replay` command does
    // `cargo test --benches` runs each benchmark once: a small corpus keeps that quick.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let rows: usize = std::env::var("RISKGATE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 1_000_000 } else { 5_000 });
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus-rba.csv");
    let spec = CorpusSpec {
        users: rows / 10,
        rows,
        ..CorpusSpec::default()
    };
    generate(
        &spec,
        std::io::BufWriter::new(std::fs::File::create(&corpus).unwrap()),
    )
    .unwrap();
    let config = || {
        Settings {
            policies_dir: Some(common::shipped_policies()),
            geoip_city: Some(String::new()),
            geoip_asn: Some(String::new()),
            ..Settings::default()
        }
        .resolve()
        .unwrap()
    };
    common::bench_host_baseline(c, "before");
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    for threads in [1, 2] {
        group.bench_function(format!("default_policy/{threads}_threads"), |b| {
            b.iter(|| {
                let mut spec = ReplaySpec::new(&corpus);
                spec.options.threads = threads;
                replay::run(&spec, &config(), &|_| {}).unwrap()
            })
        });
    }
    group.finish();
    common::bench_host_baseline(c, "after");
}

criterion_group!(benches, bench);
criterion_main!(benches);
