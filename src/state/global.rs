//! How common each value of a login feature is across all users: the `p(x)` of the
//! Freeman et al. risk model.
//!
//! Counts live in count-min sketches (a fixed grid of counters per feature, each value
//! counted in one cell per row, read back as the smallest of its cells), so memory is fixed
//! whatever the traffic (5.5 MB). The number of distinct values comes from
//! the same grid by linear counting (how many cells of the first row are still empty). All
//! counts are halved every [`HALVE_EVERY`] learned logins, so the statistics follow what is
//! common now. Only fully successful logins are counted, as for profiles.
//!
//! Counters are atomics: learning and reading never lock, and a read racing a learn sees a
//! count off by one, which the model does not notice.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::{Feature, LoginFacts, StoreError, decode, encode};

/// Rows per sketch: each value is counted in one cell of each.
const DEPTH: usize = 2;
/// Learned logins between two halvings of every count.
pub(crate) const HALVE_EVERY: u64 = 1 << 22;

/// Cells per row for each feature (log2), by [`Feature`] index; 0 for a feature the model
/// does not use. Addresses and user agents have millions of values, countries a few hundred.
const WIDTH_BITS: [u32; Feature::COUNT] = [0, 10, 16, 14, 14, 0, 18, 16, 6];
/// Cells per row of the distinct-users sketch (log2).
const USER_BITS: u32 = 18;

/// The global frequencies a login is judged by.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Prior {
    /// `p(x)` of each feature value of the login, by [`Feature`] index: smoothed, so an
    /// unseen value has `1 / (N + M)` (N logins counted, M distinct values plus one).
    pub p: [Option<f64>; Feature::COUNT],
    /// Learned logins counted.
    pub logins: f64,
    /// Distinct users who logged in (estimated).
    pub users: f64,
    /// This user's learned logins in the same (halved) counts: their share of `logins`.
    pub user_logins: f64,
}

/// A count-min sketch of one feature.
struct Sketch {
    bits: u32,
    cells: Box<[AtomicU32]>,
    /// Values counted (the sum of one row).
    total: AtomicU64,
    /// Empty cells in the first row, kept as cells fill so reading it costs nothing.
    empty: AtomicU64,
}

impl Sketch {
    fn new(bits: u32) -> Self {
        let cells = (0..DEPTH << bits).map(|_| AtomicU32::new(0)).collect();
        Self {
            bits,
            cells,
            total: AtomicU64::new(0),
            empty: AtomicU64::new(1 << bits),
        }
    }

