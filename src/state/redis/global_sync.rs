//! The global statistics shared between the replicas on one Redis (or Redis Cluster).
//!
//! Each replica counts the logins it learns in its own sketches ([`GlobalStats`]), as the
//! other backends do, and in the background, every [`SyncTimes::every`]:
//! - publishes them under keys of its own (a random id per process): each [`Chunk`] of
//!   cells as little-endian `u32`s under `<prefix>{global}:replica:<id>:<n>`, then a
//!   [`Header`] (layout, logins learned, totals) under `<prefix>{global}:replica:<id>`.
//!   Chunks are 62.5 KiB, each written by one `PSETEX`: no command holds Redis up for
//!   long, and no value grows (`SETRANGE`s into one 5.5 MB string make Redis reallocate and
//!   copy it as it grows; one took 2.9 ms). Counts unchanged since the last publish are not
//!   written again; their expiry ([`SyncTimes::ttl`], a day) is renewed, so the counts of a
//!   replica that is gone (scaled down, restarted under a new id) are dropped a day later;
//! - registers itself in `<prefix>{global}:replicas`, a sorted set of ids scored by their
//!   last publish, pruned of ids older than the TTL and cut to the newest [`MAX_REPLICAS`]
//!   (their keys deleted), so Redis holds a bounded number of values however often
//!   replicas restart;
//! - reads the other registered replicas' chunks (one `GET` each) and sets its view to its
//!   own counts plus their sum, chunk by chunk; when no replica published anything new
//!   since the last read, it reads only their headers.
//!
//! Lookups read the view in process, so an evaluation never waits for Redis. Each replica
//! halves its own counts on its own schedule, so the view covers the recent logins of every
//! replica. The `{global}` hash tag keeps every global key in one slot of a cluster.
//!
//! A sync that fails (Redis down, slow, failing over) leaves the view as it was: lookups go
//! on with the last counts seen plus what this replica learns meanwhile, and the next sync
//! tries again on the connection, which reconnects by itself. Keys the server lost (a
//! restart without persistence, an eviction) are written again by the next sync.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{AsyncCommands, RedisError};

use super::Keys;
use super::link::Link;
use crate::state::global::{Chunk, GlobalStats};

/// The most replicas whose counts are added up (and whose values Redis keeps): beyond, the
/// least recently published are dropped.
pub(super) const MAX_REPLICAS: usize = 64;
/// Opens every published value: riskgate's global statistics, layout 1.
const MAGIC: [u8; 4] = *b"rgs1";
/// How often a sync that keeps failing is logged: Redis down for an hour is a warning a
/// minute, not one per sync.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// When replicas share their global statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncTimes {
    /// Between two syncs.
    pub every: Duration,
    /// How long a replica's published counts outlive its last publish.
    pub ttl: Duration,
}

