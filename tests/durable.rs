//! The embedded backend with the real binary: what was acknowledged survives `kill -9`, an
//! erasure too, and a second process on the same data directory is refused.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed run"
)]

mod common;

use std::path::Path;

use common::process::{self, Client, Server, free_port};
use common::*;
use serde_json::{Value, json};

/// `riskgate serve` on the embedded backend in `data`, with the test GeoIP files in `geo`.
fn serve(data: &Path, geo: &Path, port: u16) -> std::process::Command {
    let data = data.to_str().unwrap();
    process::serve(
        &[
            ("RISKGATE_STATE_BACKEND", "embedded"),
            ("RISKGATE_DATA_DIR", data),
        ],
        geo,
        port,
    )
}

fn start(data: &Path, geo: &Path, port: u16) -> Server {
    Server::start(serve(data, geo, port), port)
}

fn login(user: &str, ip: &str, device: &str, at: &str, password_ok: bool) -> Value {
    json!({"user_id": user, "ip": ip, "device_id": device, "user_agent": CHROME_WIN,
           "timestamp": at, "password_ok": password_ok})
}

#[tokio::test]
async fn acknowledged_state_survives_kill_9_and_a_second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, geo) = (dir.path().join("data"), dir.path().join("geo"));
    let port = free_port();
    let client = Client::reconnecting(port);

    let server = start(&data, &geo, port);
    let first = client
        .evaluate(login(
            "alice",
            LONDON,
            "laptop",
            "2026-11-02T08:00:00Z",
            true,
        ))
        .await;
    assert_eq!(first["decision"], "allow", "{first}");
    for i in 0..10 {
        let at = format!("2026-11-03T10:00:{i:02}Z");
        client
            .evaluate(login("bob", CHINA, "bot", &at, false))
            .await;
    }
    // 400 first logins, ten seconds apart so the IP's velocity stays normal.
    let start_at: chrono::DateTime<chrono::Utc> = "2026-11-03T11:00:00Z".parse().unwrap();
    for i in 0..400 {
        let at = (start_at + chrono::Duration::seconds(10 * i)).to_rfc3339();
        let answer = client
            .evaluate(login(&format!("user{i}"), LONDON_2, "pc", &at, true))
            .await;
        assert_eq!(answer["decision"], "allow", "{answer}");
    }
    assert_eq!(
        client
            .status(reqwest::Method::DELETE, "/v1/users/user0")
            .await,
        204
    );

    // A second process on the same directory is refused, clearly, while the first runs.
    let stderr = Server::refused(serve(&data, &geo, free_port()));
    assert!(
        stderr.contains("in use by another riskgate process"),
        "{stderr}"
    );

    server.kill_9();
    let server = start(&data, &geo, port);

    let again = client
        .evaluate(login(
            "alice",
            LONDON,
            "laptop",
            "2026-11-04T08:00:00Z",
            true,
        ))
        .await;
    assert_eq!(again["signals"]["device"]["known"], true, "{again}");
    assert_eq!(again["signals"]["user"]["first_login"], false);
    let bob = client
        .evaluate(login("bob", CHINA, "bot", "2026-11-03T10:05:00Z", true))
        .await;
    assert_eq!(bob["signals"]["user"]["locked"], true, "{bob}");
    assert_eq!(bob["decision"], "lock");
    for i in 1..400 {
        let path = format!("/v1/users/user{i}");
        assert_eq!(
            client.status(reqwest::Method::GET, &path).await,
            200,
            "{path}"
        );
    }
    assert_eq!(
        client.status(reqwest::Method::GET, "/v1/users/user0").await,
        404,
        "the erasure survived the restart"
    );
    server.kill_9();
}
