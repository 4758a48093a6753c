//! Cross-user counters: per IP (IPv6 per /64) and per device id.
//!
//! They are the only state shared between users, so they live apart: a backend keeps them
//! beside its per-user state, and replay keeps them centrally while per-user state is split
//! across threads.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use std::sync::Arc;

use super::StoreError;
use super::bounded::Placement;
use super::disk::{Disk, Fetched, Space};
use super::table::{Fetch, Table};
use super::{DistinctWindow, EventWindow};
use crate::{DAY, HOUR, MINUTE, Millis};

/// How long and how many failures are kept per IP (the longest IP window is 24 h).
pub(crate) const IP_FAILURES: (Millis, usize) = (DAY, 128);
/// How long and how many attempts are kept per IP.
pub(crate) const IP_ATTEMPTS: (Millis, usize) = (10 * MINUTE, 128);
/// Distinct users remembered per IP and per device.
pub(crate) const DISTINCT_USERS: usize = 64;
/// Window of [`NetworkCounts::device_users_24h`].
pub(crate) const DEVICE_USERS_WINDOW: Millis = DAY;
/// Window lengths of [`NetworkCounts::ip_failures`].
pub(crate) const IP_FAILURE_WINDOWS: [Millis; 3] = [10 * MINUTE, HOUR, DAY];
/// Window lengths of [`NetworkCounts::ip_users`].
pub(crate) const IP_USER_WINDOWS: [Millis; 2] = [HOUR, DAY];

/// Where an attempt came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetworkKeys<'a> {
    /// The client IP, already reduced to its counting bucket.
    pub ip: IpAddr,
    /// The explicit device id, when the IdP sent one.
    pub device_id: Option<&'a str>,
}

/// Counts of one attempt's IP and device, each over `(now - window, now]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NetworkCounts {
    /// Wrong passwords from the IP in 10 minutes, 1 hour and 24 hours.
    pub ip_failures: [i64; 3],
    /// Attempts from the IP in the last minute.
    pub ip_attempts_1m: i64,
    /// Distinct users tried from the IP in the last hour and the last 24 hours.
    pub ip_users: [i64; 2],
    /// Distinct users on the device id in the last 24 hours.
    pub device_users_24h: i64,
}

/// Live counters of one IP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct IpActivity {
    /// Wrong passwords from it.
    pub failures: EventWindow,
    /// All attempts from it.
    pub attempts: EventWindow,
    /// Users tried from it.
    pub users: DistinctWindow,
}

impl IpActivity {
    /// True while any of its windows still counts something.
    pub(crate) fn is_live(&self, now: Millis) -> bool {
        self.failures.is_live(now, IP_FAILURES.0)
            || self.attempts.is_live(now, IP_ATTEMPTS.0)
            || self.users.is_live(now, DAY)
    }

    /// Counts an attempt by `user` (its key) at `now`, and its wrong password if `failed`;
    /// returns the IP's counts including it (the device's left at zero).
    pub(crate) fn count_attempt(&mut self, user: u64, failed: bool, now: Millis) -> NetworkCounts {
        if failed {
            let (horizon, cap) = IP_FAILURES;
            self.failures.push(now, horizon, cap);
        }
        let (horizon, cap) = IP_ATTEMPTS;
        self.attempts.push(now, horizon, cap);
        self.users.push(user, now, DISTINCT_USERS);
        NetworkCounts {
            ip_failures: IP_FAILURE_WINDOWS.map(|w| self.failures.count(now, w)),
            ip_attempts_1m: self.attempts.count(now, MINUTE),
            ip_users: IP_USER_WINDOWS.map(|w| self.users.count_including(user, now, w)),
            device_users_24h: 0,
        }
    }
}

/// Live counters of one device id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceActivity {
    /// Users seen on it.
    pub users: DistinctWindow,
}

impl DeviceActivity {
    /// Counts `user` (its key) on the device at `now`; returns its distinct users including
    /// them.
    pub(crate) fn count_user(&mut self, user: u64, now: Millis) -> i64 {
        self.users.push(user, now, DISTINCT_USERS);
        self.users.count_including(user, now, DEVICE_USERS_WINDOW)
    }
}

/// IP and device counters in bounded maps, with a disk behind them in the embedded backend.
pub(crate) struct NetworkActivity {
    ips: Table<IpActivity>,
    devices: Table<DeviceActivity>,
}

