//! The risk API end to end: a real server on a loopback port, real GeoIP files, the shipped
//! default policy.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

mod common;

use common::*;
use riskgate::config::Settings;
use serde_json::json;

on_every_backend!(
    home_login_is_allowed_and_a_new_device_in_a_new_country_steps_up,
    ten_wrong_passwords_lock_but_the_real_user_on_a_known_device_gets_mfa,
    pre_auth_counts_toward_velocity_but_never_teaches_the_profile,
    one_ip_trying_thirty_users_is_password_spraying,
    two_logins_an_hour_apart_from_distant_cities_are_impossible_travel,
    failed_and_stepped_up_attackers_never_become_known,
    admins_export_unlock_and_erase_users,
    crafted_user_ids_keep_their_own_state,
    trusting_or_passing_mfa_before_the_password_never_teaches_an_unverified_device
);

async fn home_login_is_allowed_and_a_new_device_in_a_new_country_steps_up(backend: &str) {
    let server = TestServer::on(backend).await;
    let first = server
        .evaluate(
            Login {
                user: "alice",
                ip: LONDON,
                device: "laptop",
                at: "2026-11-02T08:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(first["decision"], "allow", "{first}");
    let home = server
        .evaluate(
            Login {
                user: "alice",
                ip: LONDON,
                device: "laptop",
                at: "2026-11-03T08:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(home["decision"], "allow", "{home}");
    let signals = &home["signals"];
    assert_eq!(signals["geo"]["country"], "GB");
    assert_eq!(signals["geo"]["city"], "London");
    assert_eq!(signals["geo"]["asn"], 20712);
    assert_eq!(signals["device"]["known"], true);
    assert_eq!(signals["device"]["browser"], "Chrome");
    assert_eq!(signals["user"]["new_country"], false);
    assert!(
        home["policy"]["version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(home.get("lock_seconds").is_none());

    let away = server
        .evaluate(
            Login {
                user: "alice",
                ip: SEATTLE,
                device: "phone",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T20:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(away["decision"], "mfa", "{away}");
    let why = reasons(&away);
    assert!(
        why.contains(&"new_device".into()) && why.contains(&"new_country".into()),
        "{why:?}"
    );
    assert_eq!(
        away["signals"]["user"]["impossible_travel"], false,
        "12 h is enough for 7,700 km"
    );
}

/// Bob logs in from home (`LONDON`) on his laptop on two days, then an attacker in China
/// tries ten wrong passwords five seconds apart: the answers to those ten.
async fn bob_at_home_then_ten_wrong_passwords(server: &TestServer) -> Vec<serde_json::Value> {
    for day in ["2026-11-01", "2026-11-02"] {
        let ok = server
            .evaluate(
                Login {
                    user: "bob",
                    ip: LONDON,
                    device: "bob-laptop",
                    at: &format!("{day}T09:00:00Z"),
                    ..Login::default()
                }
                .body(),
            )
            .await;
        assert_eq!(ok["decision"], "allow", "{ok}");
    }
    let mut answers = Vec::new();
    for i in 0..10 {
        let at = format!("2026-11-03T10:00:{:02}Z", i * 5);
        let login = Login {
            user: "bob",
            ip: CHINA,
            device: "attacker",
            ua: FIREFOX_LINUX,
            at: &at,
            password_ok: Some(false),
        };
        answers.push(server.evaluate(login.body()).await);
    }
    answers
}

async fn ten_wrong_passwords_lock_but_the_real_user_on_a_known_device_gets_mfa(backend: &str) {
    let server = TestServer::on(backend).await;
    let answers = bob_at_home_then_ten_wrong_passwords(&server).await;
    for (i, answer) in answers.iter().take(9).enumerate() {
        assert_ne!(answer["decision"], "lock", "attempt {i}: {answer}");
    }
    let last = &answers[9];
    assert_eq!(last["decision"], "lock", "{last}");
    assert_eq!(last["lock_seconds"], 900);
    assert_eq!(last["signals"]["user"]["failures_15m"], 10);
    assert_eq!(reasons(last), ["brute_force"]);

    let during = server
        .evaluate(
            Login {
                user: "bob",
                ip: CHINA,
                device: "attacker",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T10:02:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(during["decision"], "lock", "{during}");
    let remaining = during["lock_seconds"].as_u64().unwrap();
    assert!(remaining > 0 && remaining <= 900, "{remaining}");

    let real = server
        .evaluate(
            Login {
                user: "bob",
                ip: LONDON_2,
                device: "bob-laptop",
                at: "2026-11-03T10:03:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(real["decision"], "mfa", "smart lockout: {real}");
    assert!(reasons(&real).contains(&"known_device_and_network".into()));
    assert_eq!(real["signals"]["user"]["locked"], true);

    let (status, profile) = server.get("/v1/users/bob").await;
    assert_eq!(status, 200);
    assert!(profile["locked_until"].is_string(), "{profile}");
}

async fn pre_auth_counts_toward_velocity_but_never_teaches_the_profile(backend: &str) {
    let server = TestServer::on(backend).await;
    server
        .evaluate(
            Login {
                user: "carol",
                ip: LONDON,
                device: "carol-laptop",
                at: "2026-11-03T09:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    let first = server
        .evaluate(
            Login {
                user: "carol",
                ip: LONDON,
                device: "carol-tablet",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T09:10:00Z",
                password_ok: None,
            }
            .body(),
        )
        .await;
    assert_eq!(first["signals"]["request"]["preauth"], true);
    assert_eq!(first["signals"]["ip"]["attempts_1m"], 1);
    let second = server
        .evaluate(
            Login {
                user: "carol",
                ip: LONDON,
                device: "carol-tablet",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T09:10:20Z",
                password_ok: None,
            }
            .body(),
        )
        .await;
    assert_eq!(
        second["signals"]["ip"]["attempts_1m"], 2,
        "pre-auth calls count as attempts"
    );
    assert_eq!(
        second["signals"]["device"]["known"], false,
        "pre-auth never teaches"
    );
    assert_eq!(
        second["signals"]["user"]["failures_15m"], 0,
        "nor counts a failure"
    );

    // The IdP then reports the outcome of that pre-auth attempt: only now is it learned.
    let request_id = second["request_id"].as_str().unwrap();
    let recorded = server
        .event(
            json!({"type": "login_succeeded", "user_id": "carol", "request_id": request_id,
                      "timestamp": "2026-11-03T09:10:21Z"}),
        )
        .await;
    assert_eq!(second["decision"], "allow", "{second}");
    assert_eq!(recorded["recorded"], "learned");
    let again = server
        .event(json!({"type": "login_succeeded", "user_id": "carol", "request_id": request_id}))
        .await;
    assert_eq!(again["recorded"], "ignored", "an outcome counts once");
    let third = server
        .evaluate(
            Login {
                user: "carol",
                ip: LONDON,
                device: "carol-tablet",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T09:30:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(third["signals"]["device"]["known"], true);
}

async fn one_ip_trying_thirty_users_is_password_spraying(backend: &str) {
    let server = TestServer::on(backend).await;
    let mut last = json!(null);
    for i in 0..30 {
        let at = format!("2026-11-03T11:{:02}:00Z", i);
        last = server
            .evaluate(
                Login {
                    user: &format!("user{i}"),
                    ip: SWEDEN,
                    device: "sprayer",
                    ua: FIREFOX_LINUX,
                    at: &at,
                    password_ok: Some(false),
                }
                .body(),
            )
            .await;
    }
    assert_eq!(last["signals"]["ip"]["distinct_users_1h"], 30);
    assert!(
        ["mfa", "lock"].contains(&last["decision"].as_str().unwrap()),
        "{last}"
    );
    assert!(
        reasons(&last).contains(&"password_spraying".into()),
        "{last}"
    );
}

async fn two_logins_an_hour_apart_from_distant_cities_are_impossible_travel(backend: &str) {
    let server = TestServer::on(backend).await;
    server
        .evaluate(
            Login {
                user: "dave",
                ip: LONDON,
                device: "dave-laptop",
                at: "2026-11-03T09:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    let answer = server
        .evaluate(
            Login {
                user: "dave",
                ip: SEATTLE,
                device: "dave-laptop",
                at: "2026-11-03T10:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    let user = &answer["signals"]["user"];
    assert_eq!(user["impossible_travel"], true, "{answer}");
    assert!(user["distance_km"].as_f64().unwrap() > 6000.0);
    assert!(user["speed_kmh"].as_f64().unwrap() > 6000.0);
    assert_eq!(answer["decision"], "mfa");
    assert!(reasons(&answer).contains(&"impossible_travel".into()));
}

async fn failed_and_stepped_up_attackers_never_become_known(backend: &str) {
    let server = TestServer::on(backend).await;
    server
        .evaluate(
            Login {
                user: "erin",
                ip: LONDON,
                device: "erin-laptop",
                at: "2026-11-03T09:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    let step_up = server
        .evaluate(
            Login {
                user: "erin",
                ip: CHINA,
                device: "evil",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T12:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(step_up["decision"], "mfa");
    let id = step_up["request_id"].as_str().unwrap();
    let failed = server
        .event(
            json!({"type": "mfa_failed", "user_id": "erin", "request_id": id,
                      "timestamp": "2026-11-03T12:00:30Z"}),
        )
        .await;
    assert_eq!(failed["recorded"], "failure_counted");
    server
        .evaluate(
            Login {
                user: "erin",
                ip: CHINA,
                device: "evil-2",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T12:01:00Z",
                password_ok: Some(false),
            }
            .body(),
        )
        .await;
    let again = server
        .evaluate(
            Login {
                user: "erin",
                ip: CHINA,
                device: "evil",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T12:02:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(again["signals"]["device"]["known"], false);
    assert_eq!(again["signals"]["user"]["new_country"], true);
    assert_eq!(again["signals"]["user"]["failures_15m"], 2);
    // Only the wrong password counts against the IP: a failed step-up is the user's alone,
    // so IP counters depend on the log alone and replay can count them centrally.
    assert_eq!(again["signals"]["ip"]["failures_10m"], 1);

    let (_, profile) = server.get("/v1/users/erin").await;
    let profile = &profile["profile"];
    assert_eq!(profile["successes"], 1, "{profile}");
    assert_eq!(profile["known"]["countries"][0]["label"], "GB");
    assert_eq!(profile["known"]["countries"].as_array().unwrap().len(), 1);
    assert_eq!(profile["known"]["devices"].as_array().unwrap().len(), 1);

    // Passing the step-up is what teaches.
    let id = again["request_id"].as_str().unwrap();
    let passed = server
        .event(
            json!({"type": "mfa_passed", "user_id": "erin", "request_id": id,
                      "timestamp": "2026-11-03T12:02:30Z"}),
        )
        .await;
    assert_eq!(passed["recorded"], "learned");
    let (_, profile) = server.get("/v1/users/erin").await;
    assert_eq!(
        profile["profile"]["known"]["countries"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_policy_that_loops_forever_returns_the_fail_safe_marked_fallback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("loop.rhai"),
        "fn evaluate(ctx) { loop { } }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.rhai"),
        "fn evaluate(ctx) { #{decision: \"maybe\"} }",
    )
    .unwrap();
    for (policy, why) in [("loop", "operations"), ("bad", "maybe")] {
        let server = TestServer::start(Settings {
            policies_dir: Some(dir.path().to_owned()),
            policy: Some(policy.into()),
            ..Settings::default()
        })
        .await;
        let answer = server
            .evaluate(json!({"user_id": "frank", "ip": LONDON, "password_ok": true}))
            .await;
        assert_eq!(answer["decision"], "mfa", "{answer}");
        assert_eq!(answer["fallback"], true);
        assert_eq!(reasons(&answer), ["policy_error"]);
        assert_eq!(answer["policy"]["name"], policy);
        let _ = why;
    }
}

#[tokio::test]
async fn timestamps_further_back_than_the_configured_age_are_refused() {
    // The default bound, not the harness's "any past".
    let server = TestServer::start(Settings {
        max_event_age_seconds: Some(riskgate::config::DEFAULT_MAX_EVENT_AGE_SECONDS),
        ..Settings::default()
    })
    .await;
    let old = "2024-01-01T00:00:00Z";
    let recent = (chrono::Utc::now() - chrono::Duration::minutes(50)).to_rfc3339();
    let (status, json) = server
        .post(
            "/v1/evaluate",
            &json!({"user_id": "a", "ip": LONDON, "timestamp": old}),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["field"], "timestamp", "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("RISKGATE_MAX_EVENT_AGE_SECONDS"),
        "{json}"
    );
    let (status, json) = server
        .post(
            "/v1/events",
            &json!({"type": "login_failed", "user_id": "a", "ip": LONDON, "timestamp": old}),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["field"], "timestamp", "{json}");
    let (status, json) = server
        .post(
            "/v1/evaluate",
            &json!({"user_id": "a", "ip": LONDON, "timestamp": recent}),
        )
        .await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error() {
    let server = TestServer::default().await;
    let long_user = "u".repeat(300);
    let cases = [
        (
            r#"{"user_id": "a", "ip": "#.to_owned(),
            400,
            "malformed_json",
            None,
        ),
        (
            r#"{"ip": "81.2.69.10"}"#.to_owned(),
            400,
            "invalid_field",
            Some("user_id"),
        ),
        (
            r#"{"user_id": "a", "ip": "81.2.69.300"}"#.to_owned(),
            400,
            "invalid_field",
            Some("ip"),
        ),
        (
            r#"{"user_id": "", "ip": "81.2.69.10"}"#.to_owned(),
            400,
            "invalid_field",
            Some("user_id"),
        ),
        (
            format!(r#"{{"user_id": "{long_user}", "ip": "81.2.69.10"}}"#),
            400,
            "invalid_field",
            Some("user_id"),
        ),
        (
            r#"{"user_id": "a", "ip": "81.2.69.10", "timestamp": "soon"}"#.to_owned(),
            400,
            "invalid_field",
            Some("timestamp"),
        ),
        (
            r#"{"user_id": "a", "ip": "81.2.69.10", "password_ok": "yes"}"#.to_owned(),
            400,
            "invalid_field",
            Some("password_ok"),
        ),
        (
            r#"{"user_id": "a", "ip": "81.2.69.10", "timestamp": "2099-01-01T00:00:00Z"}"#
                .to_owned(),
            400,
            "invalid_field",
            Some("timestamp"),
        ),
        (
            json!({"user_id": "a", "ip": LONDON, "attributes": {"note": "x".repeat(5000)}})
                .to_string(),
            400,
            "invalid_field",
            Some("attributes"),
        ),
        (
            json!({"user_id": "a", "ip": LONDON, "attributes": {"a": [[[[["deep"]]]]]}})
                .to_string(),
            400,
            "invalid_field",
            Some("attributes"),
        ),
        (
            json!({"user_id": "a", "ip": LONDON, "attributes": {"a": (0..600).collect::<Vec<u32>>()}})
                .to_string(),
            400,
            "invalid_field",
            Some("attributes"),
        ),
    ];
    for (body, status, code, field) in cases {
        let response = server
            .client
            .post(server.url("/v1/evaluate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], code, "{body}: {json}");
        assert!(!json["message"].as_str().unwrap().is_empty());
        if let Some(field) = field {
            assert_eq!(json["field"], field, "{body}: {json}");
            assert!(json["message"].as_str().unwrap().contains(field), "{json}");
        }
    }

    let huge = json!({"user_id": "a", "ip": LONDON, "user_agent": "x".repeat(70 * 1024)});
    let (status, json) = server.post("/v1/evaluate", &huge).await;
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["error"], "payload_too_large");

    let response = server
        .client
        .post(server.url("/v1/evaluate"))
        .header("content-type", "text/plain")
        .body(r#"{"user_id": "a", "ip": "81.2.69.10"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["error"], "unsupported_media_type");

    let (status, json) = server
        .post(
            "/v1/events",
            &json!({"type": "password_reset", "user_id": "a"}),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["field"], "type");

    let (status, json) = server.get("/v1/users/%FF").await;
    assert_eq!(
        (status, json["field"].as_str()),
        (400, Some("user_id")),
        "{json}"
    );

    let (status, _) = server.get("/v1/nowhere").await;
    assert_eq!(status, 404);
    let (status, json) = server.get("/v1/evaluate").await;
    assert_eq!(
        (status, json["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, health) = server.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = server.get("/readyz").await;
    assert_eq!((status, ready["geoip"].as_bool()), (200, Some(true)));
}

const CLIENT_KEY: &str = "client-9a4KfQ2mXz7LpT1cWvB3";
const ADMIN_KEY: &str = "admin-Rk8sN2qV5yJ0dH6tGm4E";

#[tokio::test]
async fn api_keys_gate_clients_and_admins() {
    let server = TestServer::start(Settings {
        api_keys: Some(format!("{CLIENT_KEY}:client,{ADMIN_KEY}:admin")),
        ..Settings::default()
    })
    .await;
    let body = json!({"user_id": "gina", "ip": LONDON, "password_ok": true});
    let send = |key: Option<&'static str>, path: &'static str| {
        let mut request = server.client.post(server.url(path)).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(send(None, "/v1/evaluate").await.unwrap().status(), 401);
    assert_eq!(
        send(Some("wrong-key-but-long-enough-1234"), "/v1/evaluate")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send(Some(CLIENT_KEY), "/v1/evaluate")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Some(CLIENT_KEY), "/v1/users/gina/unlock")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send(Some(ADMIN_KEY), "/v1/users/gina/unlock")
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200, "probes need no key");
}

/// User ids shaped like key syntax (Redis hash tags, the key prefix) are ids like any other:
/// locking one touches no other.
async fn crafted_user_ids_keep_their_own_state(backend: &str) {
    let server = TestServer::on(backend).await;
    let crafted = ["{x}", "riskgate:{u:0000000000000000}:l", "x}{"];
    for user in crafted {
        for i in 0..10 {
            let at = format!("2026-11-03T09:01:{i:02}Z");
            let body = Login {
                user,
                ip: CHINA,
                device: "bot",
                at: &at,
                password_ok: Some(false),
                ..Login::default()
            };
            server.evaluate(body.body()).await;
        }
    }
    let plain = server
        .evaluate(
            Login {
                user: "x",
                at: "2026-11-03T09:02:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(plain["decision"], "allow", "{plain}");
    assert_eq!(plain["signals"]["user"]["failures_24h"], 0, "{plain}");
    for user in crafted {
        let path = format!("/v1/users/{}", user.replace('{', "%7B").replace('}', "%7D"));
        let (status, export) = server.get(&path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(export["user_id"], user);
        assert!(export["locked_until"].is_string(), "{export}");
    }
}

async fn admins_export_unlock_and_erase_users(backend: &str) {
    let server = TestServer::on(backend).await;
    server
        .evaluate(
            Login {
                user: "hana",
                ip: LONDON,
                device: "hana-laptop",
                at: "2026-11-03T09:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    for i in 0..10 {
        let at = format!("2026-11-03T09:01:{i:02}Z");
        server
            .evaluate(
                Login {
                    user: "hana",
                    ip: CHINA,
                    device: "bot",
                    ua: FIREFOX_LINUX,
                    at: &at,
                    password_ok: Some(false),
                }
                .body(),
            )
            .await;
    }
    let (status, profile) = server.get("/v1/users/hana").await;
    assert_eq!(status, 200);
    assert_eq!(
        profile["profile"]["known"]["devices"][0]["label"],
        "hana-laptop"
    );
    assert!(profile["locked_until"].is_string());

    let (status, unlocked) = server.post("/v1/users/hana/unlock", &json!({})).await;
    assert_eq!((status, unlocked["unlocked"].as_bool()), (200, Some(true)));
    let (_, profile) = server.get("/v1/users/hana").await;
    assert!(profile["locked_until"].is_null(), "{profile}");
    // The failures that locked her go with the lock, or her next login would lock her again;
    // the IP they came from keeps counting them.
    let next = server
        .evaluate(
            Login {
                user: "hana",
                ip: CHINA,
                device: "hana-phone",
                at: "2026-11-03T09:02:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_ne!(next["decision"], "lock", "{next}");
    assert_eq!(next["signals"]["user"]["failures_15m"], 0, "{next}");
    assert_eq!(next["signals"]["ip"]["failures_10m"], 10, "{next}");

    let deleted = server
        .client
        .delete(server.url("/v1/users/hana"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, body) = server.get("/v1/users/hana").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let again = server
        .client
        .delete(server.url("/v1/users/hana"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn a_broken_policy_never_replaces_the_working_one_and_shadow_reports_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let allow = "fn evaluate(ctx) { #{decision: \"allow\", score: 0.0, reasons: [\"v1\"]} }";
    let strict = "fn evaluate(ctx) { #{decision: \"mfa\", score: 0.5, reasons: [\"strict\"]} }";
    std::fs::write(dir.path().join("default.rhai"), allow).unwrap();
    std::fs::write(dir.path().join("strict.rhai"), strict).unwrap();
    let server = TestServer::start(Settings {
        policies_dir: Some(dir.path().to_owned()),
        shadow_policy: Some("strict".into()),
        ..Settings::default()
    })
    .await;
    let body = json!({"user_id": "ivy", "ip": LONDON, "password_ok": true});
    let answer = server.evaluate(body.clone()).await;
    assert_eq!(
        (answer["decision"].as_str(), reasons(&answer)),
        (Some("allow"), vec!["v1".to_owned()])
    );
    assert_eq!(answer["shadow"]["decision"], "mfa", "{answer}");
    assert_eq!(answer["shadow"]["policy"]["name"], "strict");
    let (_, listed) = server.get("/v1/policies").await;
    assert_eq!(listed["active"]["name"], "default");
    assert_eq!(listed["shadow"]["name"], "strict");
    let old_version = listed["active"]["version"].clone();

    std::fs::write(
        dir.path().join("default.rhai"),
        "fn evaluate(ctx) { #{ decision: }",
    )
    .unwrap();
    let (status, refused) = server.post("/v1/policies/reload", &json!({})).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (422, Some("policy_rejected"))
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("default.rhai:1:"),
        "{refused}"
    );
    let still = server.evaluate(body.clone()).await;
    assert_eq!(
        still["policy"]["version"], old_version,
        "the working policy stays"
    );

    std::fs::write(dir.path().join("default.rhai"), allow.replace("v1", "v2")).unwrap();
    let (status, reloaded) = server.post("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, 200, "{reloaded}");
    let fresh = server.evaluate(body).await;
    assert_eq!(reasons(&fresh), ["v2"]);
    assert_ne!(fresh["policy"]["version"], old_version);
}

async fn trusting_or_passing_mfa_before_the_password_never_teaches_an_unverified_device(
    backend: &str,
) {
    let server = TestServer::on(backend).await;
    server
        .evaluate(
            Login {
                user: "jo",
                ip: LONDON,
                device: "jo-laptop",
                at: "2026-11-03T09:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    // "Remember this device" for a device that never completed a login changes nothing.
    let trusted = server
        .event(json!({"type": "device_trusted", "user_id": "jo", "device_id": "evil"}))
        .await;
    assert_eq!(trusted["recorded"], "ignored");
    let known = server
        .event(json!({"type": "device_trusted", "user_id": "jo", "device_id": "jo-laptop"}))
        .await;
    assert_eq!(known["recorded"], "device_trusted");

    // Pre-auth, step-up passed, then the password turns out wrong: a failure, nothing learned.
    let pre = server
        .evaluate(
            Login {
                user: "jo",
                ip: CHINA,
                device: "evil",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T10:00:00Z",
                password_ok: None,
            }
            .body(),
        )
        .await;
    let id = pre["request_id"].clone();
    let at = "2026-11-03T10:00:10Z";
    let mfa = server
        .event(json!({"type": "mfa_passed", "user_id": "jo", "request_id": id, "timestamp": at}))
        .await;
    assert_eq!(mfa["recorded"], "awaiting_password");
    let failed = server
        .event(json!({"type": "login_failed", "user_id": "jo", "request_id": id, "timestamp": at}))
        .await;
    assert_eq!(failed["recorded"], "failure_counted");
    let after = server
        .evaluate(
            Login {
                user: "jo",
                ip: CHINA,
                device: "evil",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T10:01:00Z",
                password_ok: None,
            }
            .body(),
        )
        .await;
    assert_eq!(after["signals"]["device"]["known"], false);
    assert_eq!(after["signals"]["user"]["failures_15m"], 1);

    // Events that stand alone must say where they came from.
    let (status, body) = server
        .post(
            "/v1/events",
            &json!({"type": "login_succeeded", "user_id": "jo"}),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("ip")));
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_cannot_hold_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Settings {
        header_timeout_seconds: Some(1),
        body_timeout_seconds: Some(1),
        shutdown_seconds: Some(1),
        ..Settings::default()
    })
    .await;
    // 300 requests whose headers never finish, and 20 whose bodies never do.
    let mut half_sent = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST /v1/evaluate HTTP/1.1\r\nhost: riskgate\r\ncontent-ty")
            .await
            .unwrap();
        half_sent.push(stream);
    }
    let mut slow_bodies = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(
                b"POST /v1/evaluate HTTP/1.1\r\nhost: riskgate\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user_id\"",
            )
            .await
            .unwrap();
        slow_bodies.push(stream);
    }
    // The service answers throughout.
    for _ in 0..5 {
        let health = server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Every one of them is cut off after its timeout: the server closes the connection (a
    // slow body may get an error answer first).
    let cut_off = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "still open after 10 s");
        String::from_utf8_lossy(&answer).into_owned()
    };
    for stream in half_sent {
        let answer = cut_off(stream).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer}"
        );
    }
    for stream in slow_bodies {
        let answer = cut_off(stream).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer}"
        );
    }
    drop(server);
    // A client still dribbling a body cannot hold shutdown past its deadline.
    let mut server = TestServer::start(Settings {
        body_timeout_seconds: Some(60),
        shutdown_seconds: Some(1),
        ..Settings::default()
    })
    .await;
    let mut dribbling = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    dribbling
        .write_all(b"POST /v1/evaluate HTTP/1.1\r\nhost: riskgate\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), server.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited past its deadline");
    drop(dribbling);
}

#[tokio::test]
async fn without_geoip_the_home_network_is_its_prefix_and_smart_lockout_still_works() {
    let server = TestServer::start(Settings {
        geoip_city: Some(String::new()),
        geoip_asn: Some(String::new()),
        ..Settings::default()
    })
    .await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["geoip"], false, "{ready}");
    let answers = bob_at_home_then_ten_wrong_passwords(&server).await;
    assert_eq!(answers[9]["decision"], "lock", "{}", answers[9]);
    // Bob, on his laptop, from another address in his home /24 (a dynamic IP).
    let real = server
        .evaluate(
            Login {
                user: "bob",
                ip: "81.2.69.77",
                device: "bob-laptop",
                at: "2026-11-03T10:03:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(
        real["decision"], "mfa",
        "smart lockout without GeoIP: {real}"
    );
    assert!(reasons(&real).contains(&"known_device_and_network".into()));
    // The attacker, with the right password now, on a new device from elsewhere: still locked.
    let attacker = server
        .evaluate(
            Login {
                user: "bob",
                ip: CHINA,
                device: "attacker-2",
                ua: FIREFOX_LINUX,
                at: "2026-11-03T10:04:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(attacker["decision"], "lock", "{attacker}");
}

#[tokio::test]
async fn the_decision_log_leaves_out_the_attributes_the_operator_lists() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let mut server = TestServer::start(Settings {
        decision_log: Some(log.clone()),
        decision_log_redact: Some(" token , PHONE ".into()),
        ..Settings::default()
    })
    .await;
    let mut body = Login::default().body();
    body["attributes"] = json!({
        "Token": "s3cret-1",
        "plan": "pro",
        "client": {"phone": "+15550100", "items": [{"TOKEN": "s3cret-2"}]},
    });
    let answer = server.evaluate(body).await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    server.stop().await;
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in ["s3cret-1", "s3cret-2", "+15550100"] {
        assert!(!text.contains(secret), "{secret} is in the log: {text}");
    }
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let attributes = &line["request"]["attributes"];
    assert_eq!(attributes["Token"], "[redacted]");
    assert_eq!(attributes["client"]["phone"], "[redacted]");
    assert_eq!(attributes["client"]["items"][0]["TOKEN"], "[redacted]");
    assert_eq!(attributes["plan"], "pro", "unlisted keys are kept");
}

#[tokio::test]
async fn user_ids_match_exactly_unless_the_operator_asks_to_ignore_case() {
    let login = |user| {
        Login {
            user,
            ..Login::default()
        }
        .body()
    };
    let exact = TestServer::start(Settings::default()).await;
    exact.evaluate(login("alice")).await;
    let other = exact.evaluate(login("Alice")).await;
    assert_eq!(other["signals"]["user"]["first_login"], true, "{other}");

    let insensitive = TestServer::start(Settings {
        user_id_case: Some("insensitive".into()),
        ..Settings::default()
    })
    .await;
    insensitive.evaluate(login("alice")).await;
    let same = insensitive.evaluate(login("ALICE")).await;
    assert_eq!(same["signals"]["user"]["first_login"], false, "{same}");
    assert_eq!(same["signals"]["request"]["user_id"], "alice", "{same}");
    let (status, export) = insensitive.get("/v1/users/Alice").await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["user_id"], "alice");
}
