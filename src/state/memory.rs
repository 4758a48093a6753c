//! The store behind the engine: bounded maps in memory, lost on restart, or (the embedded
//! backend) the same maps caching keyspaces on disk that hold everything.

use std::sync::Arc;

use std::path::PathBuf;

use super::bounded::Placement;
use super::disk::{Disk, DiskHandle, Space};
use super::global::GlobalStats;

use super::table::Table;
use super::{
    AttemptKeys, Committed, Counts, EventWindow, LoginFacts, NetworkActivity, NetworkCounts,
    Observation, PENDING_TTL, Pending, Snapshot, Store, StoreError, StoreFuture, Swept,
    USER_FAILURES, UserActivity, UserProfile, count_user_failure, key, pending_key,
    user_failure_counts,
};
use crate::Millis;

/// Entry bounds of the in-memory backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub(crate) struct Capacity {
    /// Users without a profile with live failure counters, and (apart) locked users without
    /// a profile. Known users' counters and locks are kept whatever strangers do.
    pub users: usize,
    /// Learned profiles. Only fully successful logins create one, so floods of unknown
    /// usernames cannot evict them.
    pub profiles: usize,
    /// IPs with live counters.
    pub ips: usize,
    /// Device ids with live counters.
    pub devices: usize,
    /// Attempts awaiting their outcome.
    pub pending: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            users: 500_000,
            profiles: 200_000,
            ips: 200_000,
            devices: 200_000,
            pending: 100_000,
        }
    }
}

/// State in bounded maps, each evicting its least recently used entries; with a disk behind
/// them (the embedded backend), the maps cache what is hot and the disk keeps everything.
pub(crate) struct MemoryStore {
    /// Failures per user; a known user's (one with a profile) are pinned, so a flood of
    /// failing unknown usernames cannot evict them.
    failures: Table<EventWindow>,
    /// When each lock ends. Apart from the failures, so failing junk usernames never compete
    /// with a lock, and pinned for known users.
    locks: Table<Millis>,
    profiles: Table<Arc<UserProfile>>,
    network: NetworkActivity,
    pending: Table<Option<Pending>>,
    /// Global frequencies of login features.
    global: GlobalStats,
    /// Where the embedded backend keeps them between runs.
    global_file: Option<PathBuf>,
    /// The disk behind the tables when durable, and its handle (declared last, so it writes
    /// what the tables staged after they are gone).
    disk: Option<(Arc<Disk>, DiskHandle)>,
}

impl MemoryStore {
    /// An empty store in memory with the given bounds, its entries placed by `placement`.
    pub(crate) fn new(capacity: Capacity, placement: Placement) -> Self {
        Self {
            failures: Table::in_memory(capacity.users, placement),
            locks: Table::in_memory(capacity.users, placement),
            profiles: Table::in_memory(capacity.profiles, placement),
            network: NetworkActivity::new(capacity.ips, capacity.devices, placement),
            pending: Table::in_memory(capacity.pending, placement),
            global: GlobalStats::new(),
            global_file: None,
            disk: None,
        }
    }

