//! Settings from an optional TOML file, `RISKGATE_*` environment variables and flags.
//!
//! Precedence: flags, then environment, then the file (`riskgate.toml` or `--config`), then
//! the defaults below. [`Settings`] is the one list of settings: serde reads it from the
//! file, front ends fill it from flags and the environment through [`SETTINGS`] and
//! [`Settings::set`], and [`Settings::resolve`] applies defaults and checks values.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use std::time::Duration;

use crate::decision_log::{LogSettings, Redaction};
use crate::engine::{EngineSettings, UserIdCase};
use crate::http::server::ConnectionLimits;
use crate::model::Decision;
use crate::policy::{DEFAULT_POLICY, Limits, MAX_LOCK_SECONDS, Selection};
use crate::signals::TravelLimits;
pub use crate::state::embedded::SyncMode;
use crate::state::memory::Capacity;
use crate::state::redis::{RedisSettings, SyncTimes};

/// Default listen address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Default policies directory.
pub const DEFAULT_POLICIES_DIR: &str = "./policies";
/// Default embedded store directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Directory searched for GeoIP files when none are configured.
pub const DEFAULT_GEOIP_DIR: &str = "geoip";
/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default prefix of Redis keys.
pub const DEFAULT_REDIS_PREFIX: &str = "riskgate:";
/// Default timeout of a state call to Redis, in milliseconds.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 50;
/// Default seconds between two syncs of the global statistics through Redis.
pub const DEFAULT_REDIS_GLOBAL_SYNC_SECONDS: u64 = 10;
/// Days a profile is kept without a successful login.
pub const DEFAULT_PROFILE_RETENTION_DAYS: u64 = 400;
/// How far back, in seconds, the live API accepts a timestamp.
pub const DEFAULT_MAX_EVENT_AGE_SECONDS: u64 = 3600;
/// The file read when present and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "riskgate.toml";

/// Errors in configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("config file `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting has an invalid value.
    #[error("setting `{key}`: {message}")]
    Invalid {
        /// The setting (environment variable name).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// [`Settings::set`] was given a name that is not a setting.
    #[error("no setting is named `{0}`")]
    Unknown(String),
}

/// One setting as front ends offer it: a flag, an environment variable, a help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingInfo {
    /// The field and file key; with `-` for `_`, the flag name.
    pub key: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// What it sets, with its default.
    pub help: &'static str,
    /// Its value is a secret, never to be shown.
    pub secret: bool,
}

/// Declares [`Settings`], [`SETTINGS`] and [`Settings::set`] from one list, so a setting's
/// field, file key, flag, environment variable and help cannot drift apart.
macro_rules! settings {
    (@secret) => { false };
    (@secret secret) => { true };
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $env:literal $(, $secret:ident)?;
    )*) => {
        /// Every setting, each optional until [`Settings::resolve`] fills the defaults.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $( $(#[doc = $doc])* pub $field: Option<$ty>, )*
            /// App name to policy name (config file only: `[apps]` table).
            #[serde(default)]
            pub apps: HashMap<String, String>,
        }

        /// Every setting flags and the environment can set, in declaration order.
        pub const SETTINGS: &[SettingInfo] = &[$(SettingInfo {
            key: stringify!($field),
            env: $env,
            help: concat!($($doc, "\n"),*),
            secret: settings!(@secret $($secret)?),
        }),*];

        impl Settings {
            /// Sets the setting named `key` (see [`SETTINGS`]) from text, as a flag or an
            /// environment variable gives it.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
                match key {
                    $(stringify!($field) => self.$field = Some(parse_value($env, value)?),)*
                    _ => return Err(ConfigError::Unknown(key.to_owned())),
                }
                Ok(())
            }

            /// These settings, with the ones they leave unset taken from `fallback`.
            pub fn or(self, fallback: Settings) -> Settings {
                Settings {
                    $($field: self.$field.or(fallback.$field),)*
                    apps: if self.apps.is_empty() { fallback.apps } else { self.apps },
                }
            }
        }
    };
}

