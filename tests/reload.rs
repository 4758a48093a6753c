//! Hot reload: a running server watches its policies directory and activates a change only
//! when every script and list compiles and every case in `tests/` passes.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use riskgate::config::Settings;
use serde_json::{Value as Json, json};

/// A policy allowing every login with `reason`.
fn allowing(reason: &str) -> String {
    format!("fn evaluate(ctx) {{ #{{decision: \"allow\", score: 0.0, reasons: [\"{reason}\"]}} }}")
}

/// Cases expecting the policy to allow with `reason`.
fn cases_expecting(reason: &str) -> String {
    format!(
        "[[case]]\nname = \"allows with {reason}\"\nctx = {{}}\n\
         expect = {{ decision = \"allow\", reasons = [\"{reason}\"] }}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A server answering with the policies of `dir`, which it watches.
async fn serving(dir: &Path) -> TestServer {
    TestServer::start(Settings {
        policies_dir: Some(dir.to_owned()),
        ..Settings::default()
    })
    .await
}

/// Polls `GET /v1/policies` until `done` holds, for at most two seconds.
async fn policies_once(server: &TestServer, done: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, listed) = server.get("/v1/policies").await;
        assert_eq!(status, 200);
        if done(&listed) {
            return listed;
        }
        assert!(Instant::now() < deadline, "not within 2 s: {listed}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for a refused reload later than `after` (the previous refusal's time, or null).
async fn next_rejection(server: &TestServer, after: &Json) -> Json {
    let listed = policies_once(server, |l| {
        !l["last_rejected"].is_null() && l["last_rejected"]["at"] != after["at"]
    })
    .await;
    listed["last_rejected"].clone()
}

#[tokio::test]
async fn a_watched_directory_activates_only_changes_that_compile_and_pass_their_cases() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "default.rhai", &allowing("v1"));
    write(dir, "tests/default.toml", &cases_expecting("v1"));
    write(dir, "lists/blocklist.txt", "192.0.2.0/24\n");
    let server = serving(dir).await;
    let login = json!({"user_id": "rae", "ip": LONDON, "password_ok": true});
    let v1 = server.evaluate(login.clone()).await;
    assert_eq!(reasons(&v1), ["v1"]);
    let (_, listed) = server.get("/v1/policies").await;
    assert!(listed["loaded_at"].is_string(), "{listed}");
    assert!(listed["last_rejected"].is_null(), "{listed}");
    let version = listed["active"]["version"].clone();
    let unchanged = || async {
        let answer = server.evaluate(login.clone()).await;
        assert_eq!(reasons(&answer), ["v1"], "{answer}");
        assert_eq!(answer["policy"]["version"], version);
    };

    // A script that does not compile.
    write(dir, "default.rhai", "fn evaluate(ctx) { #{ decision: }");
    let rejected = next_rejection(&server, &Json::Null).await;
    assert!(
        rejected["file"].as_str().unwrap().ends_with("default.rhai"),
        "{rejected}"
    );
    assert!(
        rejected["error"]
            .as_str()
            .unwrap()
            .contains("default.rhai:1:"),
        "{rejected}"
    );
    unchanged().await;

    // A script that compiles but fails its own cases.
    write(dir, "default.rhai", &allowing("v2"));
    let failed = next_rejection(&server, &rejected).await;
    assert!(
        failed["file"]
            .as_str()
            .unwrap()
            .ends_with("tests/default.toml"),
        "{failed}"
    );
    assert!(
        failed["error"].as_str().unwrap().contains("allows with v1"),
        "{failed}"
    );
    unchanged().await;

    // A list with a line that is no address.
    write(dir, "lists/blocklist.txt", "192.0.2.0/24\nnot-an-address\n");
    let bad_list = next_rejection(&server, &failed).await;
    assert!(
        bad_list["file"]
            .as_str()
            .unwrap()
            .ends_with("blocklist.txt"),
        "{bad_list}"
    );
    assert!(
        bad_list["error"].as_str().unwrap().contains(":2:"),
        "{bad_list}"
    );
    unchanged().await;

    // The list mended and the cases brought up to date: the new policy answers within 2 s.
    write(dir, "lists/blocklist.txt", "192.0.2.0/24\n");
    write(dir, "tests/default.toml", &cases_expecting("v2"));
    let written = Instant::now();
    loop {
        let answer = server.evaluate(login.clone()).await;
        if reasons(&answer) == ["v2"] {
            assert_ne!(answer["policy"]["version"], version);
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(2),
            "v2 not answering within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let listed = policies_once(&server, |l| l["active"]["version"] != version).await;
    assert_eq!(
        listed["last_rejected"], bad_list,
        "the last refusal stays on record"
    );
}

#[tokio::test]
async fn an_on_demand_reload_refuses_failing_cases_with_422_and_the_case_named() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "default.rhai", &allowing("v1"));
    let server = serving(dir).await;
    write(dir, "tests/default.toml", &cases_expecting("v0"));
    let (status, refused) = server.post("/v1/policies/reload", &json!({})).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (422, Some("policy_rejected"))
    );
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("allows with v0"), "{message}");
    let answer = server
        .evaluate(json!({"user_id": "sol", "ip": LONDON}))
        .await;
    assert_eq!(reasons(&answer), ["v1"]);
}

