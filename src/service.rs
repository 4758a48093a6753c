//! Assembles an engine from a [`Config`] and runs the server: the code `main` and the
//! integration tests share.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use std::path::Path;

use crate::Millis;
use crate::config::{Backend, Config, DEFAULT_POLICIES_DIR};
use crate::decision_log::DecisionLog;
use crate::engine::Engine;
use crate::enrich::DEFAULT_UA_CACHE_CAPACITY;
use crate::enrich::{DeviceParser, GeoError, GeoIp};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::policy::reload::{self, Reloader};
use crate::policy::{PolicyError, PolicySet, Runtime};
use crate::state::Swept;
use crate::state::bounded::Placement;
pub use crate::state::embedded::EmbeddedError;
pub use crate::state::redis::RedisSetupError;
use crate::state::{MemoryStore, Store, embedded, redis};

/// Errors that stop the service from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A GeoIP file is configured but unreadable.
    #[error(transparent)]
    Geo(#[from] GeoError),
    /// The state directory cannot be used.
    #[error(transparent)]
    State(#[from] EmbeddedError),
    /// Redis cannot be used.
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    /// The policies do not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
    /// No API keys on an address other clients can reach.
    #[error(
        "listening on {addr}, which is not a loopback address, needs API keys \
         (RISKGATE_API_KEYS); RISKGATE_ALLOW_NO_KEYS=true starts anyway, serving loopback \
         clients only"
    )]
    NoKeys {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the GeoIP files of `config`, warning once when there are none.
pub fn open_geoip(config: &Config) -> Result<GeoIp, GeoError> {
    let geo = GeoIp::open(&config.geoip_city, &config.geoip_asn)?;
    let missing: Vec<&str> = [
        (
            config.geoip_city.is_empty(),
            "RISKGATE_GEOIP_CITY (country, city, travel)",
        ),
        (config.geoip_asn.is_empty(), "RISKGATE_GEOIP_ASN (network)"),
    ]
    .into_iter()
    .filter_map(|(missing, key)| missing.then_some(key))
    .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "GeoIP data missing, so these signals stay empty; set {} \
             (see geoip/README.md, or run geoip/fetch.sh)",
            missing.join(" and ")
        );
    }
    Ok(geo)
}

/// The policies directory, or the embedded defaults when the default directory is absent.
pub(crate) fn load_policies(runtime: &Runtime, config: &Config) -> Result<PolicySet, PolicyError> {
    let default_dir = config.policies_dir == Path::new(DEFAULT_POLICIES_DIR);
    if default_dir && !config.policies_dir.is_dir() {
        tracing::info!(
            "no ./policies directory: using the embedded default policy \
             (set RISKGATE_POLICIES_DIR to use your own)"
        );
        return PolicySet::embedded(runtime, config.selection.clone());
    }
    PolicySet::load(runtime, &config.policies_dir, config.selection.clone())
}

/// Builds the engine described by `config`, on the state backend it names.
pub async fn build_engine(config: &Config) -> Result<Engine, ServiceError> {
    let runtime = Runtime::new(config.limits);
    let policies = load_policies(&runtime, config)?;
    build_engine_with(config, runtime, policies, open_store(config).await?)
}

/// The state backend `config` names.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServiceError> {
    Ok(match config.backend {
        Backend::Memory => Arc::new(MemoryStore::new(config.capacity, Placement::random())),
        Backend::Embedded => {
            let store = embedded::open(&config.data_dir, config.capacity, config.sync)?;
            tracing::info!(dir = %config.data_dir.display(), "state kept in the data directory");
            Arc::new(store)
        }
        Backend::Redis => {
            let days = Millis::try_from(config.profile_retention_days).unwrap_or(Millis::MAX);
            let retention = days.saturating_mul(crate::DAY);
            let profiles = u64::try_from(config.capacity.profiles).unwrap_or(u64::MAX);
            let store = redis::open(&config.redis, retention, profiles).await?;
            tracing::info!(prefix = %config.redis.prefix, "state kept in Redis");
            Arc::new(store)
        }
    })
}

/// Builds an engine from `config` with the given runtime, policies and state.
pub(crate) fn build_engine_with(
    config: &Config,
    runtime: Runtime,
    policies: PolicySet,
    store: Arc<dyn Store>,
) -> Result<Engine, ServiceError> {
    Ok(Engine::new(
        open_geoip(config)?,
        DeviceParser::new(DEFAULT_UA_CACHE_CAPACITY),
        store,
        runtime,
        policies,
        config.engine,
    ))
}