    /// A store kept on `disk`, with at most `capacity` entries of each kind in memory, placed
    /// there by a random [`Placement`] (the disk is keyed by the stable ids' hashes), and the
    /// global frequencies in `global_file` (written by each sweep and at the end).
    pub(crate) fn on_disk(
        capacity: Capacity,
        disk: Arc<Disk>,
        handle: DiskHandle,
        global_file: PathBuf,
    ) -> Self {
        let placement = Placement::random();
        let global = match std::fs::read(&global_file) {
            Ok(bytes) => GlobalStats::restore(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, file = %global_file.display(), "global statistics start afresh");
                GlobalStats::new()
            }),
            Err(_) => GlobalStats::new(),
        };
        Self {
            failures: Table::on_disk(capacity.users, placement, &disk, Space::Failures),
            locks: Table::on_disk(capacity.users, placement, &disk, Space::Locks),
            profiles: Table::on_disk(capacity.profiles, placement, &disk, Space::Profiles),
            network: NetworkActivity::on_disk(capacity.ips, capacity.devices, placement, &disk),
            pending: Table::on_disk(capacity.pending, placement, &disk, Space::Pending),
            global,
            global_file: Some(global_file),
            disk: Some((disk, handle)),
        }
    }

    /// Writes the global frequencies to their file, if kept (whole or not at all).
    fn save_global(&self) -> Result<(), StoreError> {
        let (Some(file), Some(bytes)) = (&self.global_file, self.global.snapshot()?) else {
            return Ok(());
        };
        let partial = file.with_extension("partial");
        std::fs::write(&partial, bytes)
            .and_then(|()| std::fs::rename(&partial, file))
            .map_err(|e| StoreError::Backend(format!("cannot write {}: {e}", file.display())))
    }

    /// The disk behind the tables, if durable.
    #[cfg(test)]
    pub(crate) fn disk(&self) -> Option<&Disk> {
        self.disk.as_ref().map(|(disk, _)| &**disk)
    }

    /// Entries held in memory per map: users with failures, locks, profiles, ips, devices,
    /// pending.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> [usize; 6] {
        let [ips, devices] = self.network.sizes();
        [
            self.failures.len(),
            self.locks.len(),
            self.profiles.len(),
            ips,
            devices,
            self.pending.len(),
        ]
    }

    /// Counts a user's failure (pinned if the user is `known`); returns their failures over
    /// [`USER_FAILURE_WINDOWS`].
    fn record_user_failure(
        &self,
        user_key: u64,
        known: bool,
        now: Millis,
    ) -> Result<[i64; 3], StoreError> {
        self.failures.update_pinned(user_key, known, |failures| {
            count_user_failure(failures, now)
        })
    }
}

/// Runs `f`, which takes a while (it visits whole tables), so that on a multi-threaded runtime
/// the worker's other requests move to another thread meanwhile instead of waiting.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The store's operations, answered at once; [`Store`] hands them out as ready futures.
impl MemoryStore {
    pub(crate) fn observe(
        &self,
        attempt: &AttemptKeys<'_>,
        now: Millis,
    ) -> Result<Observation, StoreError> {
        let user_key = key(attempt.user_id);
        let profile = self.own_profile(attempt.user_id)?;
        let user_failures = if attempt.failed {
            self.record_user_failure(user_key, profile.is_some(), now)?
        } else {
            self.failures
                .read(user_key, |f| user_failure_counts(f, now))?
                .unwrap_or_default()
        };
        let network = match attempt.network {
            Some(keys) => self.network.observe(keys, user_key, attempt.failed, now)?,
            None => NetworkCounts::default(),
        };
        Ok(Observation {
            counts: Counts {
                user_failures,
                network,
            },
            locked_until: self.locks.read(user_key, |until| *until)?,
            profile,
        })
    }

    pub(crate) fn peek(&self, attempt: &AttemptKeys<'_>) -> Result<Snapshot, StoreError> {
        let user_key = key(attempt.user_id);
        let profile = self.profiles.peek(user_key, Arc::clone)?;
        let (ip, device) = match attempt.network {
            Some(keys) => self.network.peek(keys)?,
            None => Default::default(),
        };
        Ok(Snapshot {
            user_failures: self
                .failures
                .peek(user_key, Clone::clone)?
                .unwrap_or_default(),
            locked_until: self.locks.peek(user_key, |until| *until)?,
            profile: profile.filter(|p| p.belongs_to(attempt.user_id)),
            ip,
            device,
        })
    }

    /// Reads from the disk, on a blocking thread, what observing `attempt` needs and memory
    /// lacks, so that a read waiting for the database holds up no other request (see
    /// [`Disk::fetch`]). Outside a runtime, or in memory only, there is nothing to do here:
    /// observing reads what it lacks itself.
    async fn fetch_missing(&self, attempt: &AttemptKeys<'_>) -> Result<(), StoreError> {
        if self.disk.is_none() || tokio::runtime::Handle::try_current().is_err() {
            return Ok(());
        }
        let user = key(attempt.user_id);
        let [ip, device] = attempt
            .network
            .map(|keys| self.network.to_fetch(keys))
            .unwrap_or_default();
        let fetches = [
            self.failures.to_fetch(user),
            self.locks.to_fetch(user),
            self.profiles.to_fetch(user),
            ip,
            device,
        ];
        if fetches.iter().all(Option::is_none) {
            return Ok(());
        }
        let read = move || fetches.map(|fetch| fetch.map(|f| f.run()).transpose());
        let [failures, locks, profile, ip, device] = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot read the state: {e}")))?;
        if let Some(fetched) = failures? {
            self.failures.fill(user, fetched)?;
        }
        if let Some(fetched) = locks? {
            self.locks.fill(user, fetched)?;
        }
        if let Some(fetched) = profile? {
            self.profiles.fill(user, fetched)?;
        }
        if let Some(keys) = attempt.network {
            self.network.fill(keys, [ip?, device?])?;
        }
        Ok(())
    }

