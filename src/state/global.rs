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
//! Statistics shared between replicas (the Redis backend) keep a second grid per sketch, the
//! *view*: this process's counts plus the other replicas' as of the last sync. Sketches
//! with the same widths hash every value to the same cells in every process, so the sum of
//! their grids is the sketch of all their logins. Lookups read the view, learning counts
//! into both, and halving halves this process's own counts (and takes what they lost out of
//! the view); the other replicas' counts in the view halve when theirs do. The sync itself
//! (`redis/global_sync.rs`) exchanges the own counts in [`Chunk`]s.
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
/// The most cells in a [`Chunk`]: 62.5 KiB as `u32`s, which Redis moves in a few
/// microseconds, and which fits one 64 KiB allocation in Redis with its string header.
pub(crate) const CHUNK_CELLS: usize = 16_000;

/// Cells per row for each feature (log2), by [`Feature`] index; 0 for a feature the model
/// does not use. Addresses and user agents have millions of values, countries a few hundred.
const WIDTH_BITS: [u32; Feature::COUNT] = [0, 10, 16, 14, 14, 0, 18, 16, 6];
/// Cells per row of the distinct-users sketch (log2).
const USER_BITS: u32 = 18;

/// The widths (log2) of every sketch, in the order of [`Sketches::all`].
fn sketch_bits() -> impl Iterator<Item = u32> {
    WIDTH_BITS
        .into_iter()
        .filter(|&bits| bits > 0)
        .chain([USER_BITS])
}

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

/// One grid of counts: `DEPTH` rows of cells, their total and the first row's empty cells.
struct Counts {
    cells: Box<[AtomicU32]>,
    /// Values counted (the sum of one row).
    total: AtomicU64,
    /// Empty cells in the first row, kept as cells fill so reading it costs nothing.
    empty: AtomicU64,
}

impl Counts {
    fn new(bits: u32) -> Self {
        let cells = (0..DEPTH << bits).map(|_| AtomicU32::new(0)).collect();
        Self {
            cells,
            total: AtomicU64::new(0),
            empty: AtomicU64::new(1 << bits),
        }
    }

    /// Counts one more in the cell at `index` (of the first row, if `first_row`).
    fn add(&self, index: usize, first_row: bool) {
        if let Some(cell) = self.cells.get(index)
            && cell.fetch_add(1, Ordering::Relaxed) == 0
            && first_row
        {
            // Saturating: a halving recounting at the same moment may have counted the
            // cell as filled already.
            let _ = self
                .empty
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| e.checked_sub(1));
        }
    }

    /// Distinct values counted, by linear counting on the first row of `1 << bits` cells.
    fn distinct(&self, bits: u32) -> f64 {
        let width = (1u64 << bits) as f64;
        let empty = self.empty.load(Ordering::Relaxed).max(1) as f64;
        // A full row says "at least this many": its estimate with one empty cell.
        width * (width / empty).ln()
    }

    /// Counts the first row's empty cells afresh (after halving or restoring).
    fn recount_empty(&self, bits: u32) {
        let empty = self.cells.iter().take(1 << bits);
        let empty = empty.filter(|c| c.load(Ordering::Relaxed) == 0).count();
        self.empty.store(empty as u64, Ordering::Relaxed);
    }
}

/// A count-min sketch of one feature.
struct Sketch {
    bits: u32,
    /// What this process learned: halved on its own schedule, saved to disk or published.
    own: Counts,
    /// `own` plus the other replicas' counts as of the last sync, when the statistics are
    /// shared; lookups read it instead of `own` then.
    view: Option<Counts>,
}

impl Sketch {
    fn new(bits: u32, shared: bool) -> Self {
        Self {
            bits,
            own: Counts::new(bits),
            view: shared.then(|| Counts::new(bits)),
        }
    }

