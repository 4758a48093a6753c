//! A hash map with a hard entry bound: sharded, with two generations per shard.
//!
//! Each shard keeps a young and an old generation. Hits in the old generation move to the
//! young one; when the young generation is full it becomes the old one and the previous old
//! generation is dropped. Memory therefore never exceeds the configured capacity, the cost of
//! eviction is O(1) amortised, and entries that keep being used survive (an LRU
//! approximation).
//!
//! Where an entry lands (its shard and its slot) comes from a keyed hash of its key, with a
//! key drawn at random per process ([`Placement`]), so no one can compute offline which names
//! share a victim's shard and flood it. Entries the caller pins (a known user's failures,
//! their lock) sit outside the generations and are never evicted by unpinned ones.

use std::convert::Infallible;
use std::hash::Hasher;

use hashbrown::HashTable;
use parking_lot::Mutex;
use siphasher::sip::SipHasher13;

/// Entries of one generation, each with its key, found by their placement hash.
type Generation<V> = HashTable<(u64, V)>;

/// Shards of a map holding at least [`SHARDED_FROM`] entries; smaller maps have one.
pub(crate) const SHARDS: usize = 64;
/// The smallest capacity split into [`SHARDS`] shards.
pub(crate) const SHARDED_FROM: usize = 4096;

/// The keyed hash that places keys in shards and slots: SipHash-1-3 with a 128-bit key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    keys: (u64, u64),
}

impl Placement {
    /// A placement no one can predict, drawn from the operating system's random source:
    /// for anything serving requests.
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 16];
        // A machine without a random source cannot run a server safely; it has one in
        // practice, and a fixed fallback would only make placement predictable again.
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        let (k0, k1) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        Self {
            keys: (word(k0), word(k1)),
        }
    }

    /// The same placement in every run, so replaying a log twice evicts the same entries
    /// and gives the same answers.
    pub(crate) const fn fixed() -> Self {
        Self { keys: (0, 0) }
    }

    /// Where `key` goes.
    pub(crate) fn hash(&self, key: u64) -> u64 {
        let mut hasher = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        hasher.write_u64(key);
        hasher.finish()
    }

    /// Where a text key goes.
    pub(crate) fn hash_text(&self, text: &str) -> u64 {
        let mut hasher = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        hasher.write(text.as_bytes());
        hasher.finish()
    }
}

/// The shard a placement hash falls in (in a sharded map). Eviction in one shard never
/// depends on keys of another.
///
/// It takes bits 51–56: hash tables index by the low bits and tag entries with the top seven,
/// so keys sharing a shard still differ in both.
pub(crate) fn shard_of(hash: u64) -> usize {
    (hash >> 51) as usize % SHARDS
}

struct Shard<V> {
    young: Generation<V>,
    old: Generation<V>,
    /// Entries kept whatever else arrives; they count towards no generation.
    pinned: Generation<V>,
}

/// Which generation holds an entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    Young,
    Old,
    Pinned,
}

impl<V> Shard<V> {
    fn generation(&mut self, held: Held) -> &mut Generation<V> {
        match held {
            Held::Young => &mut self.young,
            Held::Old => &mut self.old,
            Held::Pinned => &mut self.pinned,
        }
    }

    fn holds(&self, hash: u64, key: u64) -> Option<Held> {
        let has = |g: &Generation<V>| g.find(hash, |e| e.0 == key).is_some();
        if has(&self.pinned) {
            Some(Held::Pinned)
        } else if has(&self.young) {
            Some(Held::Young)
        } else if has(&self.old) {
            Some(Held::Old)
        } else {
            None
        }
    }

    fn take(&mut self, held: Held, hash: u64, key: u64) -> Option<V> {
        let generation = self.generation(held);
        let entry = generation.find_entry(hash, |e| e.0 == key).ok()?;
        Some(entry.remove().0.1)
    }

    /// Moves `key`'s entry where it belongs after a use: into the pinned set if `pin`, out
    /// of the old generation otherwise. Returns where it is now, if held.
    fn settle(
        &mut self,
        hash: u64,
        key: u64,
        pin: bool,
        half: usize,
        place: &Placement,
    ) -> Option<Held> {
        let held = self.holds(hash, key)?;
        let target = match (held, pin) {
            (Held::Pinned, _) => return Some(Held::Pinned),
            (_, true) => Held::Pinned,
            (Held::Old, false) => Held::Young,
            (Held::Young, false) => return Some(Held::Young),
        };
        let value = self.take(held, hash, key)?;
        Some(self.insert(target, hash, key, value, half, place))
    }

