//! Sliding windows over event times: exact counts in `(now - window, now]`, bounded in size.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Event timestamps, sorted, keeping at most a fixed number of the newest; older ones beyond
/// that number are kept as a count.
///
/// Counts are exact while a window holds at most `cap` events. Beyond, the events dropped
/// from the front are counted as if they all happened at the newest of them, so a flood is
/// counted in full (2,000 failures read 2,000, not `cap`) and a window starting amid the
/// dropped events may count a few too many, never too few.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Compact", from = "Compact")]
pub(crate) struct EventWindow {
    times: Vec<Millis>,
    /// Events dropped beyond the cap: how many, and the time of the newest.
    dropped: Option<(u64, Millis)>,
}

impl EventWindow {
    /// A window holding `times` (sorted oldest first) and `dropped` events counted at a time.
    pub(crate) fn from_parts(times: Vec<Millis>, dropped: Option<(u64, Millis)>) -> Self {
        debug_assert!(times.is_sorted());
        Self { times, dropped }
    }

    /// Records an event at `at`, forgetting events older than `horizon` before the newest
    /// and keeping only a count of the oldest ones beyond `cap`.
    pub(crate) fn push(&mut self, at: Millis, horizon: Millis, cap: usize) {
        let pos = self.times.partition_point(|&t| t <= at);
        self.times.insert(pos, at);
        let newest = *self.times.last().unwrap_or(&at);
        let stale = self.times.partition_point(|&t| t <= newest - horizon);
        self.times.drain(..stale);
        if self.dropped.is_some_and(|(_, t)| t <= newest - horizon) {
            self.dropped = None;
        }
        let excess = self.times.len().saturating_sub(cap);
        if let Some(&last) = excess.checked_sub(1).and_then(|i| self.times.get(i)) {
            let (count, at) = self.dropped.unwrap_or((0, last));
            self.dropped = Some((count + excess as u64, at.max(last)));
            self.times.drain(..excess);
        }
    }

