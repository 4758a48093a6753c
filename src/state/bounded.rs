//! A hash map with a hard entry bound: sharded, with two generations per shard.
//!
//! Each shard keeps a young and an old generation. Hits in the old generation move to the
//! young one; when the young generation is full it becomes the old one and the previous old
//! generation is dropped. Memory therefore never exceeds the configured capacity, the cost of
//! eviction is O(1) amortised, and entries that keep being used survive (an LRU
//! approximation). Keys are already-hashed `u64`s.

use std::collections::HashMap;
use std::convert::Infallible;

use nohash_hasher::BuildNoHashHasher;
use parking_lot::Mutex;

type Generation<V> = HashMap<u64, V, BuildNoHashHasher<u64>>;

/// Shards of a map holding at least [`SHARDED_FROM`] entries; smaller maps have one.
pub(crate) const SHARDS: usize = 64;
/// The smallest capacity split into [`SHARDS`] shards.
pub(crate) const SHARDED_FROM: usize = 4096;

/// The shard `key` falls in (in a sharded map). Eviction in one shard never depends on keys
/// of another.
///
/// It takes bits 51–56: hash tables index by the low bits and tag entries with the top seven,
/// so keys sharing a shard still differ in both (with the top bits, every key in a shard
/// would carry one of two tags and each lookup would compare many keys).
pub(crate) fn shard_of(key: u64) -> usize {
    (key >> 51) as usize % SHARDS
}

struct Shard<V> {
    young: Generation<V>,
    old: Generation<V>,
}

impl<V> Shard<V> {
    /// Moves `key` into the young generation if it is only in the old one.
    fn promote(&mut self, key: u64, half: usize) {
        if !self.young.contains_key(&key)
            && let Some(value) = self.old.remove(&key)
        {
            self.insert_young(key, value, half);
        }
    }

    fn insert_young(&mut self, key: u64, value: V, half: usize) {
        if self.young.len() >= half {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }
}

/// A concurrent map holding at most `capacity` entries (rounded up to the shard count).
pub(crate) struct BoundedMap<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    half: usize,
}

impl<V> BoundedMap<V> {
    /// A map that never holds more than `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        let shard_count = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        let half = (capacity / shard_count / 2).max(1);
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard {
                    young: Generation::default(),
                    old: Generation::default(),
                })
            })
            .collect();
        Self { shards, half }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "INVARIANT: a map has at least one shard, and the index is reduced modulo their count"
    )]
    fn shard(&self, key: u64) -> &Mutex<Shard<V>> {
        &self.shards[shard_of(key) % self.shards.len()]
    }

    /// Runs `f` on the entry for `key`, creating it with `V::default()` when absent.
    pub(crate) fn update<R>(&self, key: u64, f: impl FnOnce(&mut V) -> R) -> R
    where
        V: Default,
    {
        let loaded = self.update_loading(key, || Ok::<_, Infallible>(None), f);
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
    /// the key can interleave with loading, changing and saving it.
    pub(crate) fn update_loading<R, E>(
        &self,
        key: u64,
        load: impl FnOnce() -> Result<Option<V>, E>,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, E>
    where
        V: Default,
    {
        let mut shard = self.shard(key).lock();
        shard.promote(key, self.half);
        if !shard.young.contains_key(&key) {
            let value = load()?.unwrap_or_default();
            shard.insert_young(key, value, self.half);
        }
        let value = shard.young.get_mut(&key).expect("entry was just inserted");
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
        let mut shard = self.shard(key).lock();
        shard.promote(key, self.half);
        if !shard.young.contains_key(&key)
            && let Some(value) = load()?
        {
            shard.insert_young(key, value, self.half);
        }
        Ok(shard.young.get_mut(&key).map(f))
    }

    /// Runs `f` with `key`'s shard locked and its entry, if held; nothing is promoted or
    /// inserted, so sweeps can visit every key without churning the cache.
    pub(crate) fn with_locked<R>(&self, key: u64, f: impl FnOnce(Option<&mut V>) -> R) -> R {
        let mut shard = self.shard(key).lock();
        let Shard { young, old } = &mut *shard;
        f(young.get_mut(&key).or_else(|| old.get_mut(&key)))
    }

    /// Removes and returns the entry for `key`.
    pub(crate) fn remove(&self, key: u64) -> Option<V> {
        let mut shard = self.shard(key).lock();
        let young = shard.young.remove(&key);
        let old = shard.old.remove(&key);
        young.or(old)
    }

    /// Runs `keep` on every entry, removing those it returns false for; returns how many
    /// were removed. It visits every shard in turn: for rare operations (erasure), not for
    /// the request path.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&mut V) -> bool) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let Shard { young, old } = &mut *shard;
            for generation in [young, old] {
                let before = generation.len();
                generation.retain(|_, value| keep(value));
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
                s.young.len() + s.old.len()
            })
            .sum()
    }

    /// The most entries this map can hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.len() * self.half * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_capacity_under_a_flood_of_new_keys() {
        let map = BoundedMap::<u64>::new(10_000);
        for key in 0..1_000_000u64 {
            map.update(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), |v| *v += 1);
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
    fn retain_removes_what_it_rejects_in_both_generations() {
        let map = BoundedMap::<u64>::new(8);
        for key in 0..8u64 {
            map.update(key, |v| *v = key);
        }
        assert_eq!(map.retain(|v| *v % 2 == 0), 4);
        assert_eq!(map.get(3, |v| *v), None);
        assert_eq!(map.get(4, |v| *v), Some(4));
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn entries_in_use_survive_rotation() {
        let map = BoundedMap::<u32>::new(100);
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
}
