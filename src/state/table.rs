//! One kind of state (failures, locks, profiles...): a bounded map in memory, optionally in
//! front of a keyspace on disk that holds every entry.
//!
//! On disk, a key missing from memory is read from the disk, and every change is staged for
//! the disk's writer before the call returns, while the map's shard is still locked, so
//! memory and disk see changes to one key in the same order (see [`Disk`]).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bounded::{BoundedMap, Placement};
use super::disk::{Disk, Fetched, Space};
use super::{StoreError, decode, encode};

/// A bounded map, and the keyspace behind it when state is durable.
pub(crate) struct Table<V> {
    /// Entries by key. With a disk, `None` caches a key the disk does not have, so a key read
    /// on every request (a lock, failures) costs a disk lookup once, not every time.
    map: BoundedMap<Option<V>>,
    disk: Option<(Arc<Disk>, Space)>,
}

impl<V: Serialize + DeserializeOwned> Table<V> {
    /// A table in memory only, holding at most `capacity` entries (besides pinned ones).
    pub(crate) fn in_memory(capacity: usize, placement: Placement) -> Self {
        Self {
            map: BoundedMap::new(capacity, placement),
            disk: None,
        }
    }

    /// A table kept in `disk`'s keyspace `space`, with at most `capacity` entries cached in
    /// memory.
    pub(crate) fn on_disk(
        capacity: usize,
        placement: Placement,
        disk: &Arc<Disk>,
        space: Space,
    ) -> Self {
        Self {
            map: BoundedMap::new(capacity, placement),
            disk: Some((Arc::clone(disk), space)),
        }
    }

    /// Runs `f` on the entry for `key` (`V::default()` when there is none) and keeps the
    /// result.
    pub(crate) fn update<R>(&self, key: u64, f: impl FnOnce(&mut V) -> R) -> Result<R, StoreError>
    where
        V: Default,
    {
        self.update_pinned(key, false, f)
    }

