//! Puts events back in event-time order, counts what users share (IPs, devices) and picks
//! the shard of users each event goes to.

use super::reorder::ReorderBuffer;
use super::{EventKind, ReplayEvent};
use crate::Millis;
use crate::engine::counting_bucket;
use crate::state::bounded::shard_of;
use crate::state::{NetworkActivity, NetworkCounts, NetworkKeys, key};

/// An event on its way to its shard.
pub(super) struct Routed {
    /// The event.
    pub event: ReplayEvent,
    /// Its IP and device counters, when the router keeps them.
    pub network: Option<NetworkCounts>,
}

/// Orders events and routes them to `shards` shards of users.
pub(super) struct Router {
    /// Reorder buffer: earliest event first, ties in input order.
    buffer: ReorderBuffer<(Millis, u64), ReplayEvent>,
    window: usize,
    last_at: Millis,
    /// Events older than one already routed.
    pub out_of_order: u64,
    /// Counters shared between users, when users are split across shards.
    network: Option<NetworkActivity>,
    shards: usize,
}

impl Router {
    /// A router holding up to `window` events to restore order. With `network`, it counts IP
    /// and device activity itself and spreads users over `shards` shards (a power of two up
    /// to [`crate::state::bounded::SHARDS`], so each shard of a bounded map lands whole in one
    /// shard of users and evictions match a single engine's); without, one shard gets all.
    pub(super) fn new(window: usize, network: Option<NetworkActivity>, shards: usize) -> Self {
        debug_assert!(shards.is_power_of_two() && (network.is_some() || shards == 1));
        Self {
            buffer: ReorderBuffer::default(),
            window,
            last_at: Millis::MIN,
            out_of_order: 0,
            network,
            shards,
        }
    }

    /// Buffers `event`; returns the earliest one once the buffer is full.
    pub(super) fn push(&mut self, event: ReplayEvent) -> Option<(usize, Routed)> {
        self.buffer.push((event.at, event.row), event);
        (self.buffer.len() > self.window)
            .then(|| self.pop())
            .flatten()
    }

    /// The next buffered event, in time order, with its shard.
    pub(super) fn pop(&mut self) -> Option<(usize, Routed)> {
        let ((at, _), event) = self.buffer.pop()?;
        if at < self.last_at {
            self.out_of_order += 1;
        }
        self.last_at = self.last_at.max(at);
        let user_id = match &event.kind {
            EventKind::Login(login) => &login.attempt.user_id,
            EventKind::Outcome(outcome) => &outcome.user_id,
        };
        let user = key(user_id);
        let network = match (&self.network, &event.kind) {
            (Some(network), EventKind::Login(login)) => {
                let attempt = &login.attempt;
                let keys = NetworkKeys {
                    ip: counting_bucket(attempt.ip),
                    device_id: attempt.device_id.as_deref(),
                };
                let failed = attempt.password_ok == Some(false);
                // INVARIANT: replay's counters live in memory, which cannot fail; only a
                // disk behind them can.
                Some(network.observe(keys, user, failed, at).unwrap_or_default())
            }
            _ => None,
        };
        let shard = shard_of(super::PLACEMENT.hash(user)) % self.shards;
        Some((shard, Routed { event, network }))
    }
}