impl SyncTimes {
    /// A sync every `every`, counts kept a day after their replica's last publish: a
    /// replica restarted under a new id learns a day's logins before the counts of its
    /// previous run are dropped.
    pub(crate) fn every(every: Duration) -> Self {
        Self {
            every,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one sync found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Synced {
    /// Other replicas whose counts the view holds.
    pub replicas: usize,
    /// Replicas whose values have another layout (another riskgate version), left out.
    pub foreign: usize,
}

/// This replica's global statistics and their sharing through Redis.
pub(super) struct GlobalSync {
    stats: GlobalStats,
    link: Link,
    keys: Keys,
    /// This process's id among the replicas.
    id: String,
    /// The keys this process publishes under.
    own: ValueKeys,
    times: SyncTimes,
    /// The sketches' cells, and the chunks they are exchanged in.
    shape: Vec<usize>,
    chunks: Vec<Chunk>,
    /// What the last sync wrote and read; held for a whole sync, so syncs take turns.
    last: tokio::sync::Mutex<Last>,
}

/// What the previous sync left, so the next one can skip what did not change.
#[derive(Debug)]
struct Last {
    /// The logins learned when this replica's counts were last written whole.
    published: Option<u64>,
    /// The replicas (ids, logins learned) whose counts the view holds; `None` when a sync
    /// broke off while reading them.
    read: Option<Vec<(String, u64)>>,
}

impl Last {
    /// Nothing written yet, and a view of this replica's counts alone: a replica without
    /// others never touches its view.
    fn new() -> Self {
        Self {
            published: None,
            read: Some(Vec::new()),
        }
    }
}

/// The keys of one replica's published counts.
struct ValueKeys {
    header: String,
    /// One per chunk, in order.
    chunks: Vec<String>,
}

impl ValueKeys {
    /// Every key, the header's first.
    fn all(&self) -> impl Iterator<Item = &String> {
        [&self.header].into_iter().chain(&self.chunks)
    }
}

/// What a replica's published counts start with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    /// Logins the replica had learned: a new number means new counts.
    learned: u64,
    /// The sum of one row of each sketch.
    totals: Vec<u64>,
}

impl Header {
    /// Its length for sketches of `shape`: the magic, the logins, each sketch's cells
    /// (`u32`) and total (`u64`).
    fn len(shape: &[usize]) -> usize {
        MAGIC.len() + 8 + 12 * shape.len()
    }

    fn encode(&self, shape: &[usize]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::len(shape));
        bytes.extend(MAGIC);
        bytes.extend(self.learned.to_le_bytes());
        for (cells, total) in shape.iter().zip(&self.totals) {
            bytes.extend(u32::try_from(*cells).unwrap_or(u32::MAX).to_le_bytes());
            bytes.extend(total.to_le_bytes());
        }
        bytes
    }

    /// The header in `bytes` if it is one of sketches of `shape`.
    fn decode(bytes: &[u8], shape: &[usize]) -> Option<Self> {
        let rest = bytes.strip_prefix(&MAGIC)?;
        let (learned, mut rest) = rest.split_first_chunk::<8>()?;
        let mut totals = Vec::with_capacity(shape.len());
        for &cells in shape {
            let (found, after) = rest.split_first_chunk::<4>()?;
            let (total, after) = after.split_first_chunk::<8>()?;
            if usize::try_from(u32::from_le_bytes(*found)) != Ok(cells) {
                return None;
            }
            totals.push(u64::from_le_bytes(*total));
            rest = after;
        }
        rest.is_empty().then(|| Self {
            learned: u64::from_le_bytes(*learned),
            totals,
        })
    }
}

/// Milliseconds, as Redis takes them.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl GlobalSync {
    /// Empty statistics, shared on `link` under `keys` with a fresh replica id.
    pub(super) fn new(link: Link, keys: Keys, times: SyncTimes) -> Self {
        let id = format!("{:016x}", super::random());
        let chunks = GlobalStats::chunks();
        Self {
            own: value_keys(&keys, &id, chunks.len()),
            stats: GlobalStats::shared(),
            link,
            keys,
            id,
            times,
            shape: GlobalStats::shape(),
            chunks,
            last: tokio::sync::Mutex::new(Last::new()),
        }
    }

    /// The statistics lookups read: this replica's and, as of the last sync, the others'.
    pub(super) fn stats(&self) -> &GlobalStats {
        &self.stats
    }

