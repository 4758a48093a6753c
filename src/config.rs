//! Settings from an optional TOML file, `RISKGATE_*` environment variables and flags.
//!
//! Precedence: flags, then environment, then the file (`riskgate.toml` or `--config`), then
//! the defaults below. One struct serves all three layers: clap fills it from flags and
//! environment, serde from the file, and [`Settings::resolve`] applies defaults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::engine::EngineSettings;
use crate::model::Decision;
use crate::policy::{DEFAULT_POLICY, Limits, Selection};
use crate::signals::TravelLimits;
use crate::state::memory::Capacity;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default policies directory.
pub const DEFAULT_POLICIES_DIR: &str = "./policies";
/// Default embedded store directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Directory searched for GeoIP files when none are configured.
pub const DEFAULT_GEOIP_DIR: &str = "geoip";
/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
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
}

/// Every setting, each optional until [`Settings::resolve`] fills the defaults.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port to serve on [default: 127.0.0.1:8080].
    #[arg(long, env = "RISKGATE_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded durable store [default: ./data].
    #[arg(long, env = "RISKGATE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Directory with the policies, `lists/` and `tests/` [default: ./policies].
    #[arg(long, env = "RISKGATE_POLICIES_DIR", global = true)]
    pub policies_dir: Option<PathBuf>,
    /// City or Country `.mmdb` files, comma-separated (e.g. separate IPv4 and IPv6 files)
    /// [default: `*city*.mmdb` / `*country*.mmdb` in ./geoip].
    #[arg(long, env = "RISKGATE_GEOIP_CITY", global = true)]
    pub geoip_city: Option<String>,
    /// ASN `.mmdb` or ip-location-db `.csv` files, comma-separated
    /// [default: `*asn*.mmdb` / `*asn*.csv` in ./geoip].
    #[arg(long, env = "RISKGATE_GEOIP_ASN", global = true)]
    pub geoip_asn: Option<String>,
    /// State backend: `memory` (this build's only backend) [default: memory].
    #[arg(long, env = "RISKGATE_STATE_BACKEND", global = true)]
    pub state_backend: Option<String>,
    /// Redis URL for the `redis` backend [default: redis://127.0.0.1:6379].
    #[arg(long, env = "RISKGATE_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// API keys as `key:role,key:role` (roles `client`, `admin`); unset: loopback clients only.
    #[arg(long, env = "RISKGATE_API_KEYS", global = true, hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Append one JSON line per evaluation and event to this file (unset: off).
    #[arg(long, env = "RISKGATE_DECISION_LOG", global = true)]
    pub decision_log: Option<PathBuf>,
    /// Rotate the decision log at this size in bytes [default: 268435456].
    #[arg(long, env = "RISKGATE_DECISION_LOG_MAX_BYTES", global = true)]
    pub decision_log_max_bytes: Option<u64>,
    /// Policy used when no app mapping applies [default: default].
    #[arg(long, env = "RISKGATE_POLICY", global = true)]
    pub policy: Option<String>,
    /// Policy run beside the active one, report only.
    #[arg(long, env = "RISKGATE_SHADOW_POLICY", global = true)]
    pub shadow_policy: Option<String>,
    /// Decision when a policy fails or exceeds its limits: allow, mfa or lock [default: mfa].
    #[arg(long, env = "RISKGATE_FAIL_SAFE", global = true)]
    pub fail_safe: Option<String>,
    /// Lock duration when a policy locks without `lock_seconds` [default: 900].
    #[arg(long, env = "RISKGATE_LOCK_SECONDS", global = true)]
    pub lock_seconds: Option<u64>,
    /// Rhai operations a policy may run per call [default: 100000].
    #[arg(long, env = "RISKGATE_POLICY_MAX_OPERATIONS", global = true)]
    pub policy_max_operations: Option<u64>,
    /// Travel faster than this (km/h) is impossible [default: 900].
    #[arg(long, env = "RISKGATE_TRAVEL_MAX_SPEED_KMH", global = true)]
    pub travel_max_speed_kmh: Option<f64>,
    /// Travel shorter than this (km) is never flagged [default: 500].
    #[arg(long, env = "RISKGATE_TRAVEL_MIN_DISTANCE_KM", global = true)]
    pub travel_min_distance_km: Option<f64>,
    /// Users with live counters kept in memory [default: 500000].
    #[arg(long, env = "RISKGATE_MAX_USERS", global = true)]
    pub max_users: Option<usize>,
    /// Learned profiles kept in memory [default: 200000].
    #[arg(long, env = "RISKGATE_MAX_PROFILES", global = true)]
    pub max_profiles: Option<usize>,
    /// IPs with live counters kept in memory [default: 200000].
    #[arg(long, env = "RISKGATE_MAX_IPS", global = true)]
    pub max_ips: Option<usize>,
    /// App name to policy name (config file only: `[apps]` table).
    #[arg(skip)]
    #[serde(default)]
    pub apps: HashMap<String, String>,
}

/// The state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Bounded in-process maps.
    Memory,
}

/// An API key's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May evaluate attempts and report events.
    Client,
    /// May also manage users and policies.
    Admin,
}

