//! Shared test fixtures: tiny GeoIP databases written with mmdb-writer, and a real server on
//! an ephemeral loopback port.
#![allow(dead_code, reason = "each test binary uses its own subset")]

pub(crate) mod process;
pub(crate) mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mmdb_writer::{Value, Writer};
use riskgate::config::Settings;
use serde_json::{Value as Json, json};
use tokio::sync::oneshot;

/// Runs each listed test once per state backend, as `<backend>::<test>`: the API behaves the
/// same whichever backend keeps the state.
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $test() {
                super::$test("memory").await
            })*
        }
        mod embedded {
            $(#[tokio::test]
            async fn $test() {
                super::$test("embedded").await
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $test() {
                super::$test("redis").await
            })*
        }
    };
}

/// A city in the test GeoIP databases.
pub(crate) struct Place {
    pub net: &'static str,
    pub country: &'static str,
    pub city: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub asn: u32,
    pub org: &'static str,
}

/// The networks the test databases know. IPs: first address of each net + 10.
pub(crate) const PLACES: &[Place] = &[
    Place {
        net: "81.2.69.0/24",
        country: "GB",
        city: "London",
        lat: 51.5142,
        lon: -0.0931,
        asn: 20712,
        org: "Andrews & Arnold Ltd",
    },
    Place {
        net: "81.2.70.0/24",
        country: "GB",
        city: "London",
        lat: 51.5142,
        lon: -0.0931,
        asn: 20712,
        org: "Andrews & Arnold Ltd",
    },
    Place {
        net: "89.160.20.0/24",
        country: "SE",
        city: "Linköping",
        lat: 58.4167,
        lon: 15.6167,
        asn: 29518,
        org: "Bredband2 AB",
    },
    Place {
        net: "216.160.83.0/24",
        country: "US",
        city: "Milton",
        lat: 47.2513,
        lon: -122.3149,
        asn: 209,
        org: "CenturyLink",
    },
    Place {
        net: "175.16.199.0/24",
        country: "CN",
        city: "Changchun",
        lat: 43.88,
        lon: 125.3228,
        asn: 4837,
        org: "China Unicom",
    },
    Place {
        net: "3.80.0.0/16",
        country: "US",
        city: "Ashburn",
        lat: 39.0437,
        lon: -77.4875,
        asn: 16509,
        org: "Amazon.com, Inc.",
    },
    Place {
        net: "2a02:8100::/32",
        country: "DE",
        city: "Berlin",
        lat: 52.52,
        lon: 13.405,
        asn: 3320,
        org: "Deutsche Telekom AG",
    },
];

/// London home IP.
pub(crate) const LONDON: &str = "81.2.69.10";
/// A second London IP on the same network.
pub(crate) const LONDON_2: &str = "81.2.70.10";
/// Linköping, Sweden (~1,450 km from London).
pub(crate) const SWEDEN: &str = "89.160.20.10";
/// Milton, WA, USA (~7,700 km from London).
pub(crate) const SEATTLE: &str = "216.160.83.10";
/// Changchun, China.
pub(crate) const CHINA: &str = "175.16.199.10";
/// AWS us-east-1 (on the hosting list).
pub(crate) const AWS: &str = "3.80.1.10";

pub(crate) const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
pub(crate) const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

fn names(en: &str) -> Value {
    Value::map([("names", Value::map([("en", Value::from(en))]))])
}

/// Writes a GeoIP2-schema City database and a GeoLite2-ASN-style database into `dir`.
pub(crate) fn write_geoip(dir: &Path) -> (PathBuf, PathBuf) {
    let mut city = Writer::new("GeoIP2-City");
    let mut asn = Writer::new("GeoLite2-ASN");
    for p in PLACES {
        let net: ipnet::IpNet = p.net.parse().unwrap();
        let record = Value::map([
            ("city", names(p.city)),
            (
                "country",
                Value::map([("iso_code", Value::from(p.country))]),
            ),
            (
                "location",
                Value::map([
                    ("latitude", Value::Double(p.lat)),
                    ("longitude", Value::Double(p.lon)),
                    ("accuracy_radius", Value::U16(20)),
                ]),
            ),
        ]);
        city.insert_value(net, record).unwrap();
        let record = Value::map([
            ("autonomous_system_number", Value::U32(p.asn)),
            ("autonomous_system_organization", Value::from(p.org)),
        ]);
        asn.insert_value(net, record).unwrap();
    }
    let city_path = dir.join("test-city.mmdb");
    let asn_path = dir.join("test-asn.mmdb");
    std::fs::write(&city_path, city.to_bytes().unwrap()).unwrap();
    std::fs::write(&asn_path, asn.to_bytes().unwrap()).unwrap();
    (city_path, asn_path)
}

