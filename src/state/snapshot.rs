//! What-if evaluations: the state an attempt would be counted into, read without counting it,
//! and the observation counting it would give, worked out on copies.
//!
//! [`Store::observe`] counts and reads in one atomic step; [`Store::peek`] only reads, and
//! [`Snapshot::counted`] then counts the attempt on the copies with the same window code the
//! in-memory backends count with, so a simulation sees exactly the signals a real evaluation
//! at that moment would, while nothing anywhere changes.
//!
//! [`Store::observe`]: super::Store::observe
//! [`Store::peek`]: super::Store::peek

use std::sync::Arc;

use super::network::{DeviceActivity, IpActivity};
use super::{
    AttemptKeys, Counts, EventWindow, NetworkCounts, Observation, UserProfile, key,
    user_failure_counts,
};
use crate::Millis;

/// The state of one attempt's keys, as read before counting it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// The user's failures.
    pub user_failures: EventWindow,
    /// The user's lock, if any (possibly expired).
    pub locked_until: Option<Millis>,
    /// The user's learned profile, if any.
    pub profile: Option<Arc<UserProfile>>,
    /// The IP's counters (empty when the attempt has no network keys or the IP none).
    pub ip: IpActivity,
    /// The device id's counters (empty without a device id).
    pub device: DeviceActivity,
}

impl Snapshot {
    /// The observation [`Store::observe`](super::Store::observe) would return for `attempt`
    /// at `now`: the attempt, and its failure if it failed, counted on these copies.
    pub(crate) fn counted(mut self, attempt: &AttemptKeys<'_>, now: Millis) -> Observation {
        let user = key(attempt.user_id);
        if attempt.failed {
            super::count_user_failure(&mut self.user_failures, now);
        }
        let network = match attempt.network {
            Some(keys) => {
                let mut counts = self.ip.count_attempt(user, attempt.failed, now);
                if keys.device_id.is_some() {
                    counts.device_users_24h = self.device.count_user(user, now);
                }
                counts
            }
            None => NetworkCounts::default(),
        };
        Observation {
            counts: Counts {
                user_failures: user_failure_counts(&self.user_failures, now),
                network,
            },
            locked_until: self.locked_until,
            profile: self.profile,
        }
    }
}