/// Builds the engine, binds `config.listen` and serves until `shutdown` completes. The
/// policies and GeoIP files are checked before the port is taken.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    if config.api_keys.is_empty() {
        if !config.listen.ip().is_loopback() && !config.allow_no_keys {
            return Err(ServiceError::NoKeys {
                addr: config.listen,
            });
        }
        tracing::warn!(
            "no API keys (RISKGATE_API_KEYS): every loopback client is trusted, a reverse proxy on this host included"
        );
    }
    let engine = build_engine(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServiceError::Bind {
            addr: config.listen,
            source,
        })?;
    serve_engine(listener, engine, config, shutdown).await
}

/// Serves `GET /metrics` alone on `addr`, without API keys, until aborted.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    state: AppState,
    limits: http::server::ConnectionLimits,
) -> Result<tokio::task::JoinHandle<()>, ServiceError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Bind { addr, source })?;
    tracing::info!(%addr, "metrics served for scrapers");
    let app = http::metrics_router(state);
    Ok(tokio::spawn(http::server::serve(
        listener,
        app,
        limits,
        std::future::pending(),
    )))
}

/// How often state is swept of what expired.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Sweeps the state every [`SWEEP_EVERY`] (on a blocking thread: it reads whole tables), so
/// the disk stays bounded and profiles unused for `retention_days` are deleted.
async fn sweep_periodically(engine: Arc<Engine>, retention_days: u64) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    loop {
        ticks.tick().await;
        let sweeping = Arc::clone(&engine);
        let runtime = tokio::runtime::Handle::current();
        let swept = tokio::task::spawn_blocking(move || {
            runtime.block_on(sweeping.sweep(chrono::Utc::now(), retention_days))
        })
        .await;
        if let Err(error) = engine.committed().await {
            tracing::error!(%error, "cannot write the swept state");
        }
        match swept {
            Ok(Ok(swept)) if swept != Swept::default() => tracing::info!(
                profiles_deleted = swept.profiles,
                expired = swept.expired,
                retention_days,
                "state swept: profiles without a login for the retention period deleted, expired counters removed"
            ),
            Ok(Ok(_)) => tracing::debug!("state swept: nothing expired"),
            Ok(Err(error)) => tracing::error!(%error, "cannot sweep the state"),
            Err(error) => tracing::error!(%error, "the state sweep failed"),
        }
    }
}

/// Builds the engine described by `config` and serves it on `listener` until `shutdown`
/// completes. Returns once open requests are answered and the decision log is on disk.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let engine = build_engine(&config).await?;
    serve_engine(listener, engine, config, shutdown).await
}

async fn serve_engine(
    listener: TcpListener,
    engine: Engine,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let metrics = Arc::new(Metrics::new());
    let (decision_log, writer) = match &config.decision_log {
        Some(settings) => {
            tracing::info!(path = %settings.path.display(), "decision log on");
            let (log, writer) = DecisionLog::spawn(settings.clone(), metrics.log_counters());
            (Some(log), Some(writer))
        }
        None => (None, None),
    };
    let policy = engine.policies().active(None).reference();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, policy = %policy.name, version = %policy.version, "riskgate listening");
    }
    let engine = Arc::new(engine);
    let sweeper = tokio::spawn(sweep_periodically(
        Arc::clone(&engine),
        config.profile_retention_days,
    ));
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&engine),
        config.policies_dir.clone(),
        config.selection.clone(),
        config.limits,
        config.engine,
        Arc::clone(&metrics),
    ));
    // Without a policies directory the embedded defaults answer, and there is nothing to watch.
    let watcher = config
        .policies_dir
        .is_dir()
        .then(|| tokio::spawn(reload::watch(Arc::clone(&reloader))));
    let state = AppState {
        engine,
        api_keys: Arc::new(config.api_keys),
        reloader,
        decision_log,
        max_event_age: config.max_event_age,
        metrics,
    };
    let scraper = match config.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, state.clone(), config.connections).await?),
        None => None,
    };
    http::serve(listener, state, config.connections, shutdown).await;
    sweeper.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(scraper) = scraper {
        scraper.abort();
    }
    // The server has dropped every handler's copy of the log's sender (connections still
    // open at the deadline are closed), so the writer drains what is queued and ends: wait
    // for it, or the last lines could be lost on exit.
    if let Some(writer) = writer
        && let Err(e) = writer.await
    {
        tracing::error!(error = %e, "the decision log writer failed");
    }
    tracing::info!("riskgate stopped");
    Ok(())
}