/// The policies shipped in the repository.
pub(crate) fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// `RISKGATE_MAX_EVENT_AGE_SECONDS` for servers whose tests replay stories on fixed dates:
/// about thirty years.
pub(crate) const ANY_PAST: u64 = 1_000_000_000;

/// A riskgate server on 127.0.0.1:0, stopped when dropped.
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The settings the server runs with (GeoIP files, policies...).
    pub settings: Settings,
    _dir: tempfile::TempDir,
    /// The Redis of the `redis` backend, stopped after the server.
    _redis: Option<redis::RedisServer>,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with test GeoIP data, the shipped policies, timestamps accepted from
    /// any past and `settings` on top.
    pub(crate) async fn start(settings: Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (city, asn) = write_geoip(dir.path());
        let settings = settings.or(Settings {
            policies_dir: Some(shipped_policies()),
            geoip_city: Some(city.display().to_string()),
            geoip_asn: Some(asn.display().to_string()),
            data_dir: Some(dir.path().join("data")),
            max_event_age_seconds: Some(ANY_PAST),
            ..Settings::default()
        });
        let config = settings.clone().resolve().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            riskgate::service::serve(listener, config, shutdown)
                .await
                .unwrap();
        });
        Self {
            addr,
            client: reqwest::Client::new(),
            settings,
            _dir: dir,
            _redis: None,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// Stops serving and waits until the server is done, decision log written (the GeoIP
    /// files stay until the value is dropped).
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap();
        }
    }

    /// Starts a server keeping its state on `backend` (`RISKGATE_STATE_BACKEND`); for
    /// `redis`, on a `redis-server` of its own.
    pub(crate) async fn on(backend: &str) -> Self {
        let redis = (backend == "redis").then(redis::RedisServer::start);
        let mut server = Self::start(Settings {
            state_backend: Some(backend.into()),
            redis_url: redis.as_ref().map(redis::RedisServer::url),
            ..Settings::default()
        })
        .await;
        server._redis = redis;
        server
    }

    /// Starts a server with defaults.
    pub(crate) async fn default() -> Self {
        Self::start(Settings::default()).await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs JSON and returns the status and JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Json) -> (u16, Json) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    /// POSTs to /v1/evaluate and expects 200.
    pub(crate) async fn evaluate(&self, body: Json) -> Json {
        let (status, answer) = self.post("/v1/evaluate", &body).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// POSTs to /v1/events and expects 200.
    pub(crate) async fn event(&self, body: Json) -> Json {
        let (status, answer) = self.post("/v1/events", &body).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// GETs a path and returns the status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Json) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A login attempt for `POST /v1/evaluate`; unnamed fields keep their defaults: alice on her
/// laptop (Chrome on Windows) in London, with the right password.
#[derive(Debug, Clone)]
pub(crate) struct Login<'a> {
    pub user: &'a str,
    pub ip: &'a str,
    pub device: &'a str,
    pub ua: &'a str,
    /// RFC 3339 event time.
    pub at: &'a str,
    /// `None` for a pre-auth check.
    pub password_ok: Option<bool>,
}

impl Default for Login<'_> {
    fn default() -> Self {
        Self {
            user: "alice",
            ip: LONDON,
            device: "laptop",
            ua: CHROME_WIN,
            at: "2026-11-03T09:00:00Z",
            password_ok: Some(true),
        }
    }
}

impl Login<'_> {
    /// The JSON body.
    pub(crate) fn body(&self) -> Json {
        let mut body = json!({
            "user_id": self.user, "ip": self.ip, "device_id": self.device,
            "user_agent": self.ua, "timestamp": self.at,
        });
        if let Some(ok) = self.password_ok {
            body["password_ok"] = json!(ok);
        }
        body
    }
}

/// The reasons of an answer.
pub(crate) fn reasons(answer: &Json) -> Vec<String> {
    answer["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The same-run reference for benchmarks on a shared, noisy machine: one uncached woothee
/// parse, 0.55–0.93 µs on a quiet 2-vCPU machine of the kind CI runs on (the README's
/// Performance section). Divide a figure by this baseline's slowdown to compare it with a
/// target; `when` tells apart measurements taken before and after a long benchmark, as the
/// host's speed drifts over minutes.
pub(crate) fn bench_host_baseline(c: &mut criterion::Criterion, when: &str) {
    let woothee = woothee::parser::Parser::new();
    c.bench_function(&format!("baseline/woothee_uncached/{when}"), |b| {
        b.iter(|| std::hint::black_box(woothee.parse(std::hint::black_box(CHROME_WIN))))
    });
}
