//! The connection to Redis or Redis Cluster: multiplexed, reconnecting by itself, and probed
//! in the background so readiness reflects whether state can be kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisFuture, Value};

/// How long opening a connection may take (a TCP handshake and a hello, on a network that
/// may be slower than loopback); each command is bounded by the configured timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the background probe checks the server.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A connection to a single server or to a cluster (which routes each command to the node
/// that owns its key's slot).
#[derive(Clone)]
pub(super) enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Why Redis could not be reached at startup.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URL is not a Redis URL.
    #[error("RISKGATE_REDIS_URL `{url}`: {source}")]
    Url {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        source: redis::RedisError,
    },
    /// The keys hold a format this build does not know.
    #[error(
        "Redis keys under the prefix `{prefix}` hold state format {found}, newer than this \
         build's {}; run a newer riskgate or give this one its own RISKGATE_REDIS_PREFIX",
        super::FORMAT_VERSION
    )]
    NewerFormat {
        /// The key prefix.
        prefix: String,
        /// The format found.
        found: u64,
    },
    /// The server did not answer.
    #[error("cannot reach Redis at {url}: {message}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl Link {
    /// Connects to `urls` (one URL, or a cluster's seed nodes separated by commas), asking
    /// the first whether it is a cluster node; every command then gives up after `timeout`.
    pub(super) async fn connect(urls: &str, timeout: Duration) -> Result<Self, RedisSetupError> {
        let seeds: Vec<&str> = urls.split(',').map(str::trim).collect();
        let first = seeds.first().copied().unwrap_or_default();
        let url_error = |url: &str, source| RedisSetupError::Url {
            url: url.to_owned(),
            source,
        };
        let unreachable = |message: String| RedisSetupError::Unreachable {
            url: first.to_owned(),
            message,
        };
        let client = Client::open(first).map_err(|e| url_error(first, e))?;
        let probe = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("INFO")
                .arg("cluster")
                .query_async::<String>(&mut connection)
                .await
        };
        let info = tokio::time::timeout(CONNECT_TIMEOUT, probe)
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        if !info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(0);
            let manager = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            return Ok(Link::Single(manager));
        }
        let cluster = ClusterClientBuilder::new(seeds.iter().copied())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(timeout)
            .retries(2)
            .build()
            .map_err(|e| url_error(urls, e))?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, cluster.get_async_connection())
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Link::Cluster(connection))
    }

    /// Whether the server answers (a cluster: whether it serves every slot).
    async fn probe(&mut self, timeout: Duration) -> bool {
        let cluster = matches!(self, Link::Cluster(_));
        let answer = async {
            if cluster {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async::<String>(self)
                    .await
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            } else {
                redis::cmd("PING").query_async::<String>(self).await.is_ok()
            }
        };
        tokio::time::timeout(timeout, answer).await.unwrap_or(false)
    }

    /// Probes the server every [`PROBE_EVERY`] while `health` lives, marking it healthy when
    /// it answers (failed calls mark it unhealthy in between).
    pub(super) fn watch(&self, health: &Arc<AtomicBool>, timeout: Duration) {
        let mut link = self.clone();
        let health: Weak<AtomicBool> = Arc::downgrade(health);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let answered = link.probe(timeout).await;
                let Some(health) = health.upgrade() else {
                    return;
                };
                health.store(answered, Ordering::Release);
            }
        });
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(cmd),
            Link::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}