    /// The cell of `id` in `row`: the row's own bits of a mix of the id.
    fn cell(&self, row: usize, id: u64) -> Option<&AtomicU32> {
        let mixed = (id ^ (row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let column = (mixed >> (64 - self.bits)) as usize;
        self.cells.get((row << self.bits) + column)
    }

    fn add(&self, id: u64) {
        for row in 0..DEPTH {
            if let Some(cell) = self.cell(row, id)
                && cell.fetch_add(1, Ordering::Relaxed) == 0
                && row == 0
            {
                // Saturating: a halving recounting at the same moment may have counted the
                // cell as filled already.
                let _ = self
                    .empty
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| e.checked_sub(1));
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, id: u64) -> u32 {
        (0..DEPTH)
            .filter_map(|row| self.cell(row, id))
            .map(|cell| cell.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Distinct values counted, by linear counting on the first row.
    fn distinct(&self) -> f64 {
        let width = (1u64 << self.bits) as f64;
        let empty = self.empty.load(Ordering::Relaxed).max(1) as f64;
        // A full row says "at least this many": its estimate with one empty cell.
        width * (width / empty).ln()
    }

    /// Counts the first row's empty cells afresh (after halving or restoring).
    fn recount_empty(&self) {
        let width = 1usize << self.bits;
        let empty = self.cells.iter().take(width);
        let empty = empty.filter(|c| c.load(Ordering::Relaxed) == 0).count();
        self.empty.store(empty as u64, Ordering::Relaxed);
    }

    /// `p(x)` of `id`, smoothed.
    fn p(&self, id: u64) -> f64 {
        let total = self.total.load(Ordering::Relaxed) as f64;
        (f64::from(self.count(id)) + 1.0) / (total + self.distinct() + 1.0)
    }

    fn halve(&self) {
        for cell in self.cells.iter() {
            // Not a single atomic step with concurrent adds; an add lost here is one
            // login's worth in a count about to be halved anyway.
            let halved = cell.load(Ordering::Relaxed) / 2;
            cell.store(halved, Ordering::Relaxed);
        }
        let total = self.total.load(Ordering::Relaxed) / 2;
        self.total.store(total, Ordering::Relaxed);
        self.recount_empty();
    }
}

/// Every feature's sketch and the distinct users; allocated on the first login learned, so
/// stores that never learn globally (replay's per-user shards) cost nothing.
pub(crate) struct GlobalStats {
    sketches: OnceLock<Sketches>,
}

struct Sketches {
    features: [Option<Sketch>; Feature::COUNT],
    users: Sketch,
    /// Logins learned since the counts were last halved.
    since_halving: AtomicU64,
}

impl Sketches {
    fn new() -> Self {
        Self {
            features: WIDTH_BITS.map(|bits| (bits > 0).then(|| Sketch::new(bits))),
            users: Sketch::new(USER_BITS),
            since_halving: AtomicU64::new(0),
        }
    }
}

/// What [`GlobalStats`] keeps, as written to disk: each sketch's total and cells.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    sketches: Vec<(u64, Vec<u32>)>,
    since_halving: u64,
}

impl Default for GlobalStats {
    fn default() -> Self {
        Self::new()
    }
}

impl GlobalStats {
    /// Empty statistics.
    pub(crate) fn new() -> Self {
        Self {
            sketches: OnceLock::new(),
        }
    }

    /// Counts a fully successful login by `user` (their key).
    pub(crate) fn learn(&self, user: u64, facts: &LoginFacts) {
        let sketches = self.sketches.get_or_init(Sketches::new);
        for (sketch, value) in sketches.features.iter().zip(&facts.features) {
            if let (Some(sketch), Some(value)) = (sketch, value) {
                sketch.add(value.id);
            }
        }
        sketches.users.add(user);
        // Exactly one learner halves: the one that counts the threshold.
        let counted = sketches.since_halving.fetch_add(1, Ordering::Relaxed) + 1;
        if counted == HALVE_EVERY {
            sketches
                .since_halving
                .fetch_sub(HALVE_EVERY, Ordering::Relaxed);
            for sketch in sketches.features.iter().flatten() {
                sketch.halve();
            }
            sketches.users.halve();
        }
    }

    /// The global frequencies of `facts`' values, for a login by `user` (their key).
    pub(crate) fn prior(&self, user: u64, facts: &LoginFacts) -> Prior {
        let Some(sketches) = self.sketches.get() else {
            return Prior {
                p: std::array::from_fn(|f| WIDTH_BITS.get(f).filter(|&&b| b > 0).map(|_| 1.0)),
                ..Prior::default()
            };
        };
        let mut p = [None; Feature::COUNT];
        for ((slot, sketch), value) in p.iter_mut().zip(&sketches.features).zip(&facts.features) {
            if let Some(sketch) = sketch {
                // A login without this feature's value is judged on its other ones.
                *slot = value.as_ref().map(|v| sketch.p(v.id));
            }
        }
        Prior {
            p,
            logins: sketches.users.total.load(Ordering::Relaxed) as f64,
            users: sketches.users.distinct(),
            user_logins: f64::from(sketches.users.count(user)),
        }
    }

    /// The statistics as bytes, for the embedded backend to keep; `None` before any login.
    pub(crate) fn snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(sketches) = self.sketches.get() else {
            return Ok(None);
        };
        let dump = |s: &Sketch| {
            let cells = s.cells.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            (s.total.load(Ordering::Relaxed), cells)
        };
        let mut all: Vec<_> = sketches.features.iter().flatten().map(dump).collect();
        all.push(dump(&sketches.users));
        encode(&Snapshot {
            sketches: all,
            since_halving: sketches.since_halving.load(Ordering::Relaxed),
        })
        .map(Some)
    }

    /// Statistics from a [`GlobalStats::snapshot`]; one of another shape (another version's
    /// sizes) is refused.
    pub(crate) fn restore(bytes: &[u8]) -> Result<Self, StoreError> {
        let snapshot: Snapshot = decode(bytes)?;
        let sketches = Sketches::new();
        let targets = sketches.features.iter().flatten().chain([&sketches.users]);
        if snapshot.sketches.len() != targets.clone().count() {
            return Err(StoreError::Backend(
                "the global statistics were written by another version".into(),
            ));
        }
        for (target, (total, cells)) in targets.zip(snapshot.sketches) {
            if cells.len() != target.cells.len() {
                return Err(StoreError::Backend(
                    "the global statistics were written by another version".into(),
                ));
            }
            target.total.store(total, Ordering::Relaxed);
            for (cell, value) in target.cells.iter().zip(cells) {
                cell.store(value, Ordering::Relaxed);
            }
            target.recount_empty();
        }
        sketches
            .since_halving
            .store(snapshot.since_halving % HALVE_EVERY, Ordering::Relaxed);
        Ok(Self {
            sketches: OnceLock::from(sketches),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FeatureValue;

    fn from(country: &str) -> LoginFacts {
        let mut facts = LoginFacts::default();
        facts.features[Feature::Country as usize] =
            Some(FeatureValue::new(Feature::Country, country));
        facts
    }

    #[test]
    fn frequencies_are_smoothed_counts_and_unseen_values_get_one_in_n_plus_m() {
        let stats = GlobalStats::new();
        for user in 0..30 {
            stats.learn(user, &from("DE"));
        }
        for user in 30..40 {
            stats.learn(user, &from("FR"));
        }
        let p = |c| stats.prior(0, &from(c)).p[Feature::Country as usize].unwrap();
        // N = 40 logins, 2 distinct countries: M = 3.
        assert!((p("DE") - 31.0 / 43.0).abs() < 1e-3, "{}", p("DE"));
        assert!((p("FR") - 11.0 / 43.0).abs() < 1e-3, "{}", p("FR"));
        assert!((p("US") - 1.0 / 43.0).abs() < 1e-3, "{}", p("US"));
        let prior = stats.prior(0, &from("DE"));
        assert_eq!(prior.logins, 40.0);
        assert!((prior.users - 40.0).abs() < 0.5, "{}", prior.users);
        assert_eq!(
            prior.p[Feature::Device as usize],
            None,
            "not a feature of the model"
        );
    }

    #[test]
    fn counts_halve_and_survive_a_snapshot() {
        let stats = GlobalStats::new();
        for user in 0..10 {
            stats.learn(user, &from("DE"));
        }
        let restored = GlobalStats::restore(&stats.snapshot().unwrap().unwrap()).unwrap();
        assert_eq!(restored.prior(0, &from("DE")), stats.prior(0, &from("DE")));
        let sketches = stats.sketches.get().unwrap();
        sketches.features.iter().flatten().for_each(Sketch::halve);
        sketches.users.halve();
        assert_eq!(stats.prior(0, &from("DE")).logins, 5.0);
        assert!(GlobalStats::restore(b"junk").is_err());
    }

    #[test]
    fn memory_is_fixed_whatever_the_logins() {
        let stats = GlobalStats::new();
        assert!(
            stats.sketches.get().is_none(),
            "nothing until a login is learned"
        );
        for user in 0..1_000 {
            stats.learn(user, &from(&format!("C{user}")));
        }
        let sketches = stats.sketches.get().unwrap();
        let all = sketches.features.iter().flatten().chain([&sketches.users]);
        let bytes: usize = all.map(|s| s.cells.len() * 4).sum();
        assert!(bytes < 6 << 20, "{bytes}");
    }
}