settings! {
    /// Address and port to serve on [default: 127.0.0.1:8080].
    listen: SocketAddr = "RISKGATE_LISTEN";
    /// A second address serving only `GET /metrics`, without API keys, for a Prometheus
    /// scraper (unset: `/metrics` is served on the main address to admin keys).
    metrics_listen: SocketAddr = "RISKGATE_METRICS_LISTEN";
    /// Directory of the embedded durable store [default: ./data].
    data_dir: PathBuf = "RISKGATE_DATA_DIR";
    /// Directory with the policies and `lists/` [default: ./policies].
    policies_dir: PathBuf = "RISKGATE_POLICIES_DIR";
    /// City or Country `.mmdb` files, comma-separated (e.g. separate IPv4 and IPv6 files)
    /// [default: `*city*.mmdb` / `*country*.mmdb` in ./geoip].
    geoip_city: String = "RISKGATE_GEOIP_CITY";
    /// ASN `.mmdb` or ip-location-db `.csv` files, comma-separated
    /// [default: `*asn*.mmdb` / `*asn*.csv` in ./geoip].
    geoip_asn: String = "RISKGATE_GEOIP_ASN";
    /// State backend: `embedded` (durable, in the data directory), `redis` (shared by
    /// replicas) or `memory` (lost on restart; replay always uses it) [default: embedded].
    state_backend: String = "RISKGATE_STATE_BACKEND";
    /// When the embedded state is synced to the disk: `always` (before each answer),
    /// `everysec` or `no` (left to the OS); every answer's changes reach the OS before it
    /// leaves, whatever this says [default: everysec].
    state_sync: SyncMode = "RISKGATE_STATE_SYNC";
    /// Redis for the `redis` backend: one URL, or a cluster's seed nodes separated by commas
    /// (a cluster is recognised by itself) [default: redis://127.0.0.1:6379].
    redis_url: String = "RISKGATE_REDIS_URL", secret;
    /// Put in front of every Redis key, so several deployments can share one Redis
    /// [default: riskgate:].
    redis_prefix: String = "RISKGATE_REDIS_PREFIX";
    /// Milliseconds a state call to Redis may take before the answer is the fail-safe
    /// decision with reason `state_unavailable` [default: 50].
    redis_timeout_ms: u64 = "RISKGATE_REDIS_TIMEOUT_MS";
    /// Seconds between two exchanges of the global statistics (how common each login
    /// feature is) between replicas through Redis, 1 to 3600 [default: 10].
    redis_global_sync_seconds: u64 = "RISKGATE_REDIS_GLOBAL_SYNC_SECONDS";
    /// API keys as `key:role,key:role` (roles `client`, `admin`); unset: loopback clients only.
    api_keys: String = "RISKGATE_API_KEYS", secret;
    /// Seconds a request's headers may take to arrive; also how long an idle keep-alive
    /// connection stays open [default: 10].
    header_timeout_seconds: u64 = "RISKGATE_HEADER_TIMEOUT_SECONDS";
    /// Seconds a request's body may take to arrive [default: 10].
    body_timeout_seconds: u64 = "RISKGATE_BODY_TIMEOUT_SECONDS";
    /// Connections open at once; more wait to be accepted [default: 4096].
    max_connections: usize = "RISKGATE_MAX_CONNECTIONS";
    /// Seconds shutdown waits for open requests before closing their connections
    /// [default: 10].
    shutdown_seconds: u64 = "RISKGATE_SHUTDOWN_SECONDS";
    /// Serve without API keys on an address that is not loopback (only loopback clients are
    /// served then; behind a reverse proxy on the same host, every client is one)
    /// [default: false].
    allow_no_keys: bool = "RISKGATE_ALLOW_NO_KEYS";
    /// Append one JSON line per evaluation and event to this file (unset: off).
    decision_log: PathBuf = "RISKGATE_DECISION_LOG";
    /// Rotate the decision log at this size in bytes [default: 268435456].
    decision_log_max_bytes: u64 = "RISKGATE_DECISION_LOG_MAX_BYTES";
    /// Attribute keys whose values the decision log replaces with `"[redacted]"`,
    /// comma-separated, matched case-insensitively at any depth (unset: none).
    decision_log_redact: String = "RISKGATE_DECISION_LOG_REDACT";
    /// Policy used when no app mapping applies [default: default].
    policy: String = "RISKGATE_POLICY";
    /// Policy run beside the active one, report only.
    shadow_policy: String = "RISKGATE_SHADOW_POLICY";
    /// Decision when a policy fails or exceeds its limits: allow, mfa or lock [default: mfa].
    fail_safe: String = "RISKGATE_FAIL_SAFE";
    /// Lock duration when a policy locks without `lock_seconds` [default: 900].
    lock_seconds: u64 = "RISKGATE_LOCK_SECONDS";
    /// Rhai operations a policy may run per call [default: 100000].
    policy_max_operations: u64 = "RISKGATE_POLICY_MAX_OPERATIONS";
    /// Evaluations and events timestamped more than this many seconds ago are refused with
    /// 400 (replay reads any time) [default: 3600].
    max_event_age_seconds: u64 = "RISKGATE_MAX_EVENT_AGE_SECONDS";
    /// How user ids are matched: `exact` (byte for byte) or `insensitive` (ignoring case,
    /// for IdPs that pass usernames as typed) [default: exact].
    user_id_case: String = "RISKGATE_USER_ID_CASE";
    /// Major versions a browser may move up between two logins and still be the same device
    /// (browsers update themselves every four weeks or so) [default: 6].
    device_version_jump: u32 = "RISKGATE_DEVICE_VERSION_JUMP";
    /// Travel faster than this (km/h) is impossible [default: 900].
    travel_max_speed_kmh: f64 = "RISKGATE_TRAVEL_MAX_SPEED_KMH";
    /// Travel shorter than this (km) is never flagged [default: 500].
    travel_min_distance_km: f64 = "RISKGATE_TRAVEL_MIN_DISTANCE_KM";
    /// Profiles without a successful login for this many days are deleted [default: 400].
    profile_retention_days: u64 = "RISKGATE_PROFILE_RETENTION_DAYS";
    /// Users with live counters kept in memory [default: 500000].
    max_users: usize = "RISKGATE_MAX_USERS";
    /// Learned profiles kept in memory [default: 200000].
    max_profiles: usize = "RISKGATE_MAX_PROFILES";
    /// IPs with live counters kept in memory [default: 200000].
    max_ips: usize = "RISKGATE_MAX_IPS";
}