    /// The user's profile, unless the one under their key is another id's.
    fn own_profile(&self, user_id: &str) -> Result<Option<Arc<UserProfile>>, StoreError> {
        let profile = self.profiles.read(key(user_id), Arc::clone)?;
        Ok(profile.filter(|p| p.belongs_to(user_id)))
    }

    pub(crate) fn count_failure(
        &self,
        attempt: &AttemptKeys<'_>,
        now: Millis,
    ) -> Result<(), StoreError> {
        if let Some(keys) = attempt.network {
            self.network.count_failure(keys.ip, now)?;
        }
        let known = self.own_profile(attempt.user_id)?.is_some();
        self.record_user_failure(key(attempt.user_id), known, now)?;
        Ok(())
    }

    pub(crate) fn learn(&self, user_id: &str, login: LoginFacts) -> Result<(), StoreError> {
        self.profiles.update(key(user_id), |p| {
            let profile = Arc::make_mut(p);
            if profile.claim(user_id) {
                profile.learn(login);
            }
        })
    }

    pub(crate) fn trust_device(&self, user_id: &str, device: u64) -> Result<bool, StoreError> {
        Ok(self
            .profiles
            .modify(key(user_id), |p| {
                p.belongs_to(user_id) && Arc::make_mut(p).trust_device(device)
            })?
            .unwrap_or(false))
    }

    pub(crate) fn lock(&self, user_id: &str, until: Millis) -> Result<(), StoreError> {
        let known = self.own_profile(user_id)?.is_some();
        self.locks
            .update_pinned(key(user_id), known, |end| *end = (*end).max(until))
    }

    pub(crate) fn unlock(&self, user_id: &str) -> Result<bool, StoreError> {
        let user = key(user_id);
        // The failures that locked the account would lock it again on the next attempt.
        self.failures.remove(user)?;
        Ok(self.locks.remove(user)?.is_some())
    }

    pub(crate) fn put_pending(&self, request_id: &str, pending: Pending) -> Result<(), StoreError> {
        let key = pending_key(&pending.user_id, request_id);
        self.pending.put(key, Some(pending))
    }

    pub(crate) fn take_pending(
        &self,
        user_id: &str,
        request_id: &str,
    ) -> Result<Option<Pending>, StoreError> {
        let key = pending_key(user_id, request_id);
        Ok(self.pending.remove(key)?.flatten())
    }

    pub(crate) fn profile(&self, user_id: &str) -> Result<Option<Arc<UserProfile>>, StoreError> {
        self.profiles.read(key(user_id), Arc::clone)
    }

    pub(crate) fn activity(&self, user_id: &str) -> Result<UserActivity, StoreError> {
        let k = key(user_id);
        Ok(UserActivity {
            failures: self.failures.read(k, Clone::clone)?.unwrap_or_default(),
            locked_until: self.locks.read(k, |until| *until)?,
        })
    }

    pub(crate) fn forget(&self, user_id: &str) -> Result<bool, StoreError> {
        let k = key(user_id);
        let had_profile =
            self.own_profile(user_id)?.is_some() && self.profiles.remove(k)?.is_some();
        let had_failures = self.failures.remove(k)?.is_some();
        let had_lock = self.locks.remove(k)?.is_some();
        // Attempts awaiting their outcome go too: a late `mfa_passed` must not bring the
        // profile back. Pending attempts are keyed by request id, so they are searched.
        let pending = self
            .pending
            .retain(|p| p.as_ref().is_none_or(|p| p.user_id != user_id))?;
        let counted = self.network.forget_user(k)?;
        Ok(had_profile || had_failures || had_lock || pending > 0 || counted)
    }

