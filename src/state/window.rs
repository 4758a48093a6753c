//! Sliding windows over event times: exact counts in `(now - window, now]`, bounded in size.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Event timestamps, sorted, keeping at most a fixed number of the newest.
///
/// Counts are exact until more than `cap` events fall inside one window; they then saturate at
/// `cap`, far above any threshold a policy uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventWindow {
    times: Vec<Millis>,
}

impl EventWindow {
    /// Records an event at `at`, forgetting events older than `horizon` before `at`
    /// and the oldest ones beyond `cap`.
    pub(crate) fn push(&mut self, at: Millis, horizon: Millis, cap: usize) {
        let pos = self.times.partition_point(|&t| t <= at);
        self.times.insert(pos, at);
        let newest = *self.times.last().unwrap_or(&at);
        let stale = self.times.partition_point(|&t| t <= newest - horizon);
        let excess = self.times.len().saturating_sub(cap);
        self.times.drain(..stale.max(excess));
    }

    /// Events with `now - window < t <= now`.
    pub(crate) fn count(&self, now: Millis, window: Millis) -> i64 {
        let from = self.times.partition_point(|&t| t <= now - window);
        let to = self.times.partition_point(|&t| t <= now);
        to.saturating_sub(from) as i64
    }

    /// The newest recorded event.
    pub(crate) fn last(&self) -> Option<Millis> {
        self.times.last().copied()
    }

    /// True when an event newer than `horizon` before `now` is left.
    pub(crate) fn is_live(&self, now: Millis, horizon: Millis) -> bool {
        self.last().is_some_and(|t| t > now - horizon)
    }
}

/// Distinct ids with the last time each was seen, keeping at most a fixed number of ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DistinctWindow {
    seen: Vec<(u64, Millis)>,
}

impl DistinctWindow {
    /// Records `id` at `at`; beyond `cap` ids, the one seen longest ago is forgotten.
    pub(crate) fn push(&mut self, id: u64, at: Millis, cap: usize) {
        match self.seen.iter_mut().find(|(seen, _)| *seen == id) {
            Some(entry) => entry.1 = entry.1.max(at),
            None => {
                self.seen.push((id, at));
                if self.seen.len() > cap.max(1)
                    && let Some(oldest) =
                        (0..self.seen.len()).min_by_key(|&i| self.seen.get(i).map(|seen| seen.1))
                {
                    self.seen.swap_remove(oldest);
                }
            }
        }
    }

    /// Forgets `id`; returns whether it was there.
    pub(crate) fn forget(&mut self, id: u64) -> bool {
        let before = self.seen.len();
        self.seen.retain(|(seen, _)| *seen != id);
        self.seen.len() != before
    }

    /// True when an id seen later than `horizon` before `now` is left.
    pub(crate) fn is_live(&self, now: Millis, horizon: Millis) -> bool {
        self.seen.iter().any(|&(_, t)| t > now - horizon)
    }

    /// Distinct ids last seen with `now - window < t <= now`.
    pub(crate) fn count(&self, now: Millis, window: Millis) -> i64 {
        self.seen
            .iter()
            .filter(|&&(_, t)| t > now - window && t <= now)
            .count() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn event_window_edges_are_exclusive_at_the_start_and_inclusive_at_now() {
        let mut w = EventWindow::default();
        let t0 = 1_700_000_000_000;
        w.push(t0, 24 * 60 * MIN, 64);
        assert_eq!(w.count(t0, 15 * MIN), 1, "an event at now counts");
        assert_eq!(
            w.count(t0 + 15 * MIN - 1, 15 * MIN),
            1,
            "1 ms before the edge"
        );
        assert_eq!(
            w.count(t0 + 15 * MIN, 15 * MIN),
            0,
            "exactly one window later"
        );
        assert_eq!(
            w.count(t0 - 1, 15 * MIN),
            0,
            "events after now do not count"
        );
    }

    #[test]
    fn event_window_keeps_order_and_bounds() {
        let mut w = EventWindow::default();
        for t in [5, 1, 3, 2, 4] {
            w.push(t * MIN, 60 * MIN, 3);
        }
        assert_eq!(w.count(5 * MIN, 60 * MIN), 3, "capped to the newest three");
        assert_eq!(w.count(3 * MIN, 60 * MIN), 1);
        w.push(200 * MIN, 60 * MIN, 3);
        assert_eq!(
            w.count(200 * MIN, 1000 * MIN),
            1,
            "older than the horizon is dropped"
        );
        assert_eq!(w.last(), Some(200 * MIN));
    }

    #[test]
    fn distinct_window_counts_ids_once_and_evicts_the_stalest() {
        let mut d = DistinctWindow::default();
        d.push(1, MIN, 2);
        d.push(1, 2 * MIN, 2);
        d.push(2, 3 * MIN, 2);
        assert_eq!(d.count(3 * MIN, 60 * MIN), 2);
        assert_eq!(
            d.count(62 * MIN, 60 * MIN),
            1,
            "id 1 was last seen at 2 min"
        );
        d.push(3, 4 * MIN, 2);
        assert_eq!(d.count(4 * MIN, 60 * MIN), 2, "id 1 evicted");
    }
}
