//! The embedded backend with the real binary: what was acknowledged survives `kill -9`, an
//! erasure too, and a second process on the same data directory is refused.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed run"
)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// `riskgate serve` on the embedded backend in `data`, with the test GeoIP files in `geo`.
fn serve(data: &Path, geo: &Path, port: u16) -> Command {
    let (city, asn) = write_geoip(geo);
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("riskgate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RISKGATE_STATE_BACKEND", "embedded")
        .env("RISKGATE_DATA_DIR", data)
        .env("RISKGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RISKGATE_POLICIES_DIR", shipped_policies())
        .env("RISKGATE_GEOIP_CITY", city)
        .env("RISKGATE_GEOIP_ASN", asn)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A running server, killed with SIGKILL when dropped (also when a test fails midway).
struct Server(Child);

impl Server {
    /// `kill -9`: no shutdown, no flush.
    fn kill_9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path, geo: &Path, port: u16) -> Server {
    let server = Server(serve(data, geo, port).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "riskgate did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Runs a second server on `data` and returns its stderr once it has exited; fails if it is
/// still serving after a few seconds.
fn refused(data: &Path, geo: &Path) -> String {
    let mut second = Server(serve(data, geo, free_port()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            assert!(
                !status.success(),
                "a second process must exit with an error"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a second process serves the same directory"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn evaluate(&self, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/evaluate", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn status(&self, method: reqwest::Method, path: &str) -> u16 {
        let url = format!("{}{path}", self.base);
        let response = self.http.request(method, url).send().await.unwrap();
        response.status().as_u16()
    }
}

fn login(user: &str, ip: &str, device: &str, at: &str, password_ok: bool) -> Value {
    json!({"user_id": user, "ip": ip, "device_id": device, "user_agent": CHROME_WIN,
           "timestamp": at, "password_ok": password_ok})
}

#[tokio::test]
async fn acknowledged_state_survives_kill_9_and_a_second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, geo) = (dir.path().join("data"), dir.path().join("geo"));
    std::fs::create_dir_all(&geo).unwrap();
    let port = free_port();
    let client = Client {
        // No kept-alive connections: the server behind the port is killed and restarted.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };

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
    let stderr = refused(&data, &geo);
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