    /// The index of `id`'s cell in `row`: the row's own bits of a mix of the id.
    fn index(&self, row: usize, id: u64) -> usize {
        let mixed = (id ^ (row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let column = (mixed >> (64 - self.bits)) as usize;
        (row << self.bits) + column
    }

    /// The counts lookups read.
    fn read(&self) -> &Counts {
        self.view.as_ref().unwrap_or(&self.own)
    }

    fn add(&self, id: u64) {
        let grids = [Some(&self.own), self.view.as_ref()];
        for row in 0..DEPTH {
            let index = self.index(row, id);
            grids.iter().flatten().for_each(|c| c.add(index, row == 0));
        }
        for counts in grids.iter().flatten() {
            counts.total.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count(&self, id: u64) -> u32 {
        let counts = self.read();
        (0..DEPTH)
            .filter_map(|row| counts.cells.get(self.index(row, id)))
            .map(|cell| cell.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Distinct values counted.
    fn distinct(&self) -> f64 {
        self.read().distinct(self.bits)
    }

    /// `p(x)` of `id`, smoothed.
    fn p(&self, id: u64) -> f64 {
        let total = self.read().total.load(Ordering::Relaxed) as f64;
        (f64::from(self.count(id)) + 1.0) / (total + self.distinct() + 1.0)
    }

    /// Halves this process's counts, and takes what they lost out of the view.
    fn halve(&self) {
        let view = self.view.as_ref().map_or(&[][..], |v| &v.cells[..]);
        for (index, cell) in self.own.cells.iter().enumerate() {
            // Not a single atomic step with concurrent adds; an add lost here is one
            // login's worth in a count about to be halved anyway.
            let before = cell.load(Ordering::Relaxed);
            cell.store(before / 2, Ordering::Relaxed);
            if let Some(seen) = view.get(index) {
                // Saturating: a sync racing the halving may have summed the halved count.
                let lost = before - before / 2;
                let _ = seen.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    Some(s.saturating_sub(lost))
                });
            }
        }
        let before = self.own.total.load(Ordering::Relaxed);
        self.own.total.store(before / 2, Ordering::Relaxed);
        self.own.recount_empty(self.bits);
        if let Some(view) = &self.view {
            let lost = before - before / 2;
            let _ = view
                .total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    Some(s.saturating_sub(lost))
                });
            view.recount_empty(self.bits);
        }
    }
}

/// Every feature's sketch and the distinct users; allocated on the first login learned, so
/// stores that never learn globally (replay's per-user shards) cost nothing, or at once
/// when shared.
pub(crate) struct GlobalStats {
    sketches: OnceLock<Sketches>,
}

struct Sketches {
    features: [Option<Sketch>; Feature::COUNT],
    users: Sketch,
    /// Logins learned since the counts were last halved.
    since_halving: AtomicU64,
    /// Logins learned since the process started: changes whenever the own counts do.
    learned: AtomicU64,
}

impl Sketches {
    fn new(shared: bool) -> Self {
        Self {
            features: WIDTH_BITS.map(|bits| (bits > 0).then(|| Sketch::new(bits, shared))),
            users: Sketch::new(USER_BITS, shared),
            since_halving: AtomicU64::new(0),
            learned: AtomicU64::new(0),
        }
    }

    /// Every sketch: the features' by [`Feature`] index, then the users'.
    fn all(&self) -> impl Iterator<Item = &Sketch> {
        self.features.iter().flatten().chain([&self.users])
    }
}

/// A run of at most [`CHUNK_CELLS`] cells of one sketch: what replicas exchange in one
/// Redis command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// The sketch, in the order of [`Sketches::all`].
    sketch: usize,
    /// Its first cell in the sketch.
    start: usize,
    /// How many cells it holds.
    pub(crate) len: usize,
    /// Its first cell among all sketches' cells, laid end to end.
    pub(crate) offset: usize,
}

impl Chunk {
    /// Its cells' indices in its sketch.
    fn cells(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
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
    /// Empty statistics of this process alone.
    pub(crate) fn new() -> Self {
        Self {
            sketches: OnceLock::new(),
        }
    }

    /// Empty statistics to which other replicas' counts are added by
    /// [`GlobalStats::see_others`]. Their 11 MB are allocated here, at startup, rather than
    /// by the first login learned or the first sync, which would stall an evaluation thread.
    pub(crate) fn shared() -> Self {
        Self {
            sketches: OnceLock::from(Sketches::new(true)),
        }
    }

    fn sketches(&self) -> &Sketches {
        self.sketches.get_or_init(|| Sketches::new(false))
    }

    /// Counts a fully successful login by `user` (their key).
    pub(crate) fn learn(&self, user: u64, facts: &LoginFacts) {
        let sketches = self.sketches();
        for (sketch, value) in sketches.features.iter().zip(&facts.features) {
            if let (Some(sketch), Some(value)) = (sketch, value) {
                sketch.add(value.id);
            }
        }
        sketches.users.add(user);
        // Released after the counts: whoever reads the new number sees them.
        sketches.learned.fetch_add(1, Ordering::Release);
        // Exactly one learner halves: the one that counts the threshold.
        let counted = sketches.since_halving.fetch_add(1, Ordering::Relaxed) + 1;
        if counted == HALVE_EVERY {
            sketches
                .since_halving
                .fetch_sub(HALVE_EVERY, Ordering::Relaxed);
            sketches.all().for_each(Sketch::halve);
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
            logins: sketches.users.read().total.load(Ordering::Relaxed) as f64,
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
            let cells = s
                .own
                .cells
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect();
            (s.own.total.load(Ordering::Relaxed), cells)
        };
        encode(&Snapshot {
            sketches: sketches.all().map(dump).collect(),
            since_halving: sketches.since_halving.load(Ordering::Relaxed),
        })
        .map(Some)
    }

    /// Statistics from a [`GlobalStats::snapshot`]; one of another shape (another version's
    /// sizes) is refused.
    pub(crate) fn restore(bytes: &[u8]) -> Result<Self, StoreError> {
        let snapshot: Snapshot = decode(bytes)?;
        let sketches = Sketches::new(false);
        if snapshot.sketches.len() != sketches.all().count() {
            return Err(StoreError::Backend(
                "the global statistics were written by another version".into(),
            ));
        }
        for (target, (total, cells)) in sketches.all().zip(snapshot.sketches) {
            if cells.len() != target.own.cells.len() {
                return Err(StoreError::Backend(
                    "the global statistics were written by another version".into(),
                ));
            }
            target.own.total.store(total, Ordering::Relaxed);
            for (cell, value) in target.own.cells.iter().zip(cells) {
                cell.store(value, Ordering::Relaxed);
            }
            target.own.recount_empty(target.bits);
        }
        sketches
            .since_halving
            .store(snapshot.since_halving % HALVE_EVERY, Ordering::Relaxed);
        Ok(Self {
            sketches: OnceLock::from(sketches),
        })
    }

    /// The cells of each sketch, in order: the shape another replica's counts must have to
    /// be added to these.
    pub(crate) fn shape() -> Vec<usize> {
        sketch_bits().map(|bits| DEPTH << bits).collect()
    }

    /// Every sketch's cells cut into chunks, in order; the same in every process with the
    /// same [`GlobalStats::shape`].
    pub(crate) fn chunks() -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut offset = 0;
        for (sketch, cells) in Self::shape().into_iter().enumerate() {
            for start in (0..cells).step_by(CHUNK_CELLS) {
                let len = CHUNK_CELLS.min(cells - start);
                chunks.push(Chunk {
                    sketch,
                    start,
                    len,
                    offset: offset + start,
                });
            }
            offset += cells;
        }
        chunks
    }