    /// Syncs now and then every [`SyncTimes::every`] while the statistics live.
    pub(super) fn run_in_background(self: &Arc<Self>) {
        let sync: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut warnings = Warnings::default();
            while let Some(current) = sync.upgrade() {
                warnings.record(current.step().await);
                let every = current.times.every;
                drop(current);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// One sync: publishes this replica's counts, then reads the others' into the view.
    /// Each command waits at most the connection's timeout; the first to fail ends the sync.
    pub(super) async fn step(&self) -> Result<Synced, RedisError> {
        let mut last = self.last.lock().await;
        let mut link = self.link.clone();
        let now = chrono::Utc::now().timestamp_millis();
        self.publish(&mut link, &mut last, now).await?;
        self.gather(&mut link, &mut last, now).await
    }

    /// Writes this replica's counts (unless Redis holds them unchanged) and registers it.
    async fn publish(&self, link: &mut Link, last: &mut Last, now: i64) -> Result<(), RedisError> {
        let learned = self.stats.learned();
        if learned == 0 {
            // Nothing learned, nothing to share: a replica that only scores costs Redis
            // nothing.
            return Ok(());
        }
        let ttl = millis(self.times.ttl);
        let kept = last.published == Some(learned) && self.renew(link, ttl).await?;
        if !kept {
            last.published = None;
            let ttl = u64::try_from(ttl).unwrap_or(u64::MAX);
            let mut bytes = Vec::new();
            for (chunk, key) in self.chunks.iter().zip(&self.own.chunks) {
                bytes.clear();
                self.stats.write_own(*chunk, &mut bytes);
                let _: () = link.pset_ex(key, &bytes, ttl).await?;
            }
            // The header last: a reader seeing these logins finds every chunk counting them.
            let header = Header {
                learned,
                totals: self.stats.own_totals(),
            };
            let header = header.encode(&self.shape);
            let _: () = link.pset_ex(&self.own.header, header, ttl).await?;
            last.published = Some(learned);
        }
        let registry = self.keys.global_replicas();
        let _: usize = link.zadd(&registry, &self.id, now).await?;
        let _: bool = link.pexpire(&registry, ttl).await?;
        let _: usize = link.zrembyscore(&registry, "-inf", now - ttl).await?;
        // Beyond the newest MAX_REPLICAS: replicas long gone or restarting in a loop.
        let stale: Vec<String> = link
            .zrange(&registry, 0, -(MAX_REPLICAS as isize) - 1)
            .await?;
        for id in stale {
            let keys = value_keys(&self.keys, &id, self.chunks.len());
            let _: usize = link.unlink(keys.all().collect::<Vec<_>>()).await?;
            let _: usize = link.zrem(&registry, &id).await?;
        }
        Ok(())
    }

    /// Renews the expiry of this replica's keys; false when one is gone (expired, evicted,
    /// or lost in a restart of the server).
    async fn renew(&self, link: &mut Link, ttl: i64) -> Result<bool, RedisError> {
        for key in self.own.all() {
            if !link.pexpire::<_, bool>(key, ttl).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sets the view to this replica's counts plus those of the other registered replicas.
    async fn gather(
        &self,
        link: &mut Link,
        last: &mut Last,
        now: i64,
    ) -> Result<Synced, RedisError> {
        let oldest = now - millis(self.times.ttl);
        let mut ids: Vec<String> = link
            .zrevrangebyscore_limit(
                self.keys.global_replicas(),
                "+inf",
                oldest,
                0,
                MAX_REPLICAS as isize,
            )
            .await?;
        // By id, not by last publish: the same replicas read alike whoever published last.
        ids.sort_unstable();
        let mut others = Vec::new();
        let mut synced = Synced::default();
        for id in ids.into_iter().filter(|id| *id != self.id) {
            let keys = value_keys(&self.keys, &id, self.chunks.len());
            let bytes: Option<Vec<u8>> = link.get(&keys.header).await?;
            match bytes.map(|b| Header::decode(&b, &self.shape)) {
                Some(Some(header)) => others.push((id, keys, header)),
                Some(None) => synced.foreign += 1,
                // Expired since it was registered.
                None => {}
            }
        }
        synced.replicas = others.len();
        let read: Vec<(String, u64)> = others
            .iter()
            .map(|(id, _, header)| (id.clone(), header.learned))
            .collect();
        if last.read.as_ref() == Some(&read) {
            return Ok(synced);
        }
        last.read = None;
        let mut complete = true;
        let mut sum = Vec::new();
        for (n, chunk) in self.chunks.iter().enumerate() {
            sum.clear();
            sum.resize(chunk.len, 0u32);
            for (_, keys, _) in &others {
                let Some(key) = keys.chunks.get(n) else {
                    continue;
                };
                let bytes: Option<Vec<u8>> = link.get(key).await?;
                let Some(bytes) = bytes.filter(|b| b.len() == 4 * chunk.len) else {
                    // Expired or evicted meanwhile: the next sync reads the replicas again.
                    complete = false;
                    continue;
                };
                for (cell, value) in sum.iter_mut().zip(bytes.as_chunks::<4>().0) {
                    *cell = cell.saturating_add(u32::from_le_bytes(*value));
                }
            }
            self.stats.see_others(*chunk, &sum);
            // A chunk's sum is microseconds of work; with no reads to wait for (the others
            // gone), a sync must still let evaluations run between chunks.
            tokio::task::yield_now().await;
        }
        let mut totals = vec![0u64; self.shape.len()];
        for (_, _, header) in &others {
            for (total, other) in totals.iter_mut().zip(&header.totals) {
                *total = total.saturating_add(*other);
            }
        }
        self.stats.see_others_totals(&totals);
        if complete {
            last.read = Some(read);
        }
        Ok(synced)
    }
}

/// The keys replica `id` publishes its `chunks` chunks under.
fn value_keys(keys: &Keys, id: &str, chunks: usize) -> ValueKeys {
    let header = keys.global_replica(id);
    ValueKeys {
        chunks: (0..chunks).map(|n| format!("{header}:{n}")).collect(),
        header,
    }
}

/// Logs what keeps the statistics from being shared, at most once per [`WARN_EVERY`].
#[derive(Debug, Default)]
struct Warnings {
    /// When the last warning was logged.
    last: Option<Instant>,
    /// Syncs failed since the last warning (or success).
    failed: u64,
    /// Whether the last sync failed.
    failing: bool,
}

impl Warnings {
    fn record(&mut self, outcome: Result<Synced, RedisError>) {
        match outcome {
            Err(error) => {
                self.failing = true;
                self.failed += 1;
                if self.due() {
                    tracing::warn!(
                        %error,
                        failed_syncs = self.failed,
                        "global statistics not shared through Redis; scoring goes on with the \
                         last counts seen"
                    );
                    self.failed = 0;
                }
            }
            Ok(synced) => {
                if std::mem::take(&mut self.failing) {
                    self.failed = 0;
                    tracing::info!("global statistics shared through Redis again");
                }
                if synced.foreign > 0 && self.due() {
                    tracing::warn!(
                        replicas = synced.foreign,
                        "replicas publish global statistics of another layout (another \
                         riskgate version); their counts are left out"
                    );
                }
            }
        }
    }

    /// Whether a warning may be logged now (and if so, it counts as logged).
    fn due(&mut self) -> bool {
        let due = self.last.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests;
