//! Full in-process `Engine::evaluate`: GeoIP + user agent + state + the default policy.
//!
//! Run: `cargo bench --bench evaluate`. Criterion reports the median; the `percentiles` line
//! printed after it gives p50/p99 over individually timed calls.
//!
//! The machine is shared and noisy, so `baseline/woothee_uncached` measures a fixed piece of
//! work in the same run (0.55-0.93 µs on a quiet machine, see the README's Performance
//! section): divide by it to compare runs.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;

use std::time::Instant;
use tokio::runtime::Runtime;

use chrono::{DateTime, Duration, Utc};
use common::redis::RedisServer;
use common::{CHROME_WIN, FIREFOX_LINUX, PLACES, shipped_policies, write_geoip};
use criterion::{Criterion, criterion_group, criterion_main};
use riskgate::config::Settings;
use riskgate::{Attempt, Engine};

// The same allocator as the `riskgate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USERS: usize = 10_000;

/// An engine with the test GeoIP files in `dir`, on the `backend` state backend (its data, if
/// any, in `dir` too).
fn build(
    runtime: &Runtime,
    dir: &std::path::Path,
    backend: &str,
    redis_url: Option<String>,
) -> Engine {
    let (city, asn) = write_geoip(dir);
    let config = Settings {
        policies_dir: Some(shipped_policies()),
        geoip_city: Some(city.display().to_string()),
        geoip_asn: Some(asn.display().to_string()),
        state_backend: Some(backend.into()),
        data_dir: Some(dir.join("data")),
        redis_url,
        ..Settings::default()
    }
    .resolve()
    .unwrap();
    runtime
        .block_on(riskgate::service::build_engine(&config))
        .unwrap()
}

/// A realistic mix: mostly returning users on their device, some new devices, some failures.
fn attempts() -> Vec<Attempt> {
    (0..USERS * 4)
        .map(|i| {
            // Each user has a home IP in one of the test cities, shared with ~8 others.
            let user = i % USERS;
            let place = &PLACES[user % 5];
            let base: std::net::Ipv4Addr = place.net.split('/').next().unwrap().parse().unwrap();
            let ip = std::net::Ipv4Addr::from(u32::from(base) + (user / 5 % 250) as u32 + 1);
            let mut a = Attempt::new(format!("user{user}"), ip.into());
            let odd = i % 10 == 0;
            a.user_agent = Some(if odd { FIREFOX_LINUX } else { CHROME_WIN }.to_owned());
            a.device_id = Some(format!("dev{}{}", i % USERS, if odd { "x" } else { "" }));
            a.password_ok = Some(i % 17 != 0);
            a
        })
        .collect()
}

/// Whether this is `cargo bench` (rather than `cargo test --benches`, which runs each
/// benchmark once to see that it works).
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Every user gets a history (a few under `cargo test`); returns the time after it.
fn warm(runtime: &Runtime, engine: &Engine, attempts: &[Attempt]) -> DateTime<Utc> {
    let start: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    let users = if benching() { attempts.len() } else { 1_000 };
    for (i, a) in attempts.iter().take(users).enumerate() {
        let at = start + Duration::seconds(i as i64);
        runtime.block_on(engine.evaluate_committed(a, at)).unwrap();
    }
    start + Duration::days(1)
}

/// Benchmarks `engine` (warmed first) answering each evaluation once it is committed, as the
/// server answers.
fn bench_committed(
    c: &mut Criterion,
    runtime: &Runtime,
    name: &str,
    engine: &Engine,
    attempts: &[Attempt],
) {
    let mut now = warm(runtime, engine, attempts);
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % attempts.len();
            now += Duration::milliseconds(50);
            let answer = engine.evaluate_committed(black_box(&attempts[i]), now);
            black_box(runtime.block_on(answer).unwrap())
        })
    });
}

fn bench(c: &mut Criterion) {
    // Engine calls run on a runtime, as the server runs them; in-memory ones never wait.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(build(&runtime, dir.path(), "memory", None));
    let attempts = attempts();
    let mut i = 0usize;
    let mut now = warm(&runtime, &engine, &attempts);

    // The same evaluations on the durable backend, each answered once its changes are with
    // the operating system, as the server answers. One caller at a time, so no two share a
    // write: the worst case for group commit.
    let durable_dir = tempfile::tempdir().unwrap();
    let durable = build(&runtime, durable_dir.path(), "embedded", None);
    bench_committed(c, &runtime, "evaluate/full_embedded", &durable, &attempts);
    drop(durable);

    // The same on Redis (a redis-server of its own on loopback): three round trips per
    // evaluation, the first two slots' concurrently.
    let redis = RedisServer::start();
    let shared = build(&runtime, dir.path(), "redis", Some(redis.url()));
    bench_committed(c, &runtime, "evaluate/full_redis", &shared, &attempts);
    drop(shared);

    c.bench_function("evaluate/full", |b| {
        b.iter(|| {
            i = (i + 1) % attempts.len();
            now += Duration::milliseconds(50);
            let answer = engine.evaluate(black_box(&attempts[i]), now);
            black_box(runtime.block_on(answer).unwrap())
        })
    });

    let sample = runtime
        .block_on(engine.evaluate(&attempts[1], now))
        .unwrap();
    let policies = engine.policies();
    let policy = policies.active(None);
    c.bench_function("parts/policy", |b| {
        b.iter(|| black_box(engine.runtime().run(policy, &sample.signals).unwrap()))
    });
    // What the server adds to each evaluation for `/metrics` (a shadow verdict doubles it).
    let metrics = riskgate::metrics::Metrics::new();
    let took = std::time::Duration::from_micros(30);
    c.bench_function("parts/metrics", |b| {
        b.iter(|| metrics.evaluated(black_box(&sample), took))
    });
    c.bench_function("parts/geoip", |b| {
        b.iter(|| black_box(engine.geo_lookup(black_box(attempts[1].ip))))
    });
    common::bench_host_baseline(c, "after");

    // `cargo test --benches` runs each benchmark once; percentiles only under `cargo bench`.
    if !benching() {
        return;
    }
    let mut samples: Vec<u64> = (0..200_000)
        .map(|_| {
            i = (i + 1) % attempts.len();
            now += Duration::milliseconds(50);
            let t = Instant::now();
            black_box(
                runtime
                    .block_on(engine.evaluate(&attempts[i], now))
                    .unwrap(),
            );
            t.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0
    };
    println!(
        "evaluate/full percentiles over {} calls: p50 {:.2} µs, p90 {:.2} µs, p99 {:.2} µs",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
