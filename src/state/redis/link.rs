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

/// A client for `url`, and whether the server there is a cluster node.
async fn cluster_enabled(url: &str) -> Result<(Client, bool), RedisSetupError> {
    let client = Client::open(url).map_err(|source| RedisSetupError::Url {
        url: url.to_owned(),
        source,
    })?;
    let probe = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut connection)
            .await
    };
    let info = tokio::time::timeout(CONNECT_TIMEOUT, probe)
        .await
        .map_err(|_| unreachable(url, format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(url, e.to_string()))?;
    let cluster = info.lines().any(|line| line.trim() == "cluster_enabled:1");
    Ok((client, cluster))
}

/// A connection to the single server behind `client`, reconnecting by itself.
async fn single(client: Client, url: &str, timeout: Duration) -> Result<Link, RedisSetupError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(0);
    let manager = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| unreachable(url, e.to_string()))?;
    Ok(Link::Single(manager))
}

/// A connection to the cluster the `seeds` belong to.
async fn cluster(seeds: &[&str], timeout: Duration) -> Result<Link, RedisSetupError> {
    let urls = seeds.join(",");
    let cluster = ClusterClientBuilder::new(seeds.iter().copied())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(timeout)
        .retries(2)
        .build()
        .map_err(|source| RedisSetupError::Url {
            url: urls.clone(),
            source,
        })?;
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, cluster.get_async_connection())
        .await
        .map_err(|_| unreachable(&urls, format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(&urls, e.to_string()))?;
    Ok(Link::Cluster(connection))
}

fn unreachable(url: &str, message: String) -> RedisSetupError {
    RedisSetupError::Unreachable {
        url: url.to_owned(),
        message,
    }
}

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
    /// Several URLs name a server that is not a cluster node.
    #[error(
        "RISKGATE_REDIS_URL lists several servers, but {url} is not a Redis Cluster node; give \
         one URL for a single server"
    )]
    NotACluster {
        /// The server.
        url: String,
    },
    /// `<prefix>format` holds something riskgate did not write.
    #[error(
        "the Redis key `{key}` holds `{found}`, not a riskgate state format; choose another RISKGATE_REDIS_PREFIX"
    )]
    ForeignFormat {
        /// The key.
        key: String,
        /// What it holds.
        found: String,
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
    /// the first seed that answers whether it is a cluster node; every command then gives up
    /// after `timeout`.
    pub(super) async fn connect(urls: &str, timeout: Duration) -> Result<Self, RedisSetupError> {
        let seeds: Vec<&str> = urls.split(',').map(str::trim).collect();
        let mut unreachable = None;
        for seed in &seeds {
            match cluster_enabled(seed).await {
                Ok((client, false)) if seeds.len() == 1 => {
                    return single(client, seed, timeout).await;
                }
                Ok((_, false)) => {
                    return Err(RedisSetupError::NotACluster {
                        url: (*seed).to_owned(),
                    });
                }
                Ok((_, true)) => return cluster(&seeds, timeout).await,
                Err(error @ RedisSetupError::Unreachable { .. }) => unreachable = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(unreachable.unwrap_or_else(|| RedisSetupError::Unreachable {
            url: urls.to_owned(),
            message: "no URL given".into(),
        }))
    }

    /// Whether the server takes a write to `key` (so a server out of memory, read-only
    /// after a failover or refusing riskgate's user counts as down); a cluster must also
    /// serve every slot.
    async fn probe(&mut self, key: &str, timeout: Duration) -> bool {
        let cluster = matches!(self, Link::Cluster(_));
        let answer = async {
            let served = !cluster
                || redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async::<String>(self)
                    .await
                    .is_ok_and(|info| info.contains("cluster_state:ok"));
            served
                && redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("PX")
                    .arg(10 * PROBE_EVERY.as_millis())
                    .query_async::<()>(self)
                    .await
                    .is_ok()
        };
        tokio::time::timeout(timeout, answer).await.unwrap_or(false)
    }

    /// Probes the server (a write to `key`) every [`PROBE_EVERY`] while `health` lives,
    /// recording whether it answered.
    pub(super) fn watch(&self, key: String, health: &Arc<AtomicBool>, timeout: Duration) {
        let mut link = self.clone();
        let health: Weak<AtomicBool> = Arc::downgrade(health);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let answered = link.probe(&key, timeout).await;
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
