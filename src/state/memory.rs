//! The in-memory backend: bounded maps, lost on restart.

use std::net::IpAddr;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::bounded::BoundedMap;
use super::{
    AttemptKeys, Counts, DEVICE_USERS_WINDOW, DISTINCT_USERS, DeviceActivity, IP_ATTEMPTS,
    IP_FAILURES, IpActivity, LoginFacts, Observation, Pending, Store, StoreError, USER_FAILURES,
    UserActivity, UserProfile,
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
    ips: BoundedMap<IpActivity>,
    devices: BoundedMap<DeviceActivity>,
    pending: BoundedMap<Option<Pending>>,
}

fn key(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => xxh3_64(&v4.octets()),
        IpAddr::V6(v6) => xxh3_64(&v6.octets()),
    }
}

impl MemoryStore {
    /// An empty store with the given bounds.
    pub fn new(capacity: Capacity) -> Self {
        Self {
            users: BoundedMap::new(capacity.users),
            profiles: BoundedMap::new(capacity.profiles),
            ips: BoundedMap::new(capacity.ips),
            devices: BoundedMap::new(capacity.devices),
            pending: BoundedMap::new(capacity.pending),
        }
    }

    /// Entries held per map: users, profiles, ips, devices, pending.
    pub fn sizes(&self) -> [usize; 5] {
        [
            self.users.len(),
            self.profiles.len(),
            self.ips.len(),
            self.devices.len(),
            self.pending.len(),
        ]
    }

    fn record_failure(&self, attempt: &AttemptKeys<'_>, now: Millis) -> UserActivityView {
        let (horizon, cap) = IP_FAILURES;
        self.ips
            .update(ip_key(attempt.ip), |ip| ip.failures.push(now, horizon, cap));
        let (horizon, cap) = USER_FAILURES;
        self.users.update(key(attempt.user_id), |user| {
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
            self.record_failure(attempt, now)
        } else {
            self.users
                .get(user_key, |u| UserActivityView::of(u, now))
                .unwrap_or_default()
        };
        let mut counts = Counts {
            user_failures: user.failures,
            ..Counts::default()
        };
        self.ips.update(ip_key(attempt.ip), |ip| {
            let (horizon, cap) = IP_ATTEMPTS;
            ip.attempts.push(now, horizon, cap);
            ip.users.push(user_key, now, DISTINCT_USERS);
            ip.fill(now, &mut counts);
        });
        if let Some(id) = attempt.device_id {
            counts.device_users_24h = self.devices.update(key(id), |d| {
                d.users.push(user_key, now, DISTINCT_USERS);
                d.users.count(now, DEVICE_USERS_WINDOW)
            });
        }
        Ok(Observation {
            counts,
            locked_until: user.locked_until,
            profile: self.profiles.get(user_key, |p| Arc::clone(p)),
        })
    }

    fn count_failure(&self, attempt: &AttemptKeys<'_>, now: Millis) -> Result<(), StoreError> {
        self.record_failure(attempt, now);
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
    use super::*;

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
                ip: IpAddr::V4(i.into()),
                device_id: Some(&device),
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