/// Parses a setting's text, naming the setting (`env`) when it is invalid.
fn parse_value<T: FromStr>(env: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: Display,
{
    value.parse().map_err(|e| ConfigError::Invalid {
        key: env,
        message: format!("`{value}` is not valid: {e}"),
    })
}

/// The state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Bounded in-process maps.
    Memory,
    /// The same maps in front of a database in the data directory.
    Embedded,
    /// Redis or Redis Cluster, shared by replicas.
    Redis,
}

/// An API key's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// May evaluate attempts and report events.
    Client,
    /// May also manage users and policies.
    Admin,
}

/// Shortest API key accepted: 22 characters carry 128 bits as base64 (`openssl rand -base64
/// 24` makes one of 32).
pub const MIN_API_KEY_LEN: usize = 22;

/// API keys and their roles, kept as SHA-256 digests: a lookup's timing can reveal something
/// about a digest, never about a key.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiKeys(HashMap<[u8; 32], Role>);

impl ApiKeys {
    /// The role of `key`, if it is one.
    pub(crate) fn role(&self, key: &str) -> Option<Role> {
        self.0.get(&digest(key)).copied()
    }

    /// True when no key is configured (loopback clients only).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn digest(key: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes()).into()
}

/// Settings with defaults applied and values checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to serve on.
    pub(crate) listen: SocketAddr,
    /// Where `/metrics` is served on its own, if anywhere.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Embedded store directory.
    pub(crate) data_dir: PathBuf,
    /// Policies directory.
    pub(crate) policies_dir: PathBuf,
    /// City/Country databases.
    pub(crate) geoip_city: Vec<PathBuf>,
    /// ASN databases.
    pub(crate) geoip_asn: Vec<PathBuf>,
    /// State backend.
    pub(crate) backend: Backend,
    /// When the embedded backend syncs to the disk.
    pub(crate) sync: SyncMode,
    /// How to reach Redis.
    pub(crate) redis: RedisSettings,
    /// API keys and their roles; empty means loopback clients only.
    pub(crate) api_keys: ApiKeys,
    /// Whether `serve` may start without keys on an address that is not loopback.
    pub(crate) allow_no_keys: bool,
    /// Connection timeouts and bounds.
    pub(crate) connections: ConnectionLimits,
    /// The decision log, if logging is on.
    pub(crate) decision_log: Option<LogSettings>,
    /// Which policy runs where.
    pub(crate) selection: Selection,
    /// Engine behaviour.
    pub(crate) engine: EngineSettings,
    /// Policy sandbox limits.
    pub(crate) limits: Limits,
    /// In-memory state bounds.
    pub(crate) capacity: Capacity,
    /// Days a profile is kept without a successful login.
    pub(crate) profile_retention_days: u64,
    /// How far back the live API accepts a timestamp.
    pub(crate) max_event_age: chrono::Duration,
}