/// The key an IP's counters are stored under.
pub(crate) fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => xxh3_64(&v4.octets()),
        IpAddr::V6(v6) => xxh3_64(&v6.octets()),
    }
}

impl NetworkActivity {
    /// Empty counters in memory for at most `ips` IPs and `devices` device ids.
    pub(crate) fn new(ips: usize, devices: usize, placement: Placement) -> Self {
        Self {
            ips: Table::in_memory(ips, placement),
            devices: Table::in_memory(devices, placement),
        }
    }

    /// Counters kept on `disk`, with at most `ip_capacity` and `device_capacity` entries in
    /// memory.
    pub(crate) fn on_disk(
        ip_capacity: usize,
        device_capacity: usize,
        placement: Placement,
        disk: &Arc<Disk>,
    ) -> Self {
        Self {
            ips: Table::on_disk(ip_capacity, placement, disk, Space::Ips),
            devices: Table::on_disk(device_capacity, placement, disk, Space::Devices),
        }
    }

    /// Counts an attempt by `user` (its key) from `keys`, and its wrong password if `failed`;
    /// returns the counts including it.
    pub(crate) fn observe(
        &self,
        keys: NetworkKeys<'_>,
        user: u64,
        failed: bool,
        now: Millis,
    ) -> Result<NetworkCounts, StoreError> {
        let mut counts = self
            .ips
            .update(ip_key(keys.ip), |ip| ip.count_attempt(user, failed, now))?;
        if let Some(id) = keys.device_id {
            counts.device_users_24h = self
                .devices
                .update(super::key(id), |d| d.count_user(user, now))?;
        }
        Ok(counts)
    }

    /// The reads from the disk observing `keys` would make: the IP's, the device's.
    pub(crate) fn to_fetch(&self, keys: NetworkKeys<'_>) -> [Option<Fetch>; 2] {
        let device = keys.device_id.map(super::key);
        [
            self.ips.to_fetch(ip_key(keys.ip)),
            device.and_then(|device| self.devices.to_fetch(device)),
        ]
    }

    /// Caches what the reads of [`NetworkActivity::to_fetch`] found (see [`Table::fill`]).
    pub(crate) fn fill(
        &self,
        keys: NetworkKeys<'_>,
        [ip, device]: [Option<Fetched>; 2],
    ) -> Result<(), StoreError> {
        if let Some(fetched) = ip {
            self.ips.fill(ip_key(keys.ip), fetched)?;
        }
        if let (Some(fetched), Some(id)) = (device, keys.device_id) {
            self.devices.fill(super::key(id), fetched)?;
        }
        Ok(())
    }

    /// The counters of `keys` as they are, changing nothing (see [`Table::peek`]).
    pub(crate) fn peek(
        &self,
        keys: NetworkKeys<'_>,
    ) -> Result<(IpActivity, DeviceActivity), StoreError> {
        let ip = self.ips.peek(ip_key(keys.ip), Clone::clone)?;
        let device = match keys.device_id {
            Some(id) => self.devices.peek(super::key(id), Clone::clone)?,
            None => None,
        };
        Ok((ip.unwrap_or_default(), device.unwrap_or_default()))
    }

    /// Removes `user` (its key) from every IP's and device's distinct users; returns whether
    /// any held it. Visits every entry: for erasure only.
    pub(crate) fn forget_user(&self, user: u64) -> Result<bool, StoreError> {
        let mut found = false;
        self.ips.retain(|ip| {
            found |= ip.users.forget(user);
            true
        })?;
        self.devices.retain(|device| {
            found |= device.users.forget(user);
            true
        })?;
        Ok(found)
    }

    /// Removes the counters nothing recent is left in; returns how many.
    pub(crate) fn expire(&self, now: Millis) -> Result<usize, StoreError> {
        let ips = self.ips.retain(|ip| ip.is_live(now))?;
        let devices = self
            .devices
            .retain(|d| d.users.is_live(now, DEVICE_USERS_WINDOW))?;
        Ok(ips + devices)
    }

    /// Counts a wrong password from `ip` reported after its attempt was observed.
    pub(crate) fn count_failure(&self, ip: IpAddr, now: Millis) -> Result<(), StoreError> {
        let (horizon, cap) = IP_FAILURES;
        self.ips
            .update(ip_key(ip), |ip| ip.failures.push(now, horizon, cap))
    }

    /// Entries held: IPs, devices.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> [usize; 2] {
        [self.ips.len(), self.devices.len()]
    }
}