    pub(crate) fn sweep(&self, now: Millis, retention: Millis) -> Result<Swept, StoreError> {
        let failures = self.failures.retain(|f| f.is_live(now, USER_FAILURES.0))?;
        let locks = self.locks.retain(|until| *until > now)?;
        let pending = self.pending.retain(|p| {
            p.as_ref()
                .is_some_and(|p| p.facts.place.at > now - PENDING_TTL)
        })?;
        let network = self.network.expire(now)?;
        let profiles = self.profiles.retain(|p| {
            let last = p.last_login().map_or(p.first_seen, |login| login.at);
            last > now - retention
        })?;
        // Statistics kept or not, the sweep has done its work.
        if let Err(e) = self.save_global() {
            tracing::warn!(error = %e, "the global statistics were not kept");
        }
        Ok(Swept {
            profiles,
            expired: failures + locks + pending + network,
        })
    }
}

impl Store for MemoryStore {
    fn observe<'a>(
        &'a self,
        attempt: &'a AttemptKeys<'a>,
        now: Millis,
    ) -> StoreFuture<'a, Observation> {
        Box::pin(async move {
            self.fetch_missing(attempt).await?;
            MemoryStore::observe(self, attempt, now)
        })
    }

    fn peek<'a>(&'a self, attempt: &'a AttemptKeys<'a>) -> StoreFuture<'a, Snapshot> {
        ready(MemoryStore::peek(self, attempt))
    }

    fn count_failure<'a>(
        &'a self,
        attempt: &'a AttemptKeys<'a>,
        now: Millis,
    ) -> StoreFuture<'a, ()> {
        ready(MemoryStore::count_failure(self, attempt, now))
    }

    fn learn<'a>(&'a self, user_id: &'a str, login: LoginFacts) -> StoreFuture<'a, ()> {
        ready(MemoryStore::learn(self, user_id, login))
    }

    fn trust_device<'a>(&'a self, user_id: &'a str, device: u64) -> StoreFuture<'a, bool> {
        ready(MemoryStore::trust_device(self, user_id, device))
    }

    fn lock<'a>(&'a self, user_id: &'a str, until: Millis) -> StoreFuture<'a, ()> {
        ready(MemoryStore::lock(self, user_id, until))
    }

    fn unlock<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, bool> {
        ready(MemoryStore::unlock(self, user_id))
    }

    fn put_pending<'a>(&'a self, request_id: &'a str, pending: Pending) -> StoreFuture<'a, ()> {
        ready(MemoryStore::put_pending(self, request_id, pending))
    }

    fn take_pending<'a>(
        &'a self,
        user_id: &'a str,
        request_id: &'a str,
    ) -> StoreFuture<'a, Option<Pending>> {
        ready(MemoryStore::take_pending(self, user_id, request_id))
    }

    fn profile<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Option<Arc<UserProfile>>> {
        ready(MemoryStore::profile(self, user_id))
    }

    fn activity<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, UserActivity> {
        ready(MemoryStore::activity(self, user_id))
    }

    fn forget<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, bool> {
        // Erasure visits every parked attempt, IP and device (on the disk too, when durable):
        // the worker running it first hands its other requests to another thread.
        ready(blocking(|| MemoryStore::forget(self, user_id)))
    }

    fn sweep(&self, now: Millis, retention: Millis) -> StoreFuture<'_, Swept> {
        ready(MemoryStore::sweep(self, now, retention))
    }

    fn committed(&self) -> Committed {
        match &self.disk {
            Some((disk, _)) => disk.committed(),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn healthy(&self) -> bool {
        self.disk.as_ref().is_none_or(|(disk, _)| disk.healthy())
    }

    fn global(&self) -> &GlobalStats {
        &self.global
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        if let Err(e) = self.save_global() {
            tracing::warn!(error = %e, "the global statistics were not kept");
        }
    }
}

/// A result already there, as the future [`Store`] returns.
fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::state::NetworkKeys;
    use crate::state::bounded::SHARDED_FROM;

    /// A read made off the runtime ([`MemoryStore::fetch_missing`]) is cached only while it
    /// is still the key's latest: a change made between the read and its caching, staged or
    /// already in the database, is never undone (an unlock, an erasure, a newer lock).
    #[test]
    fn a_key_read_off_the_runtime_is_cached_only_while_it_is_the_latest() {
        use crate::state::embedded::{self, SyncMode};
        let dir = tempfile::tempdir().unwrap();
        let tiny = Capacity {
            users: 2,
            profiles: 2,
            ips: 2,
            devices: 2,
            pending: 2,
        };
        {
            let store = embedded::open(dir.path(), tiny, SyncMode::No).unwrap();
            for user in ["bob", "carol", "dave"] {
                store.lock(user, 5_000).unwrap();
            }
        }
        let store = embedded::open(dir.path(), tiny, SyncMode::No).unwrap();
        let read = |user| {
            let fetch = store.locks.to_fetch(key(user)).expect("on disk only");
            fetch.run().unwrap()
        };
        let until = |user| store.activity(user).unwrap().locked_until;

        // Unlocked after the read: the change is staged, and wins.
        let bob = read("bob");
        assert!(store.unlock("bob").unwrap());
        store.locks.fill(key("bob"), bob).unwrap();
        assert_eq!(until("bob"), None, "an unlock is never undone");

        // Locked for longer after the read, written to the database and evicted: the read
        // may be stale, so it is not cached, and the next use reads the disk.
        let carol = read("carol");
        store.lock("carol", 9_000).unwrap();
        crate::state::finish(store.committed()).unwrap();
        store.disk().unwrap().wait_until_applied();
        for i in 0..100 {
            store.lock(&format!("other{i}"), 1).unwrap();
        }
        assert!(store.locks.to_fetch(key("carol")).is_some(), "evicted");
        store.locks.fill(key("carol"), carol).unwrap();
        assert_eq!(until("carol"), Some(9_000));

        // Unchanged: cached as read.
        let dave = read("dave");
        store.locks.fill(key("dave"), dave).unwrap();
        assert!(store.locks.to_fetch(key("dave")).is_none(), "cached");
        assert_eq!(until("dave"), Some(5_000));
    }

    #[test]
    fn a_flood_of_random_users_and_ips_stays_within_the_bounds() {
        let capacity = Capacity {
            users: 5_000,
            profiles: 1_000,
            ips: 5_000,
            devices: 5_000,
            pending: 1_000,
        };
        let store = MemoryStore::new(capacity, Placement::random());
        for i in 0..200_000u32 {
            let user = format!("random-{i}");
            let device = format!("dev-{i}");
            let keys = AttemptKeys {
                user_id: &user,
                network: Some(NetworkKeys {
                    ip: IpAddr::V4(i.into()),
                    device_id: Some(&device),
                }),
                failed: i % 2 == 0,
            };
            store.observe(&keys, i64::from(i)).unwrap();
        }
        let [users, locks, profiles, ips, devices, pending] = store.sizes();
        assert!(users <= 5_000 + 64 && ips <= 5_000 + 64 && devices <= 5_000 + 64);
        assert_eq!(
            locks, 0,
            "failing never locks by itself: only a policy does"
        );
        assert_eq!(
            (profiles, pending),
            (0, 0),
            "failing strangers never create profiles"
        );
    }

    #[test]
    fn a_lock_survives_a_flood_of_failing_junk_usernames() {
        let store = MemoryStore::new(
            Capacity {
                users: 5_000,
                ..Capacity::default()
            },
            Placement::random(),
        );
        store.lock("victim", 1_000_000).unwrap();
        for i in 0..100_000u32 {
            let user = format!("junk-{i}");
            let keys = AttemptKeys {
                user_id: &user,
                network: None,
                failed: true,
            };
            store.observe(&keys, i64::from(i)).unwrap();
        }
        let keys = AttemptKeys {
            user_id: "victim",
            network: None,
            failed: false,
        };
        assert_eq!(
            store.observe(&keys, 100_000).unwrap().locked_until,
            Some(1_000_000)
        );
    }

    /// An attempt by `user_id` from one London IP on the device `laptop`.
    fn from_laptop(user_id: &str, failed: bool) -> AttemptKeys<'_> {
        AttemptKeys {
            user_id,
            network: Some(NetworkKeys {
                ip: IpAddr::from([81, 2, 69, 10]),
                device_id: Some("laptop"),
            }),
            failed,
        }
    }

    #[test]
    fn a_peek_counts_as_observe_would_and_changes_nothing() {
        let store = MemoryStore::new(Capacity::default(), Placement::random());
        store.learn("alice", LoginFacts::default()).unwrap();
        for (at, user) in [(1_000, "alice"), (2_000, "bob"), (3_000, "carol")] {
            store.observe(&from_laptop(user, true), at).unwrap();
        }
        store.lock("alice", 90_000).unwrap();
        for (at, failed) in [(5_000, false), (6_000, true)] {
            let keys = from_laptop("alice", failed);
            let before = (store.sizes(), store.activity("alice").unwrap());
            let peeked = store.peek(&keys).unwrap().counted(&keys, at);
            let again = store.peek(&keys).unwrap().counted(&keys, at);
            assert_eq!(
                peeked.counts, again.counts,
                "the first peek counted nothing"
            );
            assert_eq!((store.sizes(), store.activity("alice").unwrap()), before);
            let observed = store.observe(&keys, at).unwrap();
            assert_eq!(peeked.counts, observed.counts, "failed: {failed}");
            assert_eq!(peeked.locked_until, Some(90_000));
            assert_eq!(peeked.profile, observed.profile);
        }
        let counts = store
            .peek(&from_laptop("dave", true))
            .unwrap()
            .counted(&from_laptop("dave", true), 7_000)
            .counts;
        assert_eq!(counts.user_failures, [1, 1, 1]);
        assert_eq!(
            counts.network.ip_failures,
            [5, 5, 5],
            "four counted, and this one"
        );
        assert_eq!(counts.network.ip_users, [4, 4]);
        assert_eq!(counts.network.device_users_24h, 4);
    }

    fn failing(user_id: &str) -> AttemptKeys<'_> {
        AttemptKeys {
            user_id,
            network: None,
            failed: true,
        }
    }

    #[test]
    fn a_known_users_lock_and_failures_survive_a_flood_of_junk_failures_and_junk_locks() {
        let tiny = Capacity {
            users: SHARDED_FROM,
            ..Capacity::default()
        };
        let store = MemoryStore::new(tiny, Placement::random());
        store.learn("victim", LoginFacts::default()).unwrap();
        for at in 1..=3 {
            store.observe(&failing("victim"), at).unwrap();
        }
        store.lock("victim", 10_000_000).unwrap();
        // The attacker fails once on each of many junk names and gets many of them locked,
        // far more than the maps hold.
        for i in 0..(40 * SHARDED_FROM as i64) {
            let user = format!("junk-{i}");
            store.observe(&failing(&user), 100 + i).unwrap();
            if i % 4 == 0 {
                store.lock(&user, 10_000_000).unwrap();
            }
        }
        let activity = store.activity("victim").unwrap();
        assert_eq!(activity.locked_until, Some(10_000_000));
        assert_eq!(activity.failures.count(1_000, crate::DAY), 3);
        let [users, locks, ..] = store.sizes();
        assert!(users <= SHARDED_FROM + 64 + 1 && locks <= SHARDED_FROM + 64 + 1);
    }

    #[test]
    fn a_profile_stored_under_a_colliding_hash_is_another_ids_and_stays_theirs() {
        let store = MemoryStore::new(Capacity::default(), Placement::random());
        // What a second id hashing like `alice` would find: her profile under its key.
        store.learn("alice", LoginFacts::default()).unwrap();
        let intruder = "alice-twin";
        store
            .profiles
            .update(key(intruder), |p| *p = Arc::new(UserProfile::new("alice")))
            .unwrap();
        store.learn(intruder, LoginFacts::default()).unwrap();
        let observed = store.observe(&failing(intruder), 1).unwrap();
        assert!(observed.profile.is_none(), "{observed:?}");
        assert!(!store.trust_device(intruder, 1).unwrap());
        let theirs = store.profiles.read(key(intruder), Arc::clone).unwrap();
        assert_eq!(
            theirs.map(|p| p.successes),
            Some(0),
            "nothing learned into it"
        );
        store.forget(intruder).unwrap();
        let kept = store
            .profiles
            .read(key(intruder), |p| p.user_id.clone())
            .unwrap();
        assert_eq!(
            kept.as_deref(),
            Some("alice"),
            "erasing one id never erases another's"
        );
    }
}