impl Settings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Layers the config file (the given one, or `riskgate.toml` when present) under these.
    pub fn with_file(self, path: Option<&Path>) -> Result<Settings, ConfigError> {
        let default = Path::new(DEFAULT_CONFIG_FILE);
        match path {
            Some(p) => Ok(self.or(Self::from_file(p)?)),
            None if default.is_file() => Ok(self.or(Self::from_file(default)?)),
            None => Ok(self),
        }
    }

    /// Applies defaults and checks values.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let backend = backend(self.state_backend.as_deref())?;
        let api_keys = parse_api_keys(self.api_keys.as_deref().unwrap_or(""))?;
        let engine = self.engine_settings()?;
        let limits = self.limits()?;
        let max_event_age = self.max_event_age()?;
        let connections = self.connections()?;
        let capacity = self.capacity();
        let redis = self.redis_settings()?;
        let geoip_dir = Path::new(DEFAULT_GEOIP_DIR);
        Ok(Config {
            listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            metrics_listen: self.metrics_listen,
            data_dir: self.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            policies_dir: self
                .policies_dir
                .unwrap_or_else(|| DEFAULT_POLICIES_DIR.into()),
            geoip_city: match self.geoip_city {
                Some(list) => split_paths(&list),
                None => find_files(geoip_dir, &["city", "country"], &["mmdb"]),
            },
            geoip_asn: match self.geoip_asn {
                Some(list) => split_paths(&list),
                None => find_files(geoip_dir, &["asn"], &["mmdb", "csv"]),
            },
            backend,
            sync: self.state_sync.unwrap_or_default(),
            redis,
            api_keys,
            allow_no_keys: self.allow_no_keys.unwrap_or(false),
            connections,
            decision_log: self.decision_log.map(|path| LogSettings {
                path,
                max_bytes: self
                    .decision_log_max_bytes
                    .unwrap_or(crate::decision_log::DEFAULT_MAX_BYTES),
                redact: Redaction::new(self.decision_log_redact.as_deref().unwrap_or("")),
            }),
            selection: Selection {
                default: self.policy.unwrap_or_else(|| DEFAULT_POLICY.to_owned()),
                apps: self.apps,
                shadow: self.shadow_policy.filter(|s| !s.is_empty()),
            },
            engine,
            limits,
            capacity,
            profile_retention_days: match self.profile_retention_days {
                Some(0) => {
                    return Err(ConfigError::Invalid {
                        key: "RISKGATE_PROFILE_RETENTION_DAYS",
                        message: "at least 1 day".into(),
                    });
                }
                Some(days) => days,
                None => DEFAULT_PROFILE_RETENTION_DAYS,
            },
            max_event_age,
        })
    }

    /// Connection timeouts and bounds; none may be zero (a zero timeout refuses every
    /// request, a zero bound every connection).
    fn connections(&self) -> Result<ConnectionLimits, ConfigError> {
        let defaults = ConnectionLimits::default();
        let seconds = |value: Option<u64>, default: Duration, key: &'static str| match value {
            Some(0) => Err(ConfigError::Invalid {
                key,
                message: "at least 1 second".into(),
            }),
            Some(s) => Ok(Duration::from_secs(s)),
            None => Ok(default),
        };
        Ok(ConnectionLimits {
            header_timeout: seconds(
                self.header_timeout_seconds,
                defaults.header_timeout,
                "RISKGATE_HEADER_TIMEOUT_SECONDS",
            )?,
            body_timeout: seconds(
                self.body_timeout_seconds,
                defaults.body_timeout,
                "RISKGATE_BODY_TIMEOUT_SECONDS",
            )?,
            max_connections: match self.max_connections {
                Some(0) => {
                    return Err(ConfigError::Invalid {
                        key: "RISKGATE_MAX_CONNECTIONS",
                        message: "at least 1".into(),
                    });
                }
                Some(n) => n,
                None => defaults.max_connections,
            },
            shutdown_deadline: seconds(
                self.shutdown_seconds,
                defaults.shutdown_deadline,
                "RISKGATE_SHUTDOWN_SECONDS",
            )?,
        })
    }

    /// How far back the live API accepts a timestamp.
    fn max_event_age(&self) -> Result<chrono::Duration, ConfigError> {
        let seconds = self
            .max_event_age_seconds
            .unwrap_or(DEFAULT_MAX_EVENT_AGE_SECONDS);
        i64::try_from(seconds)
            .ok()
            .filter(|&s| s > 0)
            .and_then(chrono::Duration::try_seconds)
            .ok_or_else(|| ConfigError::Invalid {
                key: "RISKGATE_MAX_EVENT_AGE_SECONDS",
                message: format!("between 1 and {} seconds", i64::MAX / 1000),
            })
    }

    /// The Redis URL, key prefix, timeout and global statistics' sync.
    fn redis_settings(&self) -> Result<RedisSettings, ConfigError> {
        let prefix = self
            .redis_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
        if prefix.contains(['{', '}']) {
            return Err(ConfigError::Invalid {
                key: "RISKGATE_REDIS_PREFIX",
                message: "no `{` or `}`: riskgate places the hash tags itself".into(),
            });
        }
        let timeout_ms = self.redis_timeout_ms.unwrap_or(DEFAULT_REDIS_TIMEOUT_MS);
        if !(1..=60_000).contains(&timeout_ms) {
            return Err(ConfigError::Invalid {
                key: "RISKGATE_REDIS_TIMEOUT_MS",
                message: "between 1 and 60000".into(),
            });
        }
        let sync_seconds = self
            .redis_global_sync_seconds
            .unwrap_or(DEFAULT_REDIS_GLOBAL_SYNC_SECONDS);
        if !(1..=3600).contains(&sync_seconds) {
            return Err(ConfigError::Invalid {
                key: "RISKGATE_REDIS_GLOBAL_SYNC_SECONDS",
                message: "between 1 and 3600".into(),
            });
        }
        Ok(RedisSettings {
            url: self
                .redis_url
                .clone()
                .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
            prefix,
            timeout: std::time::Duration::from_millis(timeout_ms),
            global_sync: SyncTimes::every(Duration::from_secs(sync_seconds)),
        })
    }

    /// The fail-safe decision, lock duration and travel limits.
    fn engine_settings(&self) -> Result<EngineSettings, ConfigError> {
        let defaults = EngineSettings::default();
        let fail_safe = match self.fail_safe.as_deref() {
            None => defaults.fail_safe,
            Some(s) => Decision::parse(s).ok_or_else(|| ConfigError::Invalid {
                key: "RISKGATE_FAIL_SAFE",
                message: format!("`{s}` is not one of allow, mfa, lock"),
            })?,
        };
        let user_ids = match self.user_id_case.as_deref() {
            None | Some("exact") => UserIdCase::Exact,
            Some("insensitive") => UserIdCase::Insensitive,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "RISKGATE_USER_ID_CASE",
                    message: format!("`{other}` is not one of exact, insensitive"),
                });
            }
        };
        if self.lock_seconds.is_some_and(|s| s > MAX_LOCK_SECONDS) {
            return Err(ConfigError::Invalid {
                key: "RISKGATE_LOCK_SECONDS",
                message: format!("at most {MAX_LOCK_SECONDS} (a year)"),
            });
        }
        let travel = TravelLimits {
            max_speed_kmh: self
                .travel_max_speed_kmh
                .unwrap_or(defaults.travel.max_speed_kmh),
            min_distance_km: self
                .travel_min_distance_km
                .unwrap_or(defaults.travel.min_distance_km),
        };
        let checks = [
            (
                "RISKGATE_TRAVEL_MAX_SPEED_KMH",
                travel.max_speed_kmh,
                travel.max_speed_kmh > 0.0,
                "above zero",
            ),
            (
                "RISKGATE_TRAVEL_MIN_DISTANCE_KM",
                travel.min_distance_km,
                travel.min_distance_km >= 0.0,
                "not negative",
            ),
        ];
        for (key, value, in_range, range) in checks {
            if !(value.is_finite() && in_range) {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("`{value}` must be a finite number, {range}"),
                });
            }
        }
        Ok(EngineSettings {
            fail_safe,
            default_lock_seconds: self.lock_seconds.unwrap_or(defaults.default_lock_seconds),
            travel,
            user_ids,
            device_version_jump: self
                .device_version_jump
                .unwrap_or(defaults.device_version_jump),
        })
    }

    /// The policy sandbox limits.
    fn limits(&self) -> Result<Limits, ConfigError> {
        let defaults = Limits::default();
        let max_operations = self
            .policy_max_operations
            .unwrap_or(defaults.max_operations);
        // Rhai reads 0 as "no limit", and a looping policy would then hold its request
        // forever.
        if max_operations == 0 {
            return Err(ConfigError::Invalid {
                key: "RISKGATE_POLICY_MAX_OPERATIONS",
                message: "at least 1 (0 would let a looping policy run forever)".into(),
            });
        }
        Ok(Limits {
            max_operations,
            ..defaults
        })
    }

    /// The in-memory state bounds.
    fn capacity(&self) -> Capacity {
        let defaults = Capacity::default();
        Capacity {
            users: self.max_users.unwrap_or(defaults.users),
            profiles: self.max_profiles.unwrap_or(defaults.profiles),
            ips: self.max_ips.unwrap_or(defaults.ips),
            ..defaults
        }
    }
}

