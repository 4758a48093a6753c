//! The Redis backend: state shared by every replica through Redis, Valkey or Redis Cluster.
//!
//! A user's keys share one hash tag (`{u:<hash>}`), as do an IP's (`{ip:..}`) and a device's
//! (`{d:..}`), so each Lua script runs atomically on one slot. An evaluation reads and counts
//! with one round trip per slot, concurrently, then writes what its decision implies (park,
//! lock or learn) on the user's slot. Every key expires (windows after their
//! horizon, locks after they end, parked attempts after a day, profiles after the retention
//! period), so Redis memory stays bounded without a sweep.
//!
//! The global statistics of login features stay in process, where every evaluation reads
//! them; replicas exchange them in the background (`global_sync.rs`).

mod global_sync;
mod link;
mod scripts;
#[cfg(test)]
mod tests;

use crate::state::global::GlobalStats;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::{AsyncCommands, RedisError};

use global_sync::GlobalSync;
pub(crate) use global_sync::SyncTimes;
use link::Link;
pub use link::RedisSetupError;
use scripts::Scripts;

use super::network::{DeviceActivity, IpActivity, ip_key};
use super::{
    AttemptKeys, Committed, Counts, DistinctWindow, EventWindow, LoginFacts, NetworkCounts,
    Observation, Pending, Snapshot, Store, StoreError, StoreFuture, Swept, UserActivity,
    UserProfile, decode, encode, key,
};
use crate::{HOUR, Millis};

/// The format of the values this build writes; kept under `<prefix>format`, so a build
/// never misreads keys a newer one wrote.
pub(crate) const FORMAT_VERSION: u64 = 1;
/// How many times a profile update is tried when other replicas keep changing it meanwhile.
/// Each replica's updates of one user take turns, so a swap races only other replicas' and
/// is retried at once with the version that beat it; a replica losing every race is rare,
/// and the call's timeout bounds the tries anyway.
const PROFILE_SWAP_TRIES: usize = 64;

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisSettings {
    /// One URL, or a cluster's seed nodes separated by commas.
    pub url: String,
    /// Put in front of every key, so riskgates can share a server with other programs.
    pub prefix: String,
    /// How long a call may take before the state counts as unavailable.
    pub timeout: Duration,
    /// When replicas share their global statistics.
    pub global_sync: SyncTimes,
}

/// State in Redis, shared by every replica using the same server and prefix.
pub(crate) struct RedisStore {
    link: Link,
    keys: Keys,
    scripts: Scripts,
    timeout: Duration,
    /// How long a profile lives without a successful login.
    retention: Millis,
    /// Profiles last read or written, by user key, with their version: an evaluation reads
    /// the body again only when another replica changed it.
    profiles: moka::sync::Cache<u64, (String, Arc<UserProfile>)>,
    /// Turns to change profiles, by user key: this replica's updates of one user wait for
    /// each other instead of racing, so only other replicas' can make a swap retry.
    profile_turns: Box<[tokio::sync::Mutex<()>]>,
    /// Whether the background probe's last write succeeded.
    health: Arc<AtomicBool>,
    /// Global frequencies of login features: those this replica learned plus, as of the
    /// last background sync, the other replicas'.
    global: Arc<GlobalSync>,
}

/// Stripes of [`RedisStore::profile_turns`]: enough that concurrent logins of different
/// users rarely share one (each turn lasts a round trip or two).
const PROFILE_TURNS: usize = 4096;

/// Connects to Redis and checks the format of what is kept there.
pub(crate) async fn open(
    settings: &RedisSettings,
    retention: Millis,
    cached_profiles: u64,
) -> Result<RedisStore, RedisSetupError> {
    let link = Link::connect(&settings.url, settings.timeout).await?;
    let keys = Keys {
        prefix: settings.prefix.clone(),
    };
    check_format(&mut link.clone(), &keys, &settings.url).await?;
    let health = Arc::new(AtomicBool::new(true));
    link.watch(keys.probe(), &health, settings.timeout);
    let global = Arc::new(GlobalSync::new(
        link.clone(),
        keys.clone(),
        settings.global_sync,
    ));
    global.run_in_background();
    Ok(RedisStore {
        link,
        keys,
        scripts: Scripts::new(),
        timeout: settings.timeout,
        retention,
        profiles: moka::sync::Cache::new(cached_profiles),
        profile_turns: (0..PROFILE_TURNS)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect(),
        health,
        global,
    })
}

