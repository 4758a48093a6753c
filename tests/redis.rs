//! The Redis backend with the real binary: replicas on one Redis (or one Redis Cluster)
//! share every state, and a Redis that dies mid-test gives fail-safe answers, then normal
//! ones again without restarting riskgate.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed run"
)]

mod common;

use std::time::{Duration, Instant};

use common::process::{self, Client, Server, free_port};
use common::redis::{RedisCluster, RedisServer};
use common::*;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

/// A riskgate process on the Redis at `url`, giving up on a Redis call after `timeout_ms`,
/// and its client. Its global statistics sync every second, so syncs run beside every test
/// (and fail while Redis is down).
fn replica(url: &str, timeout_ms: &str, geo: &std::path::Path) -> (Server, Client) {
    let port = free_port();
    let env = [
        ("RISKGATE_STATE_BACKEND", "redis"),
        ("RISKGATE_REDIS_URL", url),
        ("RISKGATE_REDIS_TIMEOUT_MS", timeout_ms),
        ("RISKGATE_REDIS_GLOBAL_SYNC_SECONDS", "1"),
    ];
    let command = process::serve(&env, geo, port);
    (Server::start(command, port), Client::new(port))
}

/// A timeout no call takes even on a loaded machine running debug builds, for the tests of
/// sharing (those of failing use the default).
const PATIENT: &str = "5000";

fn login(user: &str, ip: &str, device: &str, at: &str, password_ok: bool) -> Value {
    json!({"user_id": user, "ip": ip, "device_id": device, "user_agent": CHROME_WIN,
           "timestamp": at, "password_ok": password_ok})
}

/// The time `seconds` after a week ago, RFC 3339: the exports judge by the wall clock.
fn since_a_week_ago(seconds: i64) -> String {
    let start = chrono::Utc::now() - chrono::Duration::days(7);
    (start + chrono::Duration::seconds(seconds)).to_rfc3339()
}