/// Settings with defaults applied and values checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to serve on.
    pub listen: SocketAddr,
    /// Embedded store directory.
    pub data_dir: PathBuf,
    /// Policies directory.
    pub policies_dir: PathBuf,
    /// City/Country databases.
    pub geoip_city: Vec<PathBuf>,
    /// ASN databases.
    pub geoip_asn: Vec<PathBuf>,
    /// State backend.
    pub backend: Backend,
    /// Redis URL.
    pub redis_url: String,
    /// API keys and their roles; empty means loopback clients only.
    pub api_keys: HashMap<String, Role>,
    /// Decision log file, if logging is on.
    pub decision_log: Option<PathBuf>,
    /// Size at which the decision log rotates.
    pub decision_log_max_bytes: u64,
    /// Which policy runs where.
    pub selection: Selection,
    /// Engine behaviour.
    pub engine: EngineSettings,
    /// Policy sandbox limits.
    pub limits: Limits,
    /// In-memory state bounds.
    pub capacity: Capacity,
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

    /// Fills what these settings leave unset from `file`.
    pub fn or(self, file: Settings) -> Settings {
        macro_rules! pick {
            ($($field:ident),*) => { Settings { $($field: self.$field.or(file.$field),)* apps: if self.apps.is_empty() { file.apps } else { self.apps } } };
        }
        pick!(
            listen,
            data_dir,
            policies_dir,
            geoip_city,
            geoip_asn,
            state_backend,
            redis_url,
            api_keys,
            decision_log,
            decision_log_max_bytes,
            policy,
            shadow_policy,
            fail_safe,
            lock_seconds,
            policy_max_operations,
            travel_max_speed_kmh,
            travel_min_distance_km,
            max_users,
            max_profiles,
            max_ips
        )
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
        let listen = match self.listen {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid {
                key: "RISKGATE_LISTEN",
                message: "bad default".into(),
            })?,
        };
        let backend = match self.state_backend.as_deref().unwrap_or("memory") {
            "memory" => Backend::Memory,
            other @ ("embedded" | "redis") => {
                return Err(ConfigError::Invalid {
                    key: "RISKGATE_STATE_BACKEND",
                    message: format!(
                        "the `{other}` backend is not available in this build yet; use `memory`"
                    ),
                });
            }
            other => {
                return Err(ConfigError::Invalid {
                    key: "RISKGATE_STATE_BACKEND",
                    message: format!("`{other}` is not one of memory, embedded, redis"),
                });
            }
        };
        let fail_safe = match self.fail_safe.as_deref() {
            None => Decision::Mfa,
            Some(s) => Decision::parse(s).ok_or_else(|| ConfigError::Invalid {
                key: "RISKGATE_FAIL_SAFE",
                message: format!("`{s}` is not one of allow, mfa, lock"),
            })?,
        };
        let defaults = (
            EngineSettings::default(),
            Limits::default(),
            Capacity::default(),
        );
        let travel = TravelLimits {
            max_speed_kmh: self
                .travel_max_speed_kmh
                .unwrap_or(defaults.0.travel.max_speed_kmh),
            min_distance_km: self
                .travel_min_distance_km
                .unwrap_or(defaults.0.travel.min_distance_km),
        };
        if self
            .lock_seconds
            .is_some_and(|s| s > crate::policy::MAX_LOCK_SECONDS)
        {
            return Err(ConfigError::Invalid {
                key: "RISKGATE_LOCK_SECONDS",
                message: "at most 31536000 (a year)".into(),
            });
        }
        let geoip_dir = Path::new(DEFAULT_GEOIP_DIR);
        Ok(Config {
            listen,
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
            redis_url: self
                .redis_url
                .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
            api_keys: parse_api_keys(self.api_keys.as_deref().unwrap_or(""))?,
            decision_log: self.decision_log,
            decision_log_max_bytes: self
                .decision_log_max_bytes
                .unwrap_or(crate::decision_log::DEFAULT_MAX_BYTES),
            selection: Selection {
                default: self.policy.unwrap_or_else(|| DEFAULT_POLICY.to_owned()),
                apps: self.apps,
                shadow: self.shadow_policy.filter(|s| !s.is_empty()),
            },
            engine: EngineSettings {
                fail_safe,
                default_lock_seconds: self.lock_seconds.unwrap_or(defaults.0.default_lock_seconds),
                travel,
            },
            limits: Limits {
                max_operations: self
                    .policy_max_operations
                    .unwrap_or(defaults.1.max_operations),
                ..defaults.1
            },
            capacity: Capacity {
                users: self.max_users.unwrap_or(defaults.2.users),
                profiles: self.max_profiles.unwrap_or(defaults.2.profiles),
                ips: self.max_ips.unwrap_or(defaults.2.ips),
                ..defaults.2
            },
        })
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

fn parse_api_keys(list: &str) -> Result<HashMap<String, Role>, ConfigError> {
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
            if key.len() < 8 {
                return Err(invalid("keys must be at least 8 characters".into()));
            }
            Ok((key.to_owned(), role))
        })
        .collect()
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
        assert_eq!(config.backend, Backend::Memory);
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
        let keys = parse_api_keys("abcdefgh12:admin, client-key-1").unwrap();
        assert_eq!(keys["abcdefgh12"], Role::Admin);
        assert_eq!(keys["client-key-1"], Role::Client);
        assert!(parse_api_keys("short:client").is_err());
    }
}