/// Marks empty keys with [`FORMAT_VERSION`], and refuses keys a newer build wrote.
async fn check_format(link: &mut Link, keys: &Keys, url: &str) -> Result<(), RedisSetupError> {
    let unreachable = |e: RedisError| RedisSetupError::Unreachable {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let key = keys.format();
    let _: bool = link
        .set_nx(&key, FORMAT_VERSION)
        .await
        .map_err(unreachable)?;
    let text: String = link.get(&key).await.map_err(unreachable)?;
    let found: u64 = text
        .parse()
        .map_err(|_| RedisSetupError::ForeignFormat { key, found: text })?;
    if found > FORMAT_VERSION {
        return Err(RedisSetupError::NewerFormat {
            prefix: keys.prefix.clone(),
            found,
        });
    }
    Ok(())
}

/// Key names. Ids are hashed, so no user id, IP or device id appears in a key, and no
/// crafted name can escape its hash tag.
#[derive(Clone)]
struct Keys {
    prefix: String,
}

/// The keys of one user, all in one slot.
struct UserKeys {
    /// The user's key (the hash of the id).
    id: u64,
    failures: String,
    /// The failures dropped beyond the window's cap, as a count.
    failures_dropped: String,
    lock: String,
    profile: String,
    pending: String,
    pending_times: String,
    /// The IPs and devices the user was counted on, for erasure.
    networks: String,
}

impl UserKeys {
    /// Every key of the user.
    fn all(&self) -> [&str; 7] {
        [
            &self.failures,
            &self.failures_dropped,
            &self.lock,
            &self.profile,
            &self.pending,
            &self.pending_times,
            &self.networks,
        ]
    }
}

impl Keys {
    fn user(&self, user_id: &str) -> UserKeys {
        let id = key(user_id);
        let tag = format!("{}{{u:{id:016x}}}", self.prefix);
        UserKeys {
            id,
            failures: format!("{tag}:f"),
            failures_dropped: format!("{tag}:fd"),
            lock: format!("{tag}:l"),
            profile: format!("{tag}:p"),
            pending: format!("{tag}:r"),
            pending_times: format!("{tag}:rt"),
            networks: format!("{tag}:n"),
        }
    }

    /// An IP's failures (and those dropped beyond the cap), attempts (likewise) and users.
    fn ip(&self, ip: std::net::IpAddr) -> [String; 5] {
        let tag = format!("{}{{ip:{:016x}}}", self.prefix, ip_key(ip));
        [":f", ":fd", ":a", ":ad", ":u"].map(|suffix| format!("{tag}{suffix}"))
    }

    /// A device's users.
    fn device(&self, device: u64) -> String {
        format!("{}{{d:{device:016x}}}:u", self.prefix)
    }

    /// The users key of a network a user was counted on (an entry of [`UserKeys::networks`]).
    fn network_users(&self, network: &str) -> Option<String> {
        let (kind, id) = network.split_at_checked(1)?;
        let id = u64::from_str_radix(id, 16).ok()?;
        Some(match kind {
            "i" => format!("{}{{ip:{id:016x}}}:u", self.prefix),
            "d" => self.device(id),
            _ => return None,
        })
    }

    fn format(&self) -> String {
        format!("{}format", self.prefix)
    }

    /// The key the health probe writes.
    fn probe(&self) -> String {
        format!("{}probe", self.prefix)
    }

    /// The replicas sharing global statistics, scored by their last publish. Every global
    /// key has the tag `{global}`: one slot holds them all.
    fn global_replicas(&self) -> String {
        format!("{}{{global}}:replicas", self.prefix)
    }

    /// The header of the global statistics a replica (its random id) published; the keys
    /// of their chunks add `:<n>`.
    fn global_replica(&self, id: &str) -> String {
        format!("{}{{global}}:replica:{id}", self.prefix)
    }
}

/// A member naming one user in distinct-user windows.
fn user_member(id: u64) -> String {
    format!("{id:016x}")
}

/// A random number (from the v4 UUID generator, seeded from the OS).
fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A member unique to one event, so simultaneous events from many replicas all count.
fn event_member() -> String {
    format!("{:016x}{:016x}", random(), random())
}

/// A fresh profile version: random, so a profile erased and learned again never reuses one.
fn new_version() -> String {
    format!("{:016x}", random())
}

fn failed(error: RedisError) -> StoreError {
    StoreError::Backend(format!("Redis: {error}"))
}

/// A window's events dropped beyond its cap, as the scripts read them: count and time.
type Dropped = (Option<u64>, Option<Millis>);

/// A window of events from its times (oldest first) and its dropped events.
fn event_window(times: Vec<Millis>, dropped: Dropped) -> EventWindow {
    EventWindow::from_parts(times, dropped.0.zip(dropped.1))
}

/// A window of distinct users from their members and the times they were last seen.
fn distinct_window(members: Vec<String>, seen: Vec<Millis>) -> DistinctWindow {
    let users = members
        .iter()
        .zip(seen)
        .filter_map(|(member, at)| Some((u64::from_str_radix(member, 16).ok()?, at)));
    DistinctWindow::from_parts(users.collect())
}

/// What the user's observe script answers.
type UserReply = (
    i64,
    i64,
    i64,
    Option<Millis>,
    Option<String>,
    Option<Vec<u8>>,
);

impl RedisStore {
    /// Runs one store operation within the timeout.
    async fn run<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Backend(format!(
                "Redis did not answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// A connection for one call (a cheap handle on the shared multiplexed one).
    fn link(&self) -> Link {
        self.link.clone()
    }

    /// The user's part of an observation, on the user's slot.
    async fn observe_user(
        &self,
        attempt: &AttemptKeys<'_>,
        user: &UserKeys,
        now: Millis,
    ) -> Result<([i64; 3], Option<Millis>, Option<Arc<UserProfile>>), StoreError> {
        let cached = self.profiles.get(&user.id);
        let mut call = self.scripts.user_observe.prepare_invoke();
        call.key(&user.failures)
            .key(&user.failures_dropped)
            .key(&user.lock)
            .key(&user.profile)
            .key(&user.networks)
            .arg(now)
            .arg(u8::from(attempt.failed))
            // The failure's member, when there is one to count.
            .arg(if attempt.failed {
                event_member()
            } else {
                String::new()
            })
            .arg(cached.as_ref().map_or("", |(version, _)| version.as_str()));
        if let Some(network) = attempt.network {
            call.arg(format!("i{:016x}", ip_key(network.ip)));
            if let Some(device) = network.device_id {
                call.arg(format!("d{:016x}", key(device)));
            }
        }
        let (f1, f2, f3, lock, version, body): UserReply =
            call.invoke_async(&mut self.link()).await.map_err(failed)?;
        let profile = self.profile_found(user.id, cached, version, body)?;
        Ok(([f1, f2, f3], lock, profile))
    }

    /// The profile a script on the user's slot found: its `version` and, when that is not
    /// the `cached` one's, its `body`.
    fn profile_found(
        &self,
        user: u64,
        cached: Option<(String, Arc<UserProfile>)>,
        version: Option<String>,
        body: Option<Vec<u8>>,
    ) -> Result<Option<Arc<UserProfile>>, StoreError> {
        match (version, body) {
            (None, _) => {
                self.profiles.invalidate(&user);
                Ok(None)
            }
            (Some(version), Some(body)) => self.remember(user, version, &body).map(Some),
            (Some(_), None) => Ok(cached.map(|(_, profile)| profile)),
        }
    }

    /// The user's part of a [`Snapshot`], read on the user's slot without changing it.
    async fn peek_user(
        &self,
        user: &UserKeys,
    ) -> Result<(EventWindow, Option<Millis>, Option<Arc<UserProfile>>), StoreError> {
        let cached = self.profiles.get(&user.id);
        type Reply = (
            Vec<Millis>,
            Dropped,
            Option<Millis>,
            Option<String>,
            Option<Vec<u8>>,
        );
        let (times, dropped, locked_until, version, body): Reply = self
            .scripts
            .user_read
            .key(&user.failures)
            .key(&user.failures_dropped)
            .key(&user.lock)
            .key(&user.profile)
            .arg(cached.as_ref().map_or("", |(version, _)| version.as_str()))
            .invoke_async(&mut self.link())
            .await
            .map_err(failed)?;
        let profile = self.profile_found(user.id, cached, version, body)?;
        Ok((event_window(times, dropped), locked_until, profile))
    }

    /// An IP's counters as they are, read on its slot without changing them.
    async fn peek_ip(&self, ip: std::net::IpAddr) -> Result<IpActivity, StoreError> {
        let mut call = self.scripts.ip_read.prepare_invoke();
        for key in self.keys.ip(ip) {
            call.key(key);
        }
        type Reply = (
            Vec<Millis>,
            Dropped,
            Vec<Millis>,
            Dropped,
            Vec<String>,
            Vec<Millis>,
        );
        let (failures, failures_dropped, attempts, attempts_dropped, users, seen): Reply =
            call.invoke_async(&mut self.link()).await.map_err(failed)?;
        Ok(IpActivity {
            failures: event_window(failures, failures_dropped),
            attempts: event_window(attempts, attempts_dropped),
            users: distinct_window(users, seen),
        })
    }

    /// A device's counters as they are, read on its slot without changing them.
    async fn peek_device(&self, device: &str) -> Result<DeviceActivity, StoreError> {
        let (users, seen): (Vec<String>, Vec<Millis>) = self
            .scripts
            .device_read
            .key(self.keys.device(key(device)))
            .invoke_async(&mut self.link())
            .await
            .map_err(failed)?;
        Ok(DeviceActivity {
            users: distinct_window(users, seen),
        })
    }

    /// Decodes a profile read from Redis and caches it under its version.
    fn remember(
        &self,
        user: u64,
        version: String,
        body: &[u8],
    ) -> Result<Arc<UserProfile>, StoreError> {
        let profile = Arc::new(decode::<UserProfile>(body)?);
        self.profiles.insert(user, (version, Arc::clone(&profile)));
        Ok(profile)
    }

    /// Counts an attempt (`attempt`), its wrong password (`failed`), or both, on the IP's
    /// slot; returns the IP's counts.
    async fn observe_ip(
        &self,
        ip: std::net::IpAddr,
        user: u64,
        failed_login: bool,
        attempt: bool,
        now: Millis,
    ) -> Result<[i64; 6], StoreError> {
        let mut call = self.scripts.ip_observe.prepare_invoke();
        for key in self.keys.ip(ip) {
            call.key(key);
        }
        let counts: Vec<i64> = call
            .arg(now)
            .arg(u8::from(failed_login))
            .arg(u8::from(attempt))
            .arg(event_member())
            .arg(user_member(user))
            .invoke_async(&mut self.link())
            .await
            .map_err(failed)?;
        counts
            .try_into()
            .map_err(|_| StoreError::Backend("Redis: unexpected IP counts".to_owned()))
    }

    /// Counts the user on the device's slot; returns its distinct users.
    async fn observe_device(
        &self,
        device: &str,
        user: u64,
        now: Millis,
    ) -> Result<i64, StoreError> {
        self.scripts
            .device_observe
            .key(self.keys.device(key(device)))
            .arg(now)
            .arg(user_member(user))
            .invoke_async(&mut self.link())
            .await
            .map_err(failed)
    }

    /// The user's profile and its version, from the cache or Redis.
    async fn read_profile(
        &self,
        user: &UserKeys,
    ) -> Result<Option<(String, Arc<UserProfile>)>, StoreError> {
        if let Some(cached) = self.profiles.get(&user.id) {
            return Ok(Some(cached));
        }
        let (version, body): (Option<String>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&user.profile)
            .arg("v")
            .arg("b")
            .query_async(&mut self.link())
            .await
            .map_err(failed)?;
        match (version, body) {
            (Some(version), Some(body)) => {
                let profile = self.remember(user.id, version.clone(), &body)?;
                Ok(Some((version, profile)))
            }
            _ => Ok(None),
        }
    }

    /// Changes the user's profile (a new one if `create`) with a compare-and-swap, retried
    /// when another replica changed it first; `None` when there is none to change.
    async fn change_profile<R>(
        &self,
        user_id: &str,
        create: bool,
        mut change: impl FnMut(&mut UserProfile) -> R,
    ) -> Result<Option<R>, StoreError> {
        let user = self.keys.user(user_id);
        let stripe = (user.id % PROFILE_TURNS as u64) as usize;
        let _turn = match self.profile_turns.get(stripe) {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        let mut current = self.read_profile(&user).await?;
        for _ in 0..PROFILE_SWAP_TRIES {
            let (expected, mut profile) = match &current {
                Some((version, profile)) => (version.as_str(), UserProfile::clone(profile)),
                None if create => ("", UserProfile::default()),
                None => return Ok(None),
            };
            let outcome = change(&mut profile);
            let version = new_version();
            let (swapped, found, body): (i64, Option<String>, Option<Vec<u8>>) = self
                .scripts
                .profile_swap
                .key(&user.profile)
                .arg(expected)
                .arg(&version)
                .arg(encode(&profile)?)
                .arg(self.retention)
                .invoke_async(&mut self.link())
                .await
                .map_err(failed)?;
            if swapped == 1 {
                self.profiles.insert(user.id, (version, Arc::new(profile)));
                return Ok(Some(outcome));
            }
            current = match (found, body) {
                (Some(version), Some(body)) => {
                    let profile = self.remember(user.id, version.clone(), &body)?;
                    Some((version, profile))
                }
                _ => None,
            };
        }
        Err(StoreError::Backend(format!(
            "the profile changed under {PROFILE_SWAP_TRIES} updates in a row"
        )))
    }

    /// Counts a failure reported after its attempt: the user's always, the IP's for a wrong
    /// password.
    async fn count_failure(
        &self,
        attempt: &AttemptKeys<'_>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let user = self.keys.user(attempt.user_id);
        let user_only = AttemptKeys {
            user_id: attempt.user_id,
            network: None,
            failed: true,
        };
        let user_call = self.observe_user(&user_only, &user, now);
        let ip_call = async {
            match attempt.network {
                Some(network) => self
                    .observe_ip(network.ip, user.id, true, false, now)
                    .await
                    .map(drop),
                None => Ok(()),
            }
        };
        tokio::try_join!(user_call, ip_call).map(drop)
    }

    /// Removes the user from the IPs' and devices' distinct users first, then deletes their
    /// keys (the list of those networks last, so a failed erasure can be retried).
    async fn forget(&self, user_id: &str) -> Result<bool, StoreError> {
        let user = self.keys.user(user_id);
        let networks: Vec<String> = self
            .link()
            .zrange(&user.networks, 0, -1)
            .await
            .map_err(failed)?;
        let member = user_member(user.id);
        let counted = try_join_all(networks.iter().filter_map(|network| {
            let users = self.keys.network_users(network)?;
            let mut link = self.link();
            let member = member.clone();
            Some(async move { link.zrem::<_, _, i64>(users, member).await })
        }))
        .await
        .map_err(failed)?;
        let mut call = self.scripts.user_forget.prepare_invoke();
        for key in user.all() {
            call.key(key);
        }
        let removed: i64 = call.invoke_async(&mut self.link()).await.map_err(failed)?;
        self.profiles.invalidate(&user.id);
        Ok(removed > 0 || counted.iter().any(|&n| n > 0))
    }
}

impl Store for RedisStore {
    fn observe<'a>(
        &'a self,
        attempt: &'a AttemptKeys<'a>,
        now: Millis,
    ) -> StoreFuture<'a, Observation> {
        Box::pin(self.run(async move {
            let user = self.keys.user(attempt.user_id);
            let network = async {
                let Some(keys) = attempt.network else {
                    return Ok(NetworkCounts::default());
                };
                let ip = self.observe_ip(keys.ip, user.id, attempt.failed, true, now);
                let device = async {
                    match keys.device_id {
                        Some(device) => self.observe_device(device, user.id, now).await,
                        None => Ok(0),
                    }
                };
                let ([f1, f2, f3, attempts, u1, u2], device_users_24h) =
                    tokio::try_join!(ip, device)?;
                Ok(NetworkCounts {
                    ip_failures: [f1, f2, f3],
                    ip_attempts_1m: attempts,
                    ip_users: [u1, u2],
                    device_users_24h,
                })
            };
            let ((user_failures, locked_until, profile), network) =
                tokio::try_join!(self.observe_user(attempt, &user, now), network)?;
            Ok(Observation {
                counts: Counts {
                    user_failures,
                    network,
                },
                locked_until,
                profile,
            })
        }))
    }

    fn peek<'a>(&'a self, attempt: &'a AttemptKeys<'a>) -> StoreFuture<'a, Snapshot> {
        Box::pin(self.run(async move {
            let user = self.keys.user(attempt.user_id);
            let network = async {
                let Some(keys) = attempt.network else {
                    return Ok(Default::default());
                };
                let device = async {
                    match keys.device_id {
                        Some(device) => self.peek_device(device).await,
                        None => Ok(DeviceActivity::default()),
                    }
                };
                tokio::try_join!(self.peek_ip(keys.ip), device)
            };
            let ((user_failures, locked_until, profile), (ip, device)) =
                tokio::try_join!(self.peek_user(&user), network)?;
            Ok(Snapshot {
                user_failures,
                locked_until,
                profile,
                ip,
                device,
            })
        }))
    }

    fn count_failure<'a>(
        &'a self,
        attempt: &'a AttemptKeys<'a>,
        now: Millis,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.run(RedisStore::count_failure(self, attempt, now)))
    }

    fn learn<'a>(&'a self, user_id: &'a str, login: LoginFacts) -> StoreFuture<'a, ()> {
        Box::pin(self.run(async move {
            self.change_profile(user_id, true, |profile| {
                if profile.claim(user_id) {
                    profile.learn(login.clone());
                }
            })
            .await
            .map(drop)
        }))
    }

    fn trust_device<'a>(&'a self, user_id: &'a str, device: u64) -> StoreFuture<'a, bool> {
        Box::pin(self.run(async move {
            let trusted = self
                .change_profile(user_id, false, |profile| {
                    profile.belongs_to(user_id) && profile.trust_device(device)
                })
                .await?;
            Ok(trusted.unwrap_or(false))
        }))
    }

    fn lock<'a>(&'a self, user_id: &'a str, until: Millis) -> StoreFuture<'a, ()> {
        Box::pin(self.run(async move {
            // The key outlives the lock by an hour, judged by this clock: attempts carry
            // their own times, which may lag it.
            let left = until.saturating_sub(chrono::Utc::now().timestamp_millis());
            self.scripts
                .lock
                .key(self.keys.user(user_id).lock)
                .arg(until)
                .arg(left.max(0).saturating_add(HOUR))
                .invoke_async::<i64>(&mut self.link())
                .await
                .map(drop)
                .map_err(failed)
        }))
    }

    fn unlock<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.run(async move {
            // The failures that locked the account would lock it again on the next attempt.
            // A user's keys share a slot, so one transaction removes them together.
            let user = self.keys.user(user_id);
            let (removed, _): (i64, i64) = redis::pipe()
                .atomic()
                .del(&user.lock)
                .del(&[&user.failures, &user.failures_dropped])
                .query_async(&mut self.link())
                .await
                .map_err(failed)?;
            Ok(removed > 0)
        }))
    }

    fn put_pending<'a>(&'a self, request_id: &'a str, pending: Pending) -> StoreFuture<'a, ()> {
        Box::pin(self.run(async move {
            let user = self.keys.user(&pending.user_id);
            self.scripts
                .pending_put
                .key(&user.pending)
                .key(&user.pending_times)
                .arg(request_id)
                .arg(encode(&pending)?)
                .arg(pending.facts.place.at)
                .invoke_async::<i64>(&mut self.link())
                .await
                .map(drop)
                .map_err(failed)
        }))
    }

    fn take_pending<'a>(
        &'a self,
        user_id: &'a str,
        request_id: &'a str,
    ) -> StoreFuture<'a, Option<Pending>> {
        Box::pin(self.run(async move {
            let user = self.keys.user(user_id);
            let body: Option<Vec<u8>> = self
                .scripts
                .pending_take
                .key(&user.pending)
                .key(&user.pending_times)
                .arg(request_id)
                .invoke_async(&mut self.link())
                .await
                .map_err(failed)?;
            body.as_deref().map(decode).transpose()
        }))
    }

    fn profile<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Option<Arc<UserProfile>>> {
        Box::pin(self.run(async move {
            // Read afresh: another replica may have changed it since it was cached.
            let user = self.keys.user(user_id);
            self.profiles.invalidate(&user.id);
            Ok(self.read_profile(&user).await?.map(|(_, profile)| profile))
        }))
    }

    fn activity<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, UserActivity> {
        Box::pin(self.run(async move {
            let user = self.keys.user(user_id);
            type Reply = (Vec<Millis>, Dropped, Option<Millis>);
            let (times, dropped, locked_until): Reply = self
                .scripts
                .user_read
                .key(&user.failures)
                .key(&user.failures_dropped)
                .key(&user.lock)
                .invoke_async(&mut self.link())
                .await
                .map_err(failed)?;
            Ok(UserActivity {
                failures: event_window(times, dropped),
                locked_until,
            })
        }))
    }

    fn forget<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.run(RedisStore::forget(self, user_id)))
    }

    fn sweep(&self, _: Millis, _: Millis) -> StoreFuture<'_, Swept> {
        // Every key expires by itself in Redis.
        Box::pin(std::future::ready(Ok(Swept::default())))
    }

    fn committed(&self) -> Committed {
        // Redis acknowledged every change already; its own persistence settings
        // (appendonly, appendfsync) decide what survives a Redis restart.
        Box::pin(std::future::ready(Ok(())))
    }

    fn healthy(&self) -> bool {
        self.health.load(Ordering::Acquire)
    }

    fn global(&self) -> &GlobalStats {
        self.global.stats()
    }
}