#[tokio::test]
async fn an_editors_lock_file_beside_a_policy_does_not_break_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "default.rhai", &allowing("v1"));
    let server = serving(dir).await;
    // Emacs marks a file being edited with a dangling symlink named after it.
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    std::os::unix::fs::symlink("user@host.1234", dir.join(".#default.rhai")).unwrap();
    std::os::unix::fs::symlink("user@host.1234", dir.join("lists/.#hosting.txt")).unwrap();
    write(dir, "default.rhai", &allowing("v2"));
    let (status, reloaded) = server.post("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, 200, "{reloaded}");
    let answer = server
        .evaluate(json!({"user_id": "tam", "ip": LONDON}))
        .await;
    assert_eq!(reasons(&answer), ["v2"]);
}

#[tokio::test]
async fn a_named_pipe_in_the_directory_is_no_policy_and_cannot_hold_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "default.rhai", &allowing("v1"));
    let server = serving(dir).await;
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    for fifo in ["stuck.rhai", "lists/stuck.txt"] {
        let made = std::process::Command::new("mkfifo")
            .arg(dir.join(fifo))
            .status()
            .unwrap();
        assert!(made.success());
    }
    write(dir, "default.rhai", &allowing("v2"));
    let empty = json!({});
    let reload = server.post("/v1/policies/reload", &empty);
    let (status, reloaded) = tokio::time::timeout(Duration::from_secs(5), reload)
        .await
        .expect("a reload reading a named pipe would wait for a writer forever");
    assert_eq!(status, 200, "{reloaded}");
    let answer = server
        .evaluate(json!({"user_id": "uma", "ip": LONDON}))
        .await;
    assert_eq!(reasons(&answer), ["v2"]);
}

#[tokio::test]
async fn cases_whose_histories_would_hold_a_reload_for_minutes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "default.rhai", &allowing("v1"));
    let server = serving(dir).await;
    let step = "{ evaluate = { user_id = \"u{i}\", ip = \"10.0.0.1\", password_ok = false, \
                timestamp = 2026-11-03T10:00:00Z }, repeat = 10000, every_seconds = 1 }";
    let steps = [step; 11].join(",\n  ");
    let case = format!(
        "[[case]]\nname = \"slow\"\nexpect = {{ decision = \"allow\" }}\nhistory = [\n  {steps},\n  \
         {{ evaluate = {{ user_id = \"bob\", ip = \"10.0.0.1\", timestamp = 2026-11-05T10:00:00Z }} }},\n]\n"
    );
    write(dir, "tests/default.toml", &case);
    let started = Instant::now();
    let (status, refused) = server.post("/v1/policies/reload", &json!({})).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("100000"),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused before running"
    );
}
