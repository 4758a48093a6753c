//! Puts events back in event-time order, counts what users share (IPs, devices) and picks
//! the shard of users each event goes to.

use super::reorder::ReorderBuffer;
use super::{EventKind, ReplayEvent};
use crate::Millis;
use crate::engine::{counting_bucket, login_facts};
use crate::state::bounded::shard_of;
use crate::state::global::{GlobalStats, Prior};
use crate::state::{NetworkActivity, NetworkCounts, NetworkKeys, key};

/// An event on its way to its shard.
pub(super) struct Routed {
    /// The event.
    pub event: ReplayEvent,
    /// Its IP and device counters, when the router keeps them.
    pub network: Option<NetworkCounts>,
    /// The global frequencies of its values, when the router keeps them.
    pub prior: Option<Prior>,
}

/// What users share, kept by the router when users are split across shards: IP and device
/// counters, and the global frequencies of login features.
pub(super) struct Shared {
    /// IP and device counters.
    pub network: NetworkActivity,
    /// Global frequencies. The router teaches them every login with the right password: it
    /// runs ahead of the shards, so it cannot wait for their decisions (the server learns
    /// only from fully successful logins; the difference is the attackers who had the
    /// password, a small share of all logins).
    pub global: GlobalStats,
}

/// Orders events and routes them to `shards` shards of users.
pub(super) struct Router {
    /// Reorder buffer: earliest event first, ties in input order.
    buffer: ReorderBuffer<(Millis, u64), ReplayEvent>,
    window: usize,
    last_at: Millis,
    /// Events older than one already routed.
    pub out_of_order: u64,
    /// What users share, when users are split across shards.
    shared: Option<Shared>,
    shards: usize,
}

impl Router {
    /// A router holding up to `window` events to restore order. With `network`, it counts IP
    /// and device activity itself and spreads users over `shards` shards (a power of two up
    /// to [`crate::state::bounded::SHARDS`], so each shard of a bounded map lands whole in one
    /// shard of users and evictions match a single engine's); without, one shard gets all.
    pub(super) fn new(window: usize, shared: Option<Shared>, shards: usize) -> Self {
        debug_assert!(shards.is_power_of_two() && (shared.is_some() || shards == 1));
        Self {
            buffer: ReorderBuffer::default(),
            window,
            last_at: Millis::MIN,
            out_of_order: 0,
            shared,
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
        let (network, prior) = match (&self.shared, &event.kind) {
            (Some(shared), EventKind::Login(login)) => {
                let attempt = &login.attempt;
                let keys = NetworkKeys {
                    ip: counting_bucket(attempt.ip),
                    device_id: attempt.device_id.as_deref(),
                };
                let failed = attempt.password_ok == Some(false);
                // INVARIANT: replay's counters live in memory, which cannot fail; only a
                // disk behind them can.
                let counts = shared.network.observe(keys, user, failed, at);
                let prior = login.enrichment.as_ref().map(|enrichment| {
                    let facts = login_facts(
                        attempt.ip,
                        &enrichment.geo,
                        &enrichment.device,
                        attempt.device_id.as_deref(),
                        attempt.user_agent.as_deref(),
                        at,
                    );
                    let prior = shared.global.prior(user, &facts);
                    if attempt.password_ok == Some(true) {
                        shared.global.learn(user, &facts);
                    }
                    prior
                });
                (Some(counts.unwrap_or_default()), prior)
            }
            _ => (None, None),
        };
        let shard = shard_of(super::PLACEMENT.hash(user)) % self.shards;
        Some((
            shard,
            Routed {
                event,
                network,
                prior,
            },
        ))
    }
}
