//! The in-memory backend: bounded maps, lost on restart.

use std::sync::Arc;

use super::bounded::BoundedMap;
use super::{
    AttemptKeys, Counts, LoginFacts, NetworkActivity, Observation, Pending, Store, StoreError,
    USER_FAILURES, UserActivity, UserProfile, key,
};
use crate::Millis;

/// Entry bounds of the in-memory backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Capacity {
    /// Users with live counters (failures, locks).
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

/// State in bounded in-process maps; each map evicts its least recently used entries.
pub struct MemoryStore {
    users: BoundedMap<UserActivity>,
    profiles: BoundedMap<Arc<UserProfile>>,
    network: NetworkActivity,
    pending: BoundedMap<Option<Pending>>,
}

impl MemoryStore {
    /// An empty store with the given bounds.
    pub fn new(capacity: Capacity) -> Self {
        Self {
            users: BoundedMap::new(capacity.users),
            profiles: BoundedMap::new(capacity.profiles),
            network: NetworkActivity::new(capacity.ips, capacity.devices),
            pending: BoundedMap::new(capacity.pending),
        }
    }

    /// Entries held per map: users, profiles, ips, devices, pending.
    pub fn sizes(&self) -> [usize; 5] {
        let [ips, devices] = self.network.sizes();
        [
            self.users.len(),
            self.profiles.len(),
            ips,
            devices,
            self.pending.len(),
        ]
    }

    fn record_user_failure(&self, user_key: u64, now: Millis) -> UserActivityView {
        let (horizon, cap) = USER_FAILURES;
        self.users.update(user_key, |user| {
            user.failures.push(now, horizon, cap);
            UserActivityView::of(user, now)
        })
    }
}

/// What an observation needs of a user's counters, read under the shard lock.
#[derive(Default)]
struct UserActivityView {
    failures: [i64; 3],
    locked_until: Option<Millis>,
}

impl UserActivityView {
    fn of(user: &UserActivity, now: Millis) -> Self {
        Self {
            failures: user.failure_counts(now),
            locked_until: user.locked_until,
        }
    }
}

impl Store for MemoryStore {
    fn observe(&self, attempt: &AttemptKeys<'_>, now: Millis) -> Result<Observation, StoreError> {
        let user_key = key(attempt.user_id);
        let user = if attempt.failed {
            self.record_user_failure(user_key, now)
        } else {
            self.users
                .get(user_key, |u| UserActivityView::of(u, now))
                .unwrap_or_default()
        };
        let network = attempt
            .network
            .map(|keys| self.network.observe(keys, user_key, attempt.failed, now))
            .unwrap_or_default();
        Ok(Observation {
            counts: Counts {
                user_failures: user.failures,
                network,
            },
            locked_until: user.locked_until,
            profile: self.profiles.get(user_key, |p| Arc::clone(p)),
        })
    }

    fn count_failure(&self, attempt: &AttemptKeys<'_>, now: Millis) -> Result<(), StoreError> {
        if let Some(keys) = attempt.network {
            self.network.count_failure(keys.ip, now);
        }
        self.record_user_failure(key(attempt.user_id), now);
        Ok(())
    }

    fn learn(&self, user_id: &str, login: LoginFacts) -> Result<(), StoreError> {
        self.profiles.update(key(user_id), |p| {
            let profile = Arc::make_mut(p);
            if profile.user_id.is_empty() {
                profile.user_id = user_id.to_owned();
            }
            profile.learn(login);
        });
        Ok(())
    }

    fn trust_device(&self, user_id: &str, device: u64) -> Result<bool, StoreError> {
        Ok(self
            .profiles
            .get(key(user_id), |p| Arc::make_mut(p).trust_device(device))
            .unwrap_or(false))
    }

    fn lock(&self, user_id: &str, until: Millis) -> Result<(), StoreError> {
        self.users.update(key(user_id), |u| {
            u.locked_until = Some(u.locked_until.map_or(until, |t| t.max(until)));
        });
        Ok(())
    }

    fn unlock(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .users
            .get(key(user_id), |u| u.locked_until.take().is_some())
            .unwrap_or(false))
    }

    fn put_pending(&self, request_id: &str, pending: Pending) -> Result<(), StoreError> {
        self.pending
            .update(key(request_id), |slot| *slot = Some(pending));
        Ok(())
    }

    fn take_pending(&self, request_id: &str) -> Result<Option<Pending>, StoreError> {
        Ok(self.pending.remove(key(request_id)).flatten())
    }

    fn profile(&self, user_id: &str) -> Result<Option<Arc<UserProfile>>, StoreError> {
        Ok(self.profiles.get(key(user_id), |p| Arc::clone(p)))
    }

    fn activity(&self, user_id: &str) -> Result<UserActivity, StoreError> {
        Ok(self
            .users
            .get(key(user_id), |u| u.clone())
            .unwrap_or_default())
    }

    fn forget(&self, user_id: &str) -> Result<bool, StoreError> {
        let k = key(user_id);
        let had_profile = self.profiles.remove(k).is_some();
        let had_activity = self.users.remove(k).is_some();
        Ok(had_profile || had_activity)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::state::NetworkKeys;

    #[test]
    fn a_flood_of_random_users_and_ips_stays_within_the_bounds() {
        let capacity = Capacity {
            users: 5_000,
            profiles: 1_000,
            ips: 5_000,
            devices: 5_000,
            pending: 1_000,
        };
        let store = MemoryStore::new(capacity);
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
        let [users, profiles, ips, devices, pending] = store.sizes();
        assert!(users <= 5_000 + 64 && ips <= 5_000 + 64 && devices <= 5_000 + 64);
        assert_eq!(
            (profiles, pending),
            (0, 0),
            "failing strangers never create profiles"
        );
    }
}