    /// Logins this process learned since it started: a publisher whose number did not move
    /// has nothing new to publish.
    pub(crate) fn learned(&self) -> u64 {
        self.sketches
            .get()
            .map_or(0, |s| s.learned.load(Ordering::Acquire))
    }

    /// Each sketch's total of this process's own counts, in order.
    pub(crate) fn own_totals(&self) -> Vec<u64> {
        let sketches = self.sketches();
        let total = |s: &Sketch| s.own.total.load(Ordering::Relaxed);
        sketches.all().map(total).collect()
    }

    /// Appends this process's own counts in `chunk` to `bytes`, little-endian.
    pub(crate) fn write_own(&self, chunk: Chunk, bytes: &mut Vec<u8>) {
        let sketch = self.sketches().all().nth(chunk.sketch);
        let cells = sketch.and_then(|s| s.own.cells.get(chunk.cells()));
        for cell in cells.into_iter().flatten() {
            bytes.extend_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
        }
    }

    /// Sets the view of `chunk`'s cells to this process's own counts plus `others` (the
    /// other replicas' sum, cell by cell). A login learned meanwhile may be missed in the
    /// view until the next sync sets it again.
    pub(crate) fn see_others(&self, chunk: Chunk, others: &[u32]) {
        let Some(sketch) = self.sketches().all().nth(chunk.sketch) else {
            return;
        };
        let Some(view) = &sketch.view else {
            return;
        };
        let range = chunk.cells();
        let (Some(own), Some(seen)) = (
            sketch.own.cells.get(range.clone()),
            view.cells.get(range.clone()),
        ) else {
            return;
        };
        let width = 1 << sketch.bits;
        for (((index, own), seen), other) in range.zip(own).zip(seen).zip(others) {
            let sum = own.load(Ordering::Relaxed).saturating_add(*other);
            let before = seen.swap(sum, Ordering::Relaxed);
            // The first row's empty cells, kept as they change rather than recounted after
            // a sync (a pass over 262,144 cells would stall an evaluation thread): a swap
            // and a learn's add each see the value they change, so the count stays exact.
            if index < width && (before == 0) != (sum == 0) {
                if sum == 0 {
                    view.empty.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = view
                        .empty
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| e.checked_sub(1));
                }
            }
        }
    }

