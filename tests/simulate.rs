//! `POST /v1/simulate` end to end: what-if answers are evaluate's, and nothing they touch
//! changes, on every state backend.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed run"
)]

mod common;

use common::*;
use riskgate::config::Settings;
use serde_json::{Value, json};

on_every_backend!(
    an_inline_policy_answers_and_the_users_export_and_the_ips_counters_stay_as_they_were,
    a_simulated_step_up_parks_nothing_an_event_could_complete,
);

/// A policy that locks whatever it sees.
const LOCK_POLICY: &str =
    r#"fn evaluate(ctx) { #{decision: "lock", score: 0.9, reasons: ["what_if"]} }"#;

/// POSTs to /v1/simulate and expects 200.
async fn simulate(server: &TestServer, body: &Value) -> Value {
    let (status, answer) = server.post("/v1/simulate", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["simulated"], true, "{answer}");
    answer
}

/// `login`'s body with `extra` fields added.
fn with(login: Login<'_>, extra: Value) -> Value {
    let mut body = login.body();
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

async fn an_inline_policy_answers_and_the_users_export_and_the_ips_counters_stay_as_they_were(
    backend: &str,
) {
    let server = TestServer::on(backend).await;
    // Recent times: the export counts failures in the 24 hours before the server's clock.
    let ago = |seconds| (chrono::Utc::now() - chrono::Duration::seconds(seconds)).to_rfc3339();
    let (yesterday, a_minute_ago, just_now) = (ago(20 * 3600), ago(60), ago(30));
    server
        .evaluate(
            Login {
                at: &yesterday,
                ..Login::default()
            }
            .body(),
        )
        .await;
    let wrong = Login {
        ip: CHINA,
        device: "bot",
        ua: FIREFOX_LINUX,
        at: &a_minute_ago,
        password_ok: Some(false),
        ..Login::default()
    };
    server.evaluate(wrong.body()).await;
    let (_, export) = server.get("/v1/users/alice").await;
    assert_eq!(export["failures_24h"], 1, "{export}");

    let again = Login {
        at: &just_now,
        ..wrong.clone()
    };
    let what_if = simulate(
        &server,
        &with(again.clone(), json!({"policy": LOCK_POLICY})),
    )
    .await;
    assert_eq!(what_if["decision"], "lock", "{what_if}");
    assert_eq!(reasons(&what_if), ["what_if"]);
    assert_eq!(what_if["lock_seconds"], 900);
    assert_eq!(what_if["policy"]["name"], "<inline>");
    assert_eq!(what_if["fallback"], false);
    assert!(what_if.get("shadow").is_none());
    let signals = &what_if["signals"];
    assert_eq!(
        (
            &signals["user"]["failures_15m"],
            &signals["ip"]["failures_10m"]
        ),
        (&json!(2), &json!(2)),
        "this attempt counts in its own signals, as in evaluate's: {signals}"
    );

    // Twenty more wrong passwords, simulated: the shipped policy locks after ten.
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(simulate(&server, &again.body()).await);
    }
    let (_, after) = server.get("/v1/users/alice").await;
    assert_eq!(after, export, "the export is exactly as it was");

    // The real attempt sees the state the simulations saw: nothing was counted.
    let real = server.evaluate(again.body()).await;
    for answer in &answers {
        assert_eq!(answer["signals"], real["signals"]);
        assert_eq!(answer["decision"], real["decision"]);
        assert_ne!(answer["request_id"], real["request_id"]);
    }
    assert_eq!(real["signals"]["user"]["failures_15m"], 2, "{real}");
    assert_eq!(real["signals"]["ip"]["attempts_1m"], 2, "{real}");
    assert_ne!(real["decision"], "lock", "{real}");
}

async fn a_simulated_step_up_parks_nothing_an_event_could_complete(backend: &str) {
    let server = TestServer::on(backend).await;
    let home = Login {
        user: "bob",
        at: "2026-11-03T09:00:00Z",
        ..Login::default()
    };
    server.evaluate(home.body()).await;
    let away = Login {
        user: "bob",
        ip: SEATTLE,
        device: "phone",
        ua: FIREFOX_LINUX,
        at: "2026-11-04T09:00:00Z",
        ..Login::default()
    };
    let what_if = simulate(&server, &away.body()).await;
    assert_eq!(what_if["decision"], "mfa", "{what_if}");
    assert_eq!(what_if["signals"]["device"]["known"], false);
    let passed = server
        .event(json!({"type": "mfa_passed", "user_id": "bob",
            "request_id": what_if["request_id"]}))
        .await;
    assert_eq!(passed["recorded"], "ignored", "{passed}");
    let real = server.evaluate(away.body()).await;
    assert_eq!(real["decision"], "mfa", "{real}");
    assert_eq!(
        real["signals"]["device"]["known"], false,
        "the phone was not learned"
    );
    let (_, export) = server.get("/v1/users/bob").await;
    assert_eq!(export["profile"]["successes"], 1, "{export}");
}

