//! The Lua scripts, each run atomically on one slot, with riskgate's window constants
//! written in front of them so Rust and Lua share one definition.

use redis::Script;

use crate::state::network::{
    DEVICE_USERS_WINDOW, DISTINCT_USERS, IP_ATTEMPTS, IP_FAILURE_WINDOWS, IP_FAILURES,
    IP_USER_WINDOWS,
};
use crate::state::{PENDING_TTL, USER_FAILURE_WINDOWS, USER_FAILURES};
use crate::{DAY, MINUTE};

/// Attempts parked per user; beyond it the oldest are dropped (a flood of checks for one
/// user cannot grow its slot without bound).
pub(super) const PENDING_CAP: usize = 256;
/// IPs and devices remembered per user for erasure, each for a day: their distinct-user
/// windows forget the user a day after it was last seen there.
pub(super) const NETWORKS_CAP: usize = 1024;

/// The scripts, loaded by hash on first use on each node.
pub(super) struct Scripts {
    pub user_observe: Script,
    pub user_read: Script,
    pub user_forget: Script,
    pub ip_observe: Script,
    pub ip_read: Script,
    pub device_observe: Script,
    pub device_read: Script,
    pub lock: Script,
    pub profile_swap: Script,
    pub pending_put: Script,
    pub pending_take: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let prelude = prelude();
        let script = |body: &str| Script::new(&format!("{prelude}{body}"));
        Self {
            user_observe: script(include_str!("lua/user_observe.lua")),
            user_read: script(include_str!("lua/user_read.lua")),
            user_forget: script(include_str!("lua/user_forget.lua")),
            ip_observe: script(include_str!("lua/ip_observe.lua")),
            ip_read: script(include_str!("lua/ip_read.lua")),
            device_observe: script(include_str!("lua/device_observe.lua")),
            device_read: script(include_str!("lua/device_read.lua")),
            lock: script(include_str!("lua/lock.lua")),
            profile_swap: script(include_str!("lua/profile_swap.lua")),
            pending_put: script(include_str!("lua/pending_put.lua")),
            pending_take: script(include_str!("lua/pending_take.lua")),
        }
    }
}

/// The constants every script sees, then the window functions.
pub(super) fn prelude() -> String {
    let [user_1, user_2, user_3] = USER_FAILURE_WINDOWS;
    let [ip_1, ip_2, ip_3] = IP_FAILURE_WINDOWS;
    let [ip_users_1, ip_users_2] = IP_USER_WINDOWS;
    let constants: [(&str, i64); 22] = [
        ("USER_FAILURE_HORIZON", USER_FAILURES.0),
        ("USER_FAILURE_CAP", count(USER_FAILURES.1)),
        ("USER_FAILURE_WINDOW_1", user_1),
        ("USER_FAILURE_WINDOW_2", user_2),
        ("USER_FAILURE_WINDOW_3", user_3),
        ("IP_FAILURE_HORIZON", IP_FAILURES.0),
        ("IP_FAILURE_CAP", count(IP_FAILURES.1)),
        ("IP_FAILURE_WINDOW_1", ip_1),
        ("IP_FAILURE_WINDOW_2", ip_2),
        ("IP_FAILURE_WINDOW_3", ip_3),
        ("IP_ATTEMPT_HORIZON", IP_ATTEMPTS.0),
        ("IP_ATTEMPT_CAP", count(IP_ATTEMPTS.1)),
        ("IP_ATTEMPT_WINDOW", MINUTE),
        ("IP_USER_WINDOW_1", ip_users_1),
        ("IP_USER_WINDOW_2", ip_users_2),
        ("DISTINCT_USERS", count(DISTINCT_USERS)),
        ("DISTINCT_USERS_TTL", DAY),
        ("DEVICE_USER_WINDOW", DEVICE_USERS_WINDOW),
        ("NETWORKS_CAP", count(NETWORKS_CAP)),
        ("NETWORKS_TTL", DAY),
        ("PENDING_TTL", PENDING_TTL),
        ("PENDING_CAP", count(PENDING_CAP)),
    ];
    let mut prelude: String = constants
        .iter()
        .map(|(name, value)| format!("local {name} = {value}\n"))
        .collect();
    prelude.push_str(include_str!("lua/window.lua"));
    prelude
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