/// The state backend named by `RISKGATE_STATE_BACKEND`.
fn backend(name: Option<&str>) -> Result<Backend, ConfigError> {
    match name.unwrap_or("embedded") {
        "memory" => Ok(Backend::Memory),
        "embedded" => Ok(Backend::Embedded),
        "redis" => Ok(Backend::Redis),
        other => Err(ConfigError::Invalid {
            key: "RISKGATE_STATE_BACKEND",
            message: format!("`{other}` is not one of memory, embedded, redis"),
        }),
    }
}

fn split_paths(list: &str) -> Vec<PathBuf> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Files in `dir` whose lowercase name contains one of `names` and ends in one of `exts`.
fn find_files(dir: &Path, names: &[&str], exts: &[&str]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_lowercase();
            let ext = p
                .extension()
                .unwrap_or_default()
                .to_string_lossy()
                .to_lowercase();
            exts.contains(&ext.as_str()) && names.iter().any(|n| name.contains(n))
        })
        .collect();
    found.sort();
    found
}

fn parse_api_keys(list: &str) -> Result<ApiKeys, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "RISKGATE_API_KEYS",
        message,
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (key, role) = entry.rsplit_once(':').unwrap_or((entry, "client"));
            let role = match role {
                "client" => Role::Client,
                "admin" => Role::Admin,
                other => return Err(invalid(format!("unknown role `{other}`"))),
            };
            if key.chars().count() < MIN_API_KEY_LEN {
                return Err(invalid(format!(
                    "keys must be at least {MIN_API_KEY_LEN} characters (128 bits as base64)"
                )));
            }
            Ok((digest(key), role))
        })
        .collect::<Result<_, _>>()
        .map(ApiKeys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_env_win_over_the_file_and_defaults_fill_the_rest() {
        let file: Settings = toml::from_str(
            "listen = \"0.0.0.0:9000\"\npolicy = \"strict\"\n[apps]\npayroll = \"strict\"\n",
        )
        .unwrap();
        let cli = Settings {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Settings::default()
        };
        let config = cli.or(file).resolve().unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.selection.default, "strict");
        assert_eq!(config.selection.apps["payroll"], "strict");
        assert_eq!(config.engine.fail_safe, Decision::Mfa);
        assert_eq!(config.backend, Backend::Embedded);
    }

    #[test]
    fn bad_values_name_their_setting() {
        let bad = Settings {
            fail_safe: Some("maybe".into()),
            ..Settings::default()
        };
        let err = bad.resolve().unwrap_err().to_string();
        assert!(
            err.contains("RISKGATE_FAIL_SAFE") && err.contains("maybe"),
            "{err}"
        );
        let keys =
            parse_api_keys("QYpXh2cN0mGv7TtLw3RkZa1u:admin, client-key-9f3Kd81LmQx2Z").unwrap();
        assert_eq!(keys.role("QYpXh2cN0mGv7TtLw3RkZa1u"), Some(Role::Admin));
        assert_eq!(keys.role("client-key-9f3Kd81LmQx2Z"), Some(Role::Client));
        assert_eq!(keys.role("client-key-9f3Kd81LmQx2"), None);
        // 128 bits at least: a 21-character key is refused.
        assert!(parse_api_keys("QYpXh2cN0mGv7TtLw3RkZ:client").is_err());
        assert!(parse_api_keys("short:client").is_err());
    }

    #[test]
    fn a_policy_operation_limit_of_zero_is_refused() {
        // Rhai reads 0 as unlimited: a looping policy would hang its request.
        let unlimited = Settings {
            policy_max_operations: Some(0),
            ..Settings::default()
        };
        let err = unlimited.resolve().unwrap_err().to_string();
        assert!(err.contains("RISKGATE_POLICY_MAX_OPERATIONS"), "{err}");
        let one = Settings {
            policy_max_operations: Some(1),
            ..Settings::default()
        };
        assert_eq!(one.resolve().unwrap().limits.max_operations, 1);
    }

    #[test]
    fn every_setting_is_settable_by_its_key_and_names_its_variable_when_invalid() {
        let mut settings = Settings::default();
        settings.set("listen", "127.0.0.1:9999").unwrap();
        settings.set("max_users", "42").unwrap();
        assert_eq!(settings.listen.map(|a| a.port()), Some(9999));
        assert_eq!(settings.max_users, Some(42));
        let err = settings.set("max_ips", "lots").unwrap_err().to_string();
        assert!(
            err.contains("RISKGATE_MAX_IPS") && err.contains("lots"),
            "{err}"
        );
        assert!(matches!(
            settings.set("apps", "x"),
            Err(ConfigError::Unknown(_))
        ));
        for info in SETTINGS {
            assert!(info.env.starts_with("RISKGATE_"), "{info:?}");
            assert!(!info.help.trim().is_empty(), "{info:?}");
            let value = if info.key.starts_with("max_") || info.key.ends_with("_bytes") {
                "1"
            } else {
                "127.0.0.1:1"
            };
            let result = Settings::default().set(info.key, value);
            assert!(!matches!(result, Err(ConfigError::Unknown(_))), "{info:?}");
        }
        let secret: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.key)
            .collect();
        assert_eq!(secret, ["redis_url", "api_keys"]);
    }

    #[test]
    fn the_defaults_the_help_states_are_the_defaults_applied() {
        let defaults = format!("{:?}", Settings::default().resolve().unwrap());
        let mut checked = 0;
        for info in SETTINGS {
            let Some((_, rest)) = info.help.split_once("[default: ") else {
                continue;
            };
            let value = rest.split(']').next().unwrap_or_default();
            if value.contains(['`', '*']) {
                continue; // a description of a search, not a value
            }
            let mut settings = Settings::default();
            settings.set(info.key, value).unwrap();
            let applied = format!("{:?}", settings.resolve().unwrap());
            assert_eq!(applied, defaults, "`{}`: the help says {value}", info.key);
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} defaults checked");
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// A number setting: the largest value its type holds, and how to read it back from
        /// [`Settings`] and from the [`Config`] it resolves to.
        #[derive(Debug, Clone, Copy)]
        struct Number<T> {
            key: &'static str,
            max: T,
            given: fn(&Settings) -> Option<T>,
            applied: fn(&Config) -> T,
        }

        /// Every integer setting.
        const INTEGERS: [Number<u64>; 15] = [
            Number {
                key: "redis_timeout_ms",
                max: u64::MAX,
                given: |s| s.redis_timeout_ms,
                applied: |c| u64::try_from(c.redis.timeout.as_millis()).unwrap(),
            },
            Number {
                key: "redis_global_sync_seconds",
                max: u64::MAX,
                given: |s| s.redis_global_sync_seconds,
                applied: |c| c.redis.global_sync.every.as_secs(),
            },
            Number {
                key: "header_timeout_seconds",
                max: u64::MAX,
                given: |s| s.header_timeout_seconds,
                applied: |c| c.connections.header_timeout.as_secs(),
            },
            Number {
                key: "body_timeout_seconds",
                max: u64::MAX,
                given: |s| s.body_timeout_seconds,
                applied: |c| c.connections.body_timeout.as_secs(),
            },
            Number {
                key: "max_connections",
                max: usize::MAX as u64,
                given: |s| s.max_connections.map(|n| n as u64),
                applied: |c| c.connections.max_connections as u64,
            },
            Number {
                key: "shutdown_seconds",
                max: u64::MAX,
                given: |s| s.shutdown_seconds,
                applied: |c| c.connections.shutdown_deadline.as_secs(),
            },
            Number {
                key: "decision_log_max_bytes",
                max: u64::MAX,
                given: |s| s.decision_log_max_bytes,
                applied: |c| c.decision_log.as_ref().unwrap().max_bytes,
            },
            Number {
                key: "lock_seconds",
                max: u64::MAX,
                given: |s| s.lock_seconds,
                applied: |c| c.engine.default_lock_seconds,
            },
            Number {
                key: "policy_max_operations",
                max: u64::MAX,
                given: |s| s.policy_max_operations,
                applied: |c| c.limits.max_operations,
            },
            Number {
                key: "max_event_age_seconds",
                max: u64::MAX,
                given: |s| s.max_event_age_seconds,
                applied: |c| u64::try_from(c.max_event_age.num_seconds()).unwrap(),
            },
            Number {
                key: "device_version_jump",
                max: u32::MAX as u64,
                given: |s| s.device_version_jump.map(u64::from),
                applied: |c| u64::from(c.engine.device_version_jump),
            },
            Number {
                key: "profile_retention_days",
                max: u64::MAX,
                given: |s| s.profile_retention_days,
                applied: |c| c.profile_retention_days,
            },
            Number {
                key: "max_users",
                max: usize::MAX as u64,
                given: |s| s.max_users.map(|n| n as u64),
                applied: |c| c.capacity.users as u64,
            },
            Number {
                key: "max_profiles",
                max: usize::MAX as u64,
                given: |s| s.max_profiles.map(|n| n as u64),
                applied: |c| c.capacity.profiles as u64,
            },
            Number {
                key: "max_ips",
                max: usize::MAX as u64,
                given: |s| s.max_ips.map(|n| n as u64),
                applied: |c| c.capacity.ips as u64,
            },
        ];

        /// Every floating-point setting.
        const FLOATS: [Number<f64>; 2] = [
            Number {
                key: "travel_max_speed_kmh",
                max: f64::INFINITY,
                given: |s| s.travel_max_speed_kmh,
                applied: |c| c.engine.travel.max_speed_kmh,
            },
            Number {
                key: "travel_min_distance_km",
                max: f64::INFINITY,
                given: |s| s.travel_min_distance_km,
                applied: |c| c.engine.travel.min_distance_km,
            },
        ];

        /// Any integer, often one at the edge of a setting's range.
        fn integer() -> impl Strategy<Value = u64> {
            let max_age = i64::MAX as u64 / 1000;
            let edges = vec![
                0,
                1,
                60_000,
                60_001,
                u32::MAX as u64,
                u32::MAX as u64 + 1,
                MAX_LOCK_SECONDS,
                MAX_LOCK_SECONDS + 1,
                max_age,
                max_age + 1,
                i64::MAX as u64,
                i64::MAX as u64 + 1,
                u64::MAX,
            ];
            prop_oneof![prop::sample::select(edges), 0..100_000u64, any::<u64>()]
        }

        /// The same float, NaN being NaN.
        fn same(a: f64, b: f64) -> bool {
            a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan()
        }

        /// Settings with `key` set from `value`, as a flag or the environment sets it, and a
        /// decision log (so its size is applied).
        fn with(key: &str, value: &str) -> Settings {
            let mut settings = Settings {
                decision_log: Some("props.log".into()),
                ..Settings::default()
            };
            settings.set(key, value).unwrap();
            settings
        }

        /// The environment variable of the setting `key`.
        fn env(key: &str) -> &'static str {
            SETTINGS.iter().find(|info| info.key == key).unwrap().env
        }

        /// Resolves settings with `setting` set from `text`: the value must be applied as
        /// `expected` says, or refused with the name of the setting's variable.
        fn applied_or_refused<T>(
            setting: Number<T>,
            text: &str,
            expected: impl Fn(T) -> bool,
        ) -> Result<(), TestCaseError> {
            match with(setting.key, text).resolve() {
                Ok(config) => {
                    let applied = expected((setting.applied)(&config));
                    prop_assert!(applied, "`{}` = {} not applied", setting.key, text);
                }
                Err(ConfigError::Invalid { key, .. }) => prop_assert_eq!(key, env(setting.key)),
                Err(e) => prop_assert!(false, "`{}`: {}", setting.key, e),
            }
            Ok(())
        }

        #[test]
        fn the_number_tables_hold_every_number_setting() {
            let takes = |key: &str, value: &str| Settings::default().set(key, value).is_ok();
            let integers: Vec<&str> = SETTINGS
                .iter()
                .map(|info| info.key)
                .filter(|key| takes(key, "1") && !takes(key, "-1"))
                .collect();
            let floats: Vec<&str> = SETTINGS
                .iter()
                .map(|info| info.key)
                .filter(|key| takes(key, "-1.5") && !takes(key, "x"))
                .collect();
            assert_eq!(integers, INTEGERS.map(|n| n.key));
            assert_eq!(floats, FLOATS.map(|n| n.key));
        }

        proptest! {
            /// From the environment and from the file (TOML integers stop at `i64::MAX`); a
            /// number too large for the setting is refused with the name of its variable.
            #[test]
            fn an_integer_setting_reads_back_the_number_it_was_given(n in integer()) {
                for setting in INTEGERS {
                    let mut settings = Settings::default();
                    match settings.set(setting.key, &n.to_string()) {
                        Ok(()) => prop_assert_eq!((setting.given)(&settings), Some(n)),
                        Err(ConfigError::Invalid { key, .. }) => {
                            prop_assert!(n > setting.max, "`{}` refused {}", setting.key, n);
                            prop_assert_eq!(key, env(setting.key));
                        }
                        Err(e) => prop_assert!(false, "{}", e),
                    }
                    match toml::from_str::<Settings>(&format!("{} = {n}", setting.key)) {
                        Ok(file) => prop_assert_eq!((setting.given)(&file), Some(n)),
                        Err(_) => prop_assert!(n > setting.max.min(i64::MAX as u64)),
                    }
                }
            }

            #[test]
            fn a_float_setting_reads_back_the_number_it_was_given(x in any::<f64>()) {
                let toml = if x.is_nan() { "nan".to_owned() } else { format!("{x:?}") };
                for setting in FLOATS {
                    let given = (setting.given)(&with(setting.key, &x.to_string())).unwrap();
                    prop_assert!(same(given, x), "{} read as {}", x, given);
                    let file: Settings =
                        toml::from_str(&format!("{} = {toml}", setting.key)).unwrap();
                    let given = (setting.given)(&file).unwrap();
                    prop_assert!(same(given, x), "{} read from the file as {}", toml, given);
                }
            }

            /// A number is applied as given, or refused with the name of its variable.
            #[test]
            fn a_resolved_number_is_applied_or_refused_by_name(n in integer(), x in any::<f64>()) {
                for setting in INTEGERS.iter().filter(|setting| n <= setting.max) {
                    applied_or_refused(*setting, &n.to_string(), |applied| applied == n)?;
                }
                for setting in FLOATS {
                    applied_or_refused(setting, &x.to_string(), |applied| same(applied, x))?;
                }
            }

            #[test]
            fn any_text_for_any_setting_is_taken_or_refused_by_name(
                key in prop_oneof![
                    prop::sample::select(SETTINGS).prop_map(|info| info.key.to_owned()),
                    any::<String>(),
                ],
                value in prop_oneof![any::<String>(), "[0-9a-z.:+-]{0,24}"],
            ) {
                match Settings::default().set(&key, &value) {
                    Ok(()) => {}
                    Err(ConfigError::Invalid { key: refused, .. }) => {
                        prop_assert_eq!(refused, env(&key));
                    }
                    Err(ConfigError::Unknown(unknown)) => {
                        prop_assert!(SETTINGS.iter().all(|info| info.key != unknown));
                    }
                    Err(e) => prop_assert!(false, "{}", e),
                }
            }

            /// Files of any text, or of settings with values of any type, are read or refused,
            /// and what is read resolves or is refused.
            #[test]
            fn any_config_file_is_read_and_resolved_or_refused_without_panicking(
                text in prop_oneof![
                    any::<String>(),
                    prop::collection::vec(
                        (
                            prop::sample::select(SETTINGS).prop_map(|info| info.key),
                            prop_oneof![
                                any::<i64>().prop_map(|n| n.to_string()),
                                any::<f64>()
                                    .prop_filter("nan", |x| !x.is_nan())
                                    .prop_map(|x| format!("{x:?}")),
                                any::<bool>().prop_map(|b| b.to_string()),
                                "\"[^\"\\\\\\pC]{0,24}\"",
                                Just("[1, 2]".to_owned()),
                            ],
                        ),
                        0..8,
                    )
                    .prop_map(|lines| {
                        lines
                            .into_iter()
                            .map(|(key, value)| format!("{key} = {value}\n"))
                            .collect::<String>()
                    }),
                ],
            ) {
                if let Ok(settings) = toml::from_str::<Settings>(&text) {
                    match settings.resolve() {
                        Ok(_) | Err(ConfigError::Invalid { .. }) => {}
                        Err(e) => prop_assert!(false, "{}", e),
                    }
                }
            }

            /// Keys come back with their roles (`client` when none is given); one short key
            /// refuses the list.
            #[test]
            fn api_keys_read_back_with_their_roles(
                keys in prop::collection::hash_map(
                    "[^,:\\s\\pC]{22,32}",
                    prop::option::of(prop::sample::select(vec![Role::Client, Role::Admin])),
                    0..6,
                ),
                short in "[A-Za-z0-9]{1,21}",
                padding in " {0,2}",
            ) {
                let entries: Vec<String> = keys
                    .iter()
                    .map(|(key, role)| match role {
                        Some(Role::Client) => format!("{key}:client"),
                        Some(Role::Admin) => format!("{key}:admin"),
                        None => key.clone(),
                    })
                    .collect();
                let list = entries.join(&format!("{padding},{padding}"));
                let parsed = parse_api_keys(&list).unwrap();
                prop_assert_eq!(parsed.is_empty(), keys.is_empty());
                for (key, role) in &keys {
                    prop_assert_eq!(parsed.role(key), Some(role.unwrap_or(Role::Client)));
                }
                prop_assert_eq!(parsed.role(&short), None);
                let refused = parse_api_keys(&format!("{list},{short}")).is_err();
                prop_assert!(refused, "a key of {} characters is taken", short.len());
            }
        }
    }
}