/// A server whose policies directory has `default` (allows, reason `v1`) and `strict` (MFA,
/// reason `strict`), `strict` also the shadow.
async fn two_policies() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let allow = r#"fn evaluate(ctx) { #{decision: "allow", score: 0.0, reasons: ["v1"]} }"#;
    let strict = r#"fn evaluate(ctx) { #{decision: "mfa", score: 0.5, reasons: ["strict"]} }"#;
    std::fs::write(dir.path().join("default.rhai"), allow).unwrap();
    std::fs::write(dir.path().join("strict.rhai"), strict).unwrap();
    let server = TestServer::start(Settings {
        policies_dir: Some(dir.path().to_owned()),
        shadow_policy: Some("strict".into()),
        ..Settings::default()
    })
    .await;
    (server, dir)
}

#[tokio::test]
async fn a_loaded_policy_is_picked_by_name_and_the_default_comes_with_its_shadow() {
    let (server, _dir) = two_policies().await;
    let body = json!({"user_id": "ivy", "ip": LONDON, "password_ok": true});
    let in_force = simulate(&server, &body).await;
    assert_eq!(reasons(&in_force), ["v1"]);
    assert_eq!(
        in_force["shadow"]["reasons"],
        json!(["strict"]),
        "{in_force}"
    );

    let mut named = body.clone();
    named["policy_name"] = json!("strict");
    let strict = simulate(&server, &named).await;
    assert_eq!(strict["decision"], "mfa");
    assert_eq!(strict["policy"]["name"], "strict");
    assert!(strict.get("shadow").is_none(), "{strict}");

    named["policy_name"] = json!("lenient");
    let (status, error) = server.post("/v1/simulate", &named).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("policy_name"))
    );
    assert!(error["message"].as_str().unwrap().contains("lenient"));

    named["policy"] = json!(LOCK_POLICY);
    let (status, error) = server.post("/v1/simulate", &named).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("policy")),
        "{error}"
    );
}

#[tokio::test]
async fn a_broken_inline_policy_is_refused_with_its_line_and_column_and_a_failing_one_gets_the_fail_safe()
 {
    let server = TestServer::default().await;
    let body = |policy: &str| json!({"user_id": "kim", "ip": LONDON, "policy": policy});

    let (status, error) = server
        .post(
            "/v1/simulate",
            &body("fn evaluate(ctx) {\n  #{ decision: }\n}"),
        )
        .await;
    assert_eq!(
        (status, error["error"].as_str(), error["field"].as_str()),
        (400, Some("invalid_field"), Some("policy")),
        "{error}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("<inline>:2:"),
        "line and column: {message}"
    );

    let (status, error) = server.post("/v1/simulate", &body("let x = 1;")).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("policy")));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("fn evaluate(ctx)")
    );

    // Within the limit, though over 64 KiB as JSON (each control character is six bytes).
    let escaped = format!("{LOCK_POLICY}\n// {}", "\u{1}".repeat(12 * 1024));
    let answer = simulate(&server, &body(&escaped)).await;
    assert_eq!(reasons(&answer), ["what_if"]);

    let oversized = format!("{LOCK_POLICY}\n// {}", "x".repeat(33 * 1024));
    let (status, error) = server.post("/v1/simulate", &body(&oversized)).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("policy")));
    assert!(error["message"].as_str().unwrap().contains("32768 bytes"));
    let (status, error) = server
        .post("/v1/simulate", &body(&"x".repeat(520 * 1024)))
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (413, Some("payload_too_large"))
    );

    let (status, error) = server
        .post(
            "/v1/simulate",
            &json!({"user_id": "kim", "ip": "1.2.3.400"}),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("ip")),
        "{error}"
    );

    let failing = simulate(
        &server,
        &body(r#"fn evaluate(ctx) { throw "no verdict today"; }"#),
    )
    .await;
    assert_eq!(failing["fallback"], true, "{failing}");
    assert_eq!(failing["decision"], "mfa");
    assert_eq!(reasons(&failing), ["policy_error"]);
    assert_eq!(failing["policy"]["name"], "<inline>");

    let metrics = server.client.get(server.url("/metrics")).send().await;
    let metrics = metrics.unwrap().text().await.unwrap();
    assert!(
        !metrics.contains("riskgate_evaluations_total{"),
        "simulations are not evaluations:\n{metrics}"
    );
    let (status, _) = server.get("/v1/users/kim").await;
    assert_eq!(status, 404, "nothing kept about kim");
}

#[tokio::test]
async fn simulating_needs_an_admin_key() {
    const CLIENT_KEY: &str = "client-Hq3VzL8mT1xW5nR0bK7d";
    const ADMIN_KEY: &str = "admin-Jd6sP0wQ4yU9eC2fN8gZ";
    let server = TestServer::start(Settings {
        api_keys: Some(format!("{CLIENT_KEY}:client,{ADMIN_KEY}:admin")),
        ..Settings::default()
    })
    .await;
    let body = json!({"user_id": "lou", "ip": LONDON, "policy": LOCK_POLICY});
    let status = |key: Option<&'static str>| {
        let mut request = server.client.post(server.url("/v1/simulate")).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(None).await, 401);
    assert_eq!(status(Some(CLIENT_KEY)).await, 403);
    assert_eq!(status(Some(ADMIN_KEY)).await, 200);
}