    /// [`Table::update`], pinning the entry in memory from now on if `pin`: no flood of
    /// other keys can evict it (a known user's failures, a lock).
    pub(crate) fn update_pinned<R>(
        &self,
        key: u64,
        pin: bool,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, StoreError>
    where
        V: Default,
    {
        self.map.update_loading(
            key,
            pin,
            || self.load(key),
            |slot| {
                let value = slot.get_or_insert_with(V::default);
                let result = f(value);
                self.save(key, value).map(|()| result)
            },
        )?
    }

    /// Sets the entry for `key` to `value`, whatever it was: the disk is not read (a new
    /// key, such as a parked attempt's request id, would always miss there).
    pub(crate) fn put(&self, key: u64, value: V) -> Result<(), StoreError> {
        let missing = || Ok::<_, StoreError>(None);
        self.map.update_loading(key, false, missing, |slot| {
            let value = slot.insert(value);
            self.save(key, value)
        })?
    }

    /// Reads the entry for `key`, if there is one.
    pub(crate) fn read<R>(
        &self,
        key: u64,
        f: impl FnOnce(&V) -> R,
    ) -> Result<Option<R>, StoreError> {
        let read = self
            .map
            .get_loading(key, || self.load(key), |slot| slot.as_ref().map(f))?;
        Ok(read.flatten())
    }

    /// Reads the entry for `key` as [`Table::read`] does, but as no use of it: nothing is
    /// promoted, cached or evicted, so a what-if evaluation leaves even the cache as it was.
    pub(crate) fn peek<R>(
        &self,
        key: u64,
        f: impl FnOnce(&V) -> R,
    ) -> Result<Option<R>, StoreError> {
        self.map.with_entry(key, |cached| match cached {
            Some(slot) => Ok(slot.as_ref().map(f)),
            // Read under the shard's lock, as `retain` does, so a staged change is seen.
            None => Ok(self.load(key)?.flatten().as_ref().map(f)),
        })
    }

    /// Runs `f` on the entry for `key`, if there is one, and keeps the result.
    pub(crate) fn modify<R>(
        &self,
        key: u64,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<Option<R>, StoreError> {
        let changed = self.map.get_loading(
            key,
            || self.load(key),
            |slot| {
                slot.as_mut().map(|value| {
                    let result = f(value);
                    self.save(key, value).map(|()| result)
                })
            },
        )?;
        changed.flatten().transpose()
    }

    /// Removes the entry for `key`; returns it, if there was one. With a disk, the removal is
    /// staged under the shard's lock, where later reads find it, and the entry leaves memory
    /// (a pinned one too).
    pub(crate) fn remove(&self, key: u64) -> Result<Option<V>, StoreError> {
        let Some((disk, space)) = &self.disk else {
            return Ok(self.map.remove(key).flatten());
        };
        self.map.remove_loading(
            key,
            || self.load(key),
            |value| {
                disk.stage(*space, key, None);
                value.flatten()
            },
        )
    }

    /// Runs `keep` on every entry, removing those it returns false for and keeping what it
    /// changes; returns how many were removed. Reads the whole table: for erasure and sweeps,
    /// not for the request path. With a disk, each key is judged on its newest value with
    /// its shard locked, so a change made meanwhile is never lost or undone.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&mut V) -> bool) -> Result<usize, StoreError> {
        let Some((disk, space)) = &self.disk else {
            return Ok(self.map.retain(|slot| slot.as_mut().is_none_or(&mut keep)));
        };
        let mut removed = 0;
        for (key, stored) in disk.entries(*space)? {
            let gone = self.map.with_entry(key, |cached| {
                // A kept value is written back only if `keep` changed it.
                let restage = |value: &V, before: &[u8]| -> Result<(), StoreError> {
                    let kept = encode(value)?;
                    if kept != before {
                        disk.stage(*space, key, Some(kept));
                    }
                    Ok(())
                };
                match cached {
                    Some(slot) => {
                        // Cached as absent: removed since the listing.
                        let Some(value) = slot.as_mut() else {
                            return Ok(false);
                        };
                        if keep(value) {
                            restage(value, &stored)?;
                            return Ok(false);
                        }
                        // Out of memory too (a pinned entry would stay there otherwise).
                        *cached = None;
                    }
                    None => {
                        let Some(newest) = disk.load(*space, key)? else {
                            return Ok(false);
                        };
                        let mut value: V = decode(&newest)?;
                        if keep(&mut value) {
                            restage(&value, &newest)?;
                            return Ok(false);
                        }
                    }
                }
                disk.stage(*space, key, None);
                Ok::<_, StoreError>(true)
            })?;
            removed += usize::from(gone);
        }
        Ok(removed)
    }

    /// What to read `key` from, when a use of it would read the disk (it is durable and not
    /// in memory): [`Fetch::run`] reads it on any thread, and [`Table::fill`] caches it.
    pub(crate) fn to_fetch(&self, key: u64) -> Option<Fetch> {
        let (disk, space) = self.disk.as_ref()?;
        (!self.map.holds(key)).then(|| Fetch {
            disk: Arc::clone(disk),
            space: *space,
            key,
        })
    }

    /// Caches what [`Fetch::run`] read for `key`, unless the key is in memory by now or may
    /// have changed since (a later use then reads the disk itself).
    pub(crate) fn fill(&self, key: u64, fetched: Fetched) -> Result<(), StoreError> {
        let Some((disk, space)) = &self.disk else {
            return Ok(());
        };
        self.map
            .insert_missing(key, || match disk.refresh(*space, key, fetched) {
                Some(Some(bytes)) => decode(&bytes).map(|value| Some(Some(value))),
                Some(None) => Ok(Some(None)),
                None => Ok(None),
            })
    }

    /// Entries held in memory.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry to cache for a key missing from memory: `None` in memory only, otherwise
    /// what the disk has (`Some(None)` when it has nothing).
    fn load(&self, key: u64) -> Result<Option<Option<V>>, StoreError> {
        let Some((disk, space)) = &self.disk else {
            return Ok(None);
        };
        match disk.load(*space, key)? {
            Some(bytes) => decode(&bytes).map(|value| Some(Some(value))),
            None => Ok(Some(None)),
        }
    }

    fn save(&self, key: u64, value: &V) -> Result<(), StoreError> {
        if let Some((disk, space)) = &self.disk {
            disk.stage(*space, key, Some(encode(value)?));
        }
        Ok(())
    }
}

/// A read of one key from the disk, to run off the runtime's threads ([`Table::to_fetch`]).
pub(crate) struct Fetch {
    disk: Arc<Disk>,
    space: Space,
    key: u64,
}

impl Fetch {
    /// Reads the key.
    pub(crate) fn run(&self) -> Result<Fetched, StoreError> {
        self.disk.fetch(self.space, self.key)
    }
}