    /// Events with `now - window < t <= now`.
    pub(crate) fn count(&self, now: Millis, window: Millis) -> i64 {
        let from = self.times.partition_point(|&t| t <= now - window);
        let to = self.times.partition_point(|&t| t <= now);
        let kept = to.saturating_sub(from) as i64;
        match self.dropped {
            Some((count, at)) if at > now - window && at <= now => {
                kept.saturating_add(i64::try_from(count).unwrap_or(i64::MAX))
            }
            _ => kept,
        }
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
#[serde(into = "CompactDistinct", from = "CompactDistinct")]
pub(crate) struct DistinctWindow {
    seen: Vec<(u64, Millis)>,
}

impl DistinctWindow {
    /// A window holding `seen`: ids with the last time each was seen.
    pub(crate) fn from_parts(seen: Vec<(u64, Millis)>) -> Self {
        Self { seen }
    }

    /// Records `id` at `at`; beyond `cap` ids, the one seen longest ago is forgotten (of
    /// those seen at the same time, the smallest id, as Redis's `ZPOPMIN` does).
    pub(crate) fn push(&mut self, id: u64, at: Millis, cap: usize) {
        match self.seen.iter_mut().find(|(seen, _)| *seen == id) {
            Some(entry) => entry.1 = entry.1.max(at),
            None => {
                self.seen.push((id, at));
                if self.seen.len() > cap.max(1)
                    && let Some(oldest) = (0..self.seen.len())
                        .min_by_key(|&i| self.seen.get(i).map(|&(id, t)| (t, id)))
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

    /// [`DistinctWindow::count`] for an attempt by `own` at `now`, which counts itself even
    /// when it arrived late: each id keeps only its newest time, and `own`'s may be after
    /// `now`. (Another id seen both before the window and after `now` is not counted.)
    pub(crate) fn count_including(&self, own: u64, now: Millis, window: Millis) -> i64 {
        let seen_later = self.seen.iter().any(|&(id, t)| id == own && t > now);
        self.count(now, window) + i64::from(seen_later)
    }
}

/// Times as stored: the newest, and how long before it each one is. Windows are rewritten on
/// every attempt, so their size is most of what the durable backend writes; offsets are small
/// numbers, a byte or three each instead of nine.
#[derive(Serialize, Deserialize)]
struct Compact {
    newest: Millis,
    before: Vec<u64>,
    /// [`EventWindow`]'s dropped events (absent in entries written before it counted them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dropped: Option<(u64, Millis)>,
}

impl Compact {
    fn new(times: impl Iterator<Item = Millis> + Clone) -> Self {
        let newest = times.clone().max().unwrap_or(0);
        let before = times.map(|t| newest.abs_diff(t)).collect();
        Self {
            newest,
            before,
            dropped: None,
        }
    }

    fn times(&self) -> impl Iterator<Item = Millis> + '_ {
        let back = |b: &u64| Millis::try_from(*b).unwrap_or(Millis::MAX);
        self.before
            .iter()
            .map(move |b| self.newest.saturating_sub(back(b)))
    }
}

impl From<EventWindow> for Compact {
    fn from(window: EventWindow) -> Self {
        Compact {
            dropped: window.dropped,
            ..Compact::new(window.times.into_iter())
        }
    }
}

impl From<Compact> for EventWindow {
    fn from(compact: Compact) -> Self {
        let mut times: Vec<Millis> = compact.times().collect();
        // Stored sorted; sorting again keeps the invariant whatever the bytes said.
        times.sort_unstable();
        Self {
            times,
            dropped: compact.dropped,
        }
    }
}

/// A [`DistinctWindow`] as stored: its ids, and their times as a [`Compact`].
#[derive(Serialize, Deserialize)]
struct CompactDistinct {
    ids: Vec<u64>,
    times: Compact,
}

impl From<DistinctWindow> for CompactDistinct {
    fn from(window: DistinctWindow) -> Self {
        Self {
            ids: window.seen.iter().map(|(id, _)| *id).collect(),
            times: Compact::new(window.seen.iter().map(|(_, t)| *t)),
        }
    }
}

impl From<CompactDistinct> for DistinctWindow {
    fn from(compact: CompactDistinct) -> Self {
        let seen = compact.ids.into_iter().zip(compact.times.times()).collect();
        Self { seen }
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
        assert_eq!(
            w.times,
            [3 * MIN, 4 * MIN, 5 * MIN],
            "the newest three kept"
        );
        assert_eq!(w.dropped, Some((2, 2 * MIN)), "the others counted");
        assert_eq!(w.count(5 * MIN, 60 * MIN), 5, "all five count");
        assert_eq!(
            w.count(5 * MIN, 3 * MIN),
            3,
            "the dropped are not in the last 3 min"
        );
        assert_eq!(w.count(3 * MIN, 60 * MIN), 3, "nothing after now");
        w.push(200 * MIN, 60 * MIN, 3);
        assert_eq!(
            w.count(200 * MIN, 1000 * MIN),
            1,
            "older than the horizon is dropped"
        );
        assert_eq!(w.last(), Some(200 * MIN));
    }

    #[test]
    fn a_flood_beyond_the_cap_is_counted_in_full_and_forgotten_after_the_horizon() {
        let mut w = EventWindow::default();
        for i in 0..2_000 {
            w.push(1_000 + i % 7, 60 * MIN, 64);
        }
        assert_eq!(w.times.len(), 64, "memory stays bounded");
        assert_eq!(w.count(2_000, 15 * MIN), 2_000);
        assert_eq!(w.count(1_006 + 60 * MIN, 60 * MIN), 0);
        w.push(1_010 + 60 * MIN, 60 * MIN, 64);
        assert_eq!(w.dropped, None, "the dropped events passed the horizon");
        assert_eq!(w.count(1_010 + 60 * MIN, 60 * MIN), 1);
    }

    #[test]
    fn windows_come_back_from_their_compact_encoding_unchanged() {
        let mut events = EventWindow::default();
        let mut users = DistinctWindow::default();
        for i in 0..200 {
            events.push(1_700_000_000_000 + i * 7, 600_000, 128);
            users.push(i as u64 * 0x9E37_79B9, 1_700_000_000_000 + i * 13, 64);
        }
        use crate::state::{decode, encode};
        let bytes = encode(&events).unwrap();
        assert!(bytes.len() < 400, "{} bytes", bytes.len());
        assert_eq!(decode::<EventWindow>(&bytes).unwrap(), events);
        assert_eq!(
            decode::<DistinctWindow>(&encode(&users).unwrap()).unwrap(),
            users
        );
        let empty = encode(&EventWindow::default()).unwrap();
        assert_eq!(
            decode::<EventWindow>(&empty).unwrap(),
            EventWindow::default()
        );
        // Entries written with field names by earlier builds read the same.
        let named = rmp_serde::to_vec_named(&events).unwrap();
        assert_eq!(decode::<EventWindow>(&named).unwrap(), events);
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

    #[test]
    fn a_late_attempt_counts_itself() {
        let mut w = DistinctWindow::default();
        w.push(1, 10 * MIN, 8);
        w.push(2, 10 * MIN, 8);
        // User 1 again, but reported late: five minutes before its newest sighting.
        w.push(1, 5 * MIN, 8);
        assert_eq!(w.count(5 * MIN, 60 * MIN), 0, "only newest times are kept");
        assert_eq!(w.count_including(1, 5 * MIN, 60 * MIN), 1, "itself");
        assert_eq!(w.count_including(2, 10 * MIN, 60 * MIN), 2);
    }
}