    /// Inserts an entry not held yet; a full young generation becomes the old one first.
    fn insert(
        &mut self,
        target: Held,
        hash: u64,
        key: u64,
        value: V,
        half: usize,
        place: &Placement,
    ) -> Held {
        if target == Held::Young && self.young.len() >= half {
            self.old = std::mem::take(&mut self.young);
        }
        let rehash = |e: &(u64, V)| place.hash(e.0);
        self.generation(target)
            .insert_unique(hash, (key, value), rehash);
        target
    }

    fn value(&mut self, held: Held, hash: u64, key: u64) -> Option<&mut V> {
        let generation = self.generation(held);
        generation.find_mut(hash, |e| e.0 == key).map(|e| &mut e.1)
    }
}

/// A concurrent map holding at most `capacity` unpinned entries (rounded up to the shard
/// count).
pub(crate) struct BoundedMap<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    half: usize,
    placement: Placement,
}

impl<V> BoundedMap<V> {
    /// A map that never holds more than `capacity` unpinned entries, placed by `placement`.
    pub(crate) fn new(capacity: usize, placement: Placement) -> Self {
        let shard_count = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        let half = (capacity / shard_count / 2).max(1);
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard {
                    young: Generation::new(),
                    old: Generation::new(),
                    pinned: Generation::new(),
                })
            })
            .collect();
        Self {
            shards,
            half,
            placement,
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "INVARIANT: a map has at least one shard, and the index is reduced modulo their count"
    )]
    fn shard(&self, hash: u64) -> &Mutex<Shard<V>> {
        &self.shards[shard_of(hash) % self.shards.len()]
    }

    /// Runs `f` on the entry for `key`, creating it with `V::default()` when absent.
    pub(crate) fn update<R>(&self, key: u64, f: impl FnOnce(&mut V) -> R) -> R
    where
        V: Default,
    {
        let loaded = self.update_loading(key, false, || Ok::<_, Infallible>(None), f);
        match loaded {
            Ok(r) => r,
        }
    }

    /// Runs `f` on the entry for `key` if it exists.
    pub(crate) fn get<R>(&self, key: u64, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        match self.get_loading(key, || Ok::<_, Infallible>(None), f) {
            Ok(r) => r,
        }
    }

    /// [`BoundedMap::update`] for a map in front of a slower store: a key missing here is
    /// first looked up with `load`. The shard stays locked meanwhile, so no other call on
    /// the key can interleave with loading, changing and saving it. With `pin`, the entry
    /// is pinned from now on: no eviction removes it, only [`BoundedMap::remove`] and
    /// [`BoundedMap::retain`] do.
    pub(crate) fn update_loading<R, E>(
        &self,
        key: u64,
        pin: bool,
        load: impl FnOnce() -> Result<Option<V>, E>,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, E>
    where
        V: Default,
    {
        let hash = self.placement.hash(key);
        let mut shard = self.shard(hash).lock();
        let held = match shard.settle(hash, key, pin, self.half, &self.placement) {
            Some(held) => held,
            None => {
                let value = load()?.unwrap_or_default();
                let target = if pin { Held::Pinned } else { Held::Young };
                shard.insert(target, hash, key, value, self.half, &self.placement)
            }
        };
        let value = shard.value(held, hash, key).expect("entry was just placed");
        Ok(f(value))
    }

    /// [`BoundedMap::get`] for a map in front of a slower store, as in
    /// [`BoundedMap::update_loading`].
    pub(crate) fn get_loading<R, E>(
        &self,
        key: u64,
        load: impl FnOnce() -> Result<Option<V>, E>,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<Option<R>, E> {
        let hash = self.placement.hash(key);
        let mut shard = self.shard(hash).lock();
        let held = match shard.settle(hash, key, false, self.half, &self.placement) {
            Some(held) => held,
            None => match load()? {
                Some(value) => {
                    shard.insert(Held::Young, hash, key, value, self.half, &self.placement)
                }
                None => return Ok(None),
            },
        };
        Ok(shard.value(held, hash, key).map(f))
    }

    /// Runs `f` with `key`'s shard locked on its entry, if held; `f` may change it or, by
    /// leaving `None`, remove it. Nothing is promoted or inserted, so sweeps can visit every
    /// key without churning the cache.
    pub(crate) fn with_entry<R>(&self, key: u64, f: impl FnOnce(&mut Option<V>) -> R) -> R {
        let hash = self.placement.hash(key);
        let mut shard = self.shard(hash).lock();
        let held = shard.holds(hash, key);
        let mut entry = held.and_then(|held| shard.take(held, hash, key));
        let result = f(&mut entry);
        if let (Some(value), Some(held)) = (entry, held) {
            // Back where it was: one entry fewer there now, so no generation rotates.
            shard.insert(held, hash, key, value, self.half, &self.placement);
        }
        result
    }

    /// Removes `key`'s entry, or what `load` finds when it is not held, and runs `f` on it
    /// with the shard still locked (to stage the removal where no other call can interleave).
    pub(crate) fn remove_loading<R, E>(
        &self,
        key: u64,
        load: impl FnOnce() -> Result<Option<V>, E>,
        f: impl FnOnce(Option<V>) -> R,
    ) -> Result<R, E> {
        let hash = self.placement.hash(key);
        let mut shard = self.shard(hash).lock();
        let value = match shard.holds(hash, key) {
            Some(held) => shard.take(held, hash, key),
            None => load()?,
        };
        Ok(f(value))
    }

    /// Whether `key` has an entry; nothing is promoted.
    pub(crate) fn holds(&self, key: u64) -> bool {
        let hash = self.placement.hash(key);
        self.shard(hash).lock().holds(hash, key).is_some()
    }

    /// Inserts what `make` returns for `key`, run with the shard locked, unless an entry is
    /// held already or it returns `None`.
    pub(crate) fn insert_missing<E>(
        &self,
        key: u64,
        make: impl FnOnce() -> Result<Option<V>, E>,
    ) -> Result<(), E> {
        let hash = self.placement.hash(key);
        let mut shard = self.shard(hash).lock();
        if shard.holds(hash, key).is_none()
            && let Some(value) = make()?
        {
            shard.insert(Held::Young, hash, key, value, self.half, &self.placement);
        }
        Ok(())
    }

    /// Removes and returns the entry for `key`.
    pub(crate) fn remove(&self, key: u64) -> Option<V> {
        let hash = self.placement.hash(key);
        let mut shard = self.shard(hash).lock();
        let held = shard.holds(hash, key)?;
        shard.take(held, hash, key)
    }

    /// Runs `keep` on every entry, removing those it returns false for; returns how many
    /// were removed. It visits every shard in turn: for rare operations (erasure, sweeps),
    /// not for the request path.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&mut V) -> bool) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let Shard { young, old, pinned } = &mut *shard;
            for generation in [young, old, pinned] {
                let before = generation.len();
                generation.retain(|entry| keep(&mut entry.1));
                removed += before - generation.len();
            }
        }
        removed
    }

    /// Number of entries held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.young.len() + s.old.len() + s.pinned.len()
            })
            .sum()
    }

    /// The most unpinned entries this map can hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.len() * self.half * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<V>(capacity: usize) -> BoundedMap<V> {
        BoundedMap::new(capacity, Placement::random())
    }

    #[test]
    fn never_exceeds_capacity_under_a_flood_of_new_keys() {
        let map = map::<u64>(10_000);
        for key in 0..1_000_000u64 {
            map.update(key, |v| *v += 1);
        }
        assert!(
            map.len() <= map.capacity(),
            "{} > {}",
            map.len(),
            map.capacity()
        );
        assert!(map.capacity() <= 10_048);
    }

    #[test]
    fn retain_removes_what_it_rejects_in_every_generation() {
        let map = map::<u64>(8);
        for key in 0..8u64 {
            map.update(key, |v| *v = key);
        }
        map.update_loading(9, true, || Ok::<_, Infallible>(None), |v| *v = 9)
            .unwrap();
        assert_eq!(map.retain(|v| *v % 2 == 0), 5);
        assert_eq!(map.get(3, |v| *v), None);
        assert_eq!(map.get(9, |v| *v), None);
        assert_eq!(map.get(4, |v| *v), Some(4));
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn entries_in_use_survive_rotation() {
        let map = map::<u32>(100);
        map.update(7, |v| *v = 42);
        for key in 1_000..10_000u64 {
            map.update(key, |_| ());
            if key % 10 == 0 {
                assert_eq!(map.get(7, |v| *v), Some(42));
            }
        }
        assert_eq!(map.remove(7), Some(42));
        assert_eq!(map.get(7, |v| *v), None);
    }

    #[test]
    fn pinned_entries_survive_a_flood_and_stay_pinned_when_read() {
        let map = map::<u32>(SHARDED_FROM);
        map.update(7, |v| *v = 1);
        map.update_loading(7, true, || Ok::<_, Infallible>(None), |v| *v += 1)
            .unwrap();
        for key in 1_000..1_000_000u64 {
            map.update(key, |_| ());
            if key % 100_000 == 0 {
                assert_eq!(map.get(7, |v| *v), Some(2), "after {key} keys");
            }
        }
        assert!(map.len() <= map.capacity() + 1);
    }

    #[test]
    fn placement_is_keyed_and_fixed_placement_repeats() {
        let (a, b) = (Placement::random(), Placement::random());
        assert_ne!(a, b);
        assert_ne!(a.hash(42), b.hash(42));
        assert_eq!(Placement::fixed().hash(42), Placement::fixed().hash(42));
    }
}
