//! The real `riskgate` binary as a child process, killed when dropped, and an HTTP client
//! for it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ANY_PAST, shipped_policies, write_geoip};

/// `riskgate serve` on `port` with the shipped policies, the test GeoIP files (written into
/// `geo`), timestamps accepted from any past (the tests' stories happen on fixed dates) and
/// `env` on top; nothing else from the environment.
pub(crate) fn serve(env: &[(&str, &str)], geo: &Path, port: u16) -> Command {
    std::fs::create_dir_all(geo).unwrap();
    let (city, asn) = write_geoip(geo);
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("riskgate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RISKGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RISKGATE_POLICIES_DIR", shipped_policies())
        .env("RISKGATE_GEOIP_CITY", city)
        .env("RISKGATE_GEOIP_ASN", asn)
        .env("RISKGATE_MAX_EVENT_AGE_SECONDS", ANY_PAST.to_string())
        .envs(env.iter().copied())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A running server, killed with SIGKILL when dropped (also when a test fails midway).
pub(crate) struct Server(pub Child);

impl Server {
    /// Runs `command` and waits until it listens on `port`.
    pub(crate) fn start(mut command: Command, port: u16) -> Self {
        let mut server = Server(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.0.try_wait().unwrap() {
                panic!("riskgate exited with {status}: {}", server.stderr());
            }
            assert!(Instant::now() < deadline, "riskgate did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Runs `command`, expecting it to exit with an error within a few seconds; returns its
    /// stderr.
    pub(crate) fn refused(mut command: Command) -> String {
        let mut server = Server(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = server.0.try_wait().unwrap() {
                assert!(!status.success(), "it must exit with an error");
                return server.stderr();
            }
            assert!(Instant::now() < deadline, "it serves instead of exiting");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it wrote to stderr (once it has exited).
    fn stderr(&mut self) -> String {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
        }
        stderr
    }

    /// `kill -9`: no shutdown, no flush.
    pub(crate) fn kill_9(mut self) {
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

/// A loopback port nothing listens on.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client of one server.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the server on `port`, keeping connections alive.
    pub(crate) fn new(port: u16) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A client of whatever server is on `port`: a new connection per request, as the
    /// server behind the port may be killed and restarted.
    pub(crate) fn reconnecting(port: u16) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            ..Self::new(port)
        }
    }

    /// POSTs `body` to `/v1/evaluate` and expects 200.
    pub(crate) async fn evaluate(&self, body: Value) -> Value {
        let (status, answer) = self
            .send(reqwest::Method::POST, "/v1/evaluate", Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// POSTs `body` to `/v1/events` and expects 200.
    pub(crate) async fn event(&self, body: Value) -> Value {
        let (status, answer) = self
            .send(reqwest::Method::POST, "/v1/events", Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Sends a request; returns the status and the JSON body (`Null` when there is none).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The status of a request without a body.
    pub(crate) async fn status(&self, method: reqwest::Method, path: &str) -> u16 {
        self.send(method, path, None).await.0
    }
}
