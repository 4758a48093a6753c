//! `GET /metrics`, end to end: the exposition parses as Prometheus text, and its counters
//! move with the requests sent.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

mod common;

use common::*;
use prometheus_parse::{Scrape, Value};
use riskgate::config::Settings;

const CLIENT_KEY: &str = "client-Qz8wN3vB6xK1tR5yHm2P";
const ADMIN_KEY: &str = "admin-Lc4jV9sD2fG7hA0kWq3E";

fn keys() -> Option<String> {
    Some(format!("{CLIENT_KEY}:client,{ADMIN_KEY}:admin"))
}

/// Scrapes `url`, checking that every sample line parses.
async fn scrape(client: &reqwest::Client, url: &str, key: Option<&str>) -> Scrape {
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).unwrap();
    let sample_lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let parsed: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(parsed, sample_lines, "every sample parses:\n{text}");
    scrape
}

/// The value of the sample named `metric` whose labels include `labels` (0 when absent).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("no summaries here"),
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_with_the_requests_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Settings {
        api_keys: keys(),
        decision_log: Some(dir.path().join("decisions.jsonl")),
        ..Settings::default()
    })
    .await;
    let url = server.url("/metrics");
    let client = &server.client;
    let evaluate = |body: serde_json::Value| {
        client
            .post(server.url("/v1/evaluate"))
            .bearer_auth(CLIENT_KEY)
            .json(&body)
            .send()
    };
    // Scrapers need the admin role on the main address.
    let denied = client
        .get(&url)
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let before = scrape(client, &url, Some(ADMIN_KEY)).await;
    assert_eq!(value(&before, "riskgate_evaluations_total", &[]), 0.0);

    for _ in 0..3 {
        let answer = evaluate(Login::default().body()).await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    for i in 0..10 {
        let at = format!("2026-11-03T09:01:{i:02}Z");
        let wrong = Login {
            user: "ivan",
            at: &at,
            password_ok: Some(false),
            ..Login::default()
        };
        evaluate(wrong.body()).await.unwrap();
    }
    let reload = client
        .post(server.url("/v1/policies/reload"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);

    let after = scrape(client, &url, Some(ADMIN_KEY)).await;
    let active = [("policy", "default"), ("mode", "active")];
    let total = value(&after, "riskgate_evaluations_total", &active);
    assert_eq!(total, 13.0);
    let locks = value(
        &after,
        "riskgate_evaluations_total",
        &[("policy", "default"), ("decision", "lock")],
    );
    assert!(locks >= 1.0, "the tenth failure locks: {locks}");
    let brute = [("policy", "default"), ("reason", "brute_force")];
    assert_eq!(
        value(&after, "riskgate_evaluation_reasons_total", &brute),
        1.0
    );
    assert_eq!(
        value(&after, "riskgate_evaluation_duration_seconds_count", &[]),
        13.0
    );
    let evaluate_route = [("route", "/v1/evaluate"), ("status", "200")];
    assert_eq!(
        value(
            &after,
            "riskgate_http_request_duration_seconds_count",
            &evaluate_route
        ),
        13.0
    );
    assert_eq!(
        value(
            &after,
            "riskgate_policy_reloads_total",
            &[("result", "accepted")]
        ),
        1.0
    );
    assert_eq!(value(&after, "riskgate_fallback_decisions_total", &[]), 0.0);
    assert_eq!(value(&after, "riskgate_state_errors_total", &[]), 0.0);
    // Both test databases are loaded, each with its build time.
    for kind in ["city", "asn"] {
        let built = value(
            &after,
            "riskgate_geoip_database_build_timestamp_seconds",
            &[("kind", kind)],
        );
        assert!(built > 1.5e9, "{kind}: {built}");
    }
    let info = [("policy", "default"), ("role", "active")];
    assert_eq!(value(&after, "riskgate_policy_info", &info), 1.0);
    // Lines reach the decision log off the request path.
    let mut written = 0.0;
    for _ in 0..100 {
        let now = scrape(client, &url, Some(ADMIN_KEY)).await;
        written = value(&now, "riskgate_decision_log_lines_written_total", &[]);
        if written >= 13.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(written, 13.0);
}

#[tokio::test]
async fn a_failing_policy_counts_its_errors_and_fail_safe_answers() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("default.rhai"),
        "fn evaluate(ctx) { throw \"boom\"; }",
    )
    .unwrap();
    let server = TestServer::start(Settings {
        policies_dir: Some(policies.path().to_owned()),
        ..Settings::default()
    })
    .await;
    for _ in 0..2 {
        let answer = server.evaluate(Login::default().body()).await;
        assert_eq!(answer["fallback"], true, "{answer}");
    }
    let after = scrape(&server.client, &server.url("/metrics"), None).await;
    assert_eq!(
        value(
            &after,
            "riskgate_policy_errors_total",
            &[("policy", "default")]
        ),
        2.0
    );
    let cause = [("cause", "policy_error")];
    assert_eq!(
        value(&after, "riskgate_fallback_decisions_total", &cause),
        2.0
    );
}

#[tokio::test]
async fn a_scraper_reads_metrics_on_an_address_of_its_own_without_a_key() {
    let port = common::process::free_port();
    let server = TestServer::start(Settings {
        api_keys: keys(),
        metrics_listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        ..Settings::default()
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    // The server binds it while starting up, after the main listener the test gave it.
    for _ in 0..200 {
        if server.client.get(&url).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let scraped = scrape(&server.client, &url, None).await;
    assert!(!scraped.samples.is_empty());
    // Only the metrics are served there.
    let other = format!("http://127.0.0.1:{port}/v1/users/alice");
    let response = server.client.get(other).send().await.unwrap();
    assert_eq!(response.status(), 404);
}