/// Two replicas on the Redis (or cluster) at `url` behave as one.
async fn replicas_share_state(url: &str) {
    const DAY: i64 = 86_400;
    let dir = tempfile::tempdir().unwrap();
    let (_a, a) = replica(url, PATIENT, dir.path());
    let (_b, b) = replica(url, PATIENT, dir.path());

    // Failures alternate between the replicas: the account locks at the tenth (the
    // policy's threshold), though each replica received only five.
    for i in 0..12 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let at = since_a_week_ago(7 * DAY - 600 + i);
        let answer = replica
            .evaluate(login("mallory", CHINA, "bot", &at, false))
            .await;
        let expected = if i < 9 { "allow" } else { "lock" };
        assert_eq!(answer["decision"], expected, "failure {}: {answer}", i + 1);
    }
    for replica in [&a, &b] {
        let (status, user) = replica
            .send(reqwest::Method::GET, "/v1/users/mallory", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(user["locked"], true, "{user}");
        assert_eq!(user["failures_24h"], 12, "{user}");
    }

    // A device learned through one replica is known through the other.
    let first = a
        .evaluate(login("alice", LONDON, "laptop", &since_a_week_ago(0), true))
        .await;
    assert_eq!(first["decision"], "allow", "{first}");
    let again = b
        .evaluate(login(
            "alice",
            LONDON,
            "laptop",
            &since_a_week_ago(DAY),
            true,
        ))
        .await;
    assert_eq!(again["signals"]["device"]["known"], true, "{again}");
    assert_eq!(again["decision"], "allow", "{again}");

    // A step-up answered by one replica, passed through the other, teaches the device.
    let abroad = login("alice", SEATTLE, "phone", &since_a_week_ago(2 * DAY), true);
    let step_up = a.evaluate(abroad).await;
    assert_eq!(step_up["decision"], "mfa", "{step_up}");
    let passed = b
        .event(json!({"type": "mfa_passed", "user_id": "alice",
                      "request_id": step_up["request_id"],
                      "timestamp": since_a_week_ago(2 * DAY + 60)}))
        .await;
    assert_eq!(passed["recorded"], "learned", "{passed}");
    let known = a
        .evaluate(login(
            "alice",
            SEATTLE,
            "phone",
            &since_a_week_ago(3 * DAY),
            true,
        ))
        .await;
    assert_eq!(known["signals"]["device"]["known"], true, "{known}");

    // 2,000 failures for one user across both replicas, 100 at a time (within the test's
    // file descriptor limit): all counted.
    let failures = (0..2_000).map(|i| {
        let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
        let at = since_a_week_ago(7 * DAY - 3_600 + i / 2);
        let body = login("target", AWS, &format!("bot{i}"), &at, false);
        async move { replica.evaluate(body).await }
    });
    let answers: Vec<Value> = stream::iter(failures).buffer_unordered(100).collect().await;
    assert!(answers.iter().all(|a| a["fallback"] == false));

    // 300 successful logins of one account (a kiosk, a service account), 64 at a time on
    // both replicas: every one updates the profile, none gives up.
    let logins = (0..300).map(|i| {
        let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
        let at = since_a_week_ago(4 * DAY + i);
        let body = login("kiosk", LONDON, "kiosk-1", &at, true);
        async move { replica.evaluate(body).await }
    });
    let answers: Vec<Value> = stream::iter(logins).buffer_unordered(64).collect().await;
    let fallbacks: Vec<&Value> = answers.iter().filter(|a| a["fallback"] == true).collect();
    assert!(fallbacks.is_empty(), "{fallbacks:?}");
    let (_, kiosk) = a.send(reqwest::Method::GET, "/v1/users/kiosk", None).await;
    let learned = kiosk["profile"]["successes"].as_u64().unwrap();
    let allowed = answers.iter().filter(|a| a["decision"] == "allow").count();
    assert_eq!(
        learned, allowed as u64,
        "every allowed login was learned once"
    );
    for replica in [&a, &b] {
        let (_, user) = replica
            .send(reqwest::Method::GET, "/v1/users/target", None)
            .await;
        assert_eq!(user["failures_24h"], 2_000, "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_redis_share_locks_devices_steps_up_and_counts() {
    let redis = RedisServer::start();
    replicas_share_state(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_a_redis_cluster_share_the_same_way() {
    let cluster = RedisCluster::start(3);
    // The first seed is down: the others are asked.
    let dead_seed = format!("redis://127.0.0.1:{}", free_port());
    replicas_share_state(&format!("{dead_seed},{}", cluster.urls())).await;
}

#[tokio::test]
async fn redis_dying_gives_fail_safe_answers_and_riskgate_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let (_server, client) = replica(&redis.url(), "50", dir.path());
    let body = login("alice", LONDON, "laptop", &since_a_week_ago(0), true);
    assert_eq!(client.evaluate(body.clone()).await["fallback"], false);
    assert_eq!(client.status(reqwest::Method::GET, "/readyz").await, 200);

    redis.kill();
    for _ in 0..3 {
        let asked = Instant::now();
        let answer = client.evaluate(body.clone()).await;
        // Far above the 50 ms timeout: this only tells an answer from a hang.
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(
            answer["decision"], "mfa",
            "the fail-safe decision: {answer}"
        );
        assert_eq!(answer["fallback"], true, "{answer}");
        assert_eq!(reasons(&answer), ["state_unavailable"], "{answer}");
    }
    let failure = json!({"type": "login_failed", "user_id": "alice", "ip": LONDON});
    let (status, error) = client
        .send(reqwest::Method::POST, "/v1/events", Some(failure))
        .await;
    assert_eq!(
        (status, &error["error"]),
        (503, &json!("unavailable")),
        "{error}"
    );
    // The background probe notices within a second or so.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, ready) = client.send(reqwest::Method::GET, "/readyz", None).await;
        if status == 503 {
            assert_eq!(ready["state"], "unavailable", "{ready}");
            break;
        }
        assert!(Instant::now() < deadline, "readyz stays {status}: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    redis.run();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client.evaluate(body.clone()).await;
        if answer["fallback"] == false {
            assert_eq!(answer["decision"], "allow", "{answer}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no normal answer after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.status(reqwest::Method::GET, "/readyz").await != 200 {
        assert!(
            Instant::now() < deadline,
            "readyz stays 503 after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_redis_refusing_writes_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let (_server, client) = replica(&redis.url(), "50", dir.path());
    assert_eq!(client.status(reqwest::Method::GET, "/readyz").await, 200);
    // Out of memory: Redis still answers PING, but refuses every write.
    redis.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.command(&["CONFIG", "SET", "maxmemory", "1"]);
    let body = login("alice", LONDON, "laptop", &since_a_week_ago(0), true);
    let answer = client.evaluate(body).await;
    assert_eq!(answer["fallback"], true, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.status(reqwest::Method::GET, "/readyz").await != 503 {
        assert!(
            Instant::now() < deadline,
            "readyz stays 200 while writes fail"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.command(&["CONFIG", "SET", "maxmemory", "0"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.status(reqwest::Method::GET, "/readyz").await != 200 {
        assert!(
            Instant::now() < deadline,
            "readyz stays 503 once writes succeed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn an_unreachable_redis_at_startup_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("redis://127.0.0.1:{}", free_port());
    let command = process::serve(
        &[
            ("RISKGATE_STATE_BACKEND", "redis"),
            ("RISKGATE_REDIS_URL", &nobody),
        ],
        dir.path(),
        free_port(),
    );
    let stderr = Server::refused(command);
    assert!(stderr.contains("cannot reach Redis at"), "{stderr}");
}