    /// Sets the view's totals to this process's plus `others` (the other replicas' sums, by
    /// sketch).
    pub(crate) fn see_others_totals(&self, others: &[u64]) {
        for (sketch, other) in self.sketches().all().zip(others) {
            if let Some(view) = &sketch.view {
                let own = sketch.own.total.load(Ordering::Relaxed);
                view.total
                    .store(own.saturating_add(*other), Ordering::Relaxed);
            }
        }
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
        stats.sketches().all().for_each(Sketch::halve);
        assert_eq!(stats.prior(0, &from("DE")).logins, 5.0);
        assert!(GlobalStats::restore(b"junk").is_err());
    }

    #[test]
    fn memory_is_fixed_whatever_the_logins() {
        assert!(
            GlobalStats::new().sketches.get().is_none(),
            "nothing until a login is learned"
        );
        for (stats, most) in [
            (GlobalStats::new(), 6 << 20),
            (GlobalStats::shared(), 12 << 20),
        ] {
            for user in 0..1_000 {
                stats.learn(user, &from(&format!("C{user}")));
            }
            let grids = stats
                .sketches()
                .all()
                .flat_map(|s| [Some(&s.own), s.view.as_ref()]);
            let bytes: usize = grids.flatten().map(|g| g.cells.len() * 4).sum();
            assert!(bytes < most, "{bytes}");
        }
    }

    /// Copies `from`'s own counts into `to`'s view, chunk by chunk, as a sync does.
    fn see(to: &GlobalStats, from: &GlobalStats) {
        let mut bytes = Vec::new();
        for chunk in GlobalStats::chunks() {
            bytes.clear();
            from.write_own(chunk, &mut bytes);
            let cells: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(cells.len(), chunk.len);
            to.see_others(chunk, &cells);
        }
        to.see_others_totals(&from.own_totals());
    }

    #[test]
    fn other_replicas_counts_add_up_and_halving_takes_out_only_this_ones() {
        let (here, there) = (GlobalStats::shared(), GlobalStats::new());
        for user in 0..10 {
            here.learn(user, &from("DE"));
        }
        for user in 10..40 {
            there.learn(user, &from(if user < 30 { "DE" } else { "FR" }));
        }
        see(&here, &there);
        // As if one process had learned all 40: DE 30 times, FR 10.
        let p = |c| here.prior(0, &from(c)).p[Feature::Country as usize].unwrap();
        assert!((p("DE") - 31.0 / 43.0).abs() < 1e-3, "{}", p("DE"));
        assert!((p("FR") - 11.0 / 43.0).abs() < 1e-3, "{}", p("FR"));
        let prior = here.prior(0, &from("DE"));
        assert_eq!(prior.logins, 40.0);
        assert!((prior.users - 40.0).abs() < 0.5, "{}", prior.users);
        assert_eq!(here.own_totals().last(), Some(&10), "own counts apart");

        // Learning shows at once; halving halves this replica's 11 logins, not the others'.
        here.learn(40, &from("FR"));
        assert_eq!(here.prior(0, &from("FR")).logins, 41.0);
        here.sketches().all().for_each(Sketch::halve);
        let prior = here.prior(0, &from("DE"));
        assert_eq!(prior.logins, 5.0 + 30.0);
        assert!(
            (p("DE") - (5.0 + 20.0 + 1.0) / 38.0).abs() < 1e-3,
            "{}",
            p("DE")
        );
        assert_eq!(
            GlobalStats::restore(&here.snapshot().unwrap().unwrap())
                .unwrap()
                .prior(0, &from("DE"))
                .logins,
            5.0,
            "only this replica's counts are saved"
        );

        // The others gone: the view is this replica's counts again.
        see(&here, &GlobalStats::new());
        assert_eq!(here.prior(0, &from("DE")).logins, 5.0);
    }

    #[test]
    fn chunks_cover_every_cell_once_in_order() {
        let chunks = GlobalStats::chunks();
        let cells: usize = GlobalStats::shape().iter().sum();
        let mut next = 0;
        for chunk in &chunks {
            assert_eq!(chunk.offset, next, "{chunk:?}");
            assert!((1..=CHUNK_CELLS).contains(&chunk.len), "{chunk:?}");
            next += chunk.len;
        }
        assert_eq!(next, cells);
    }
}
