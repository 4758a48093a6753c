//! One kind of state (failures, locks, profiles...): a bounded map in memory, optionally in
//! front of a keyspace on disk that holds every entry.
//!
//! On disk, a key missing from memory is read from the keyspace, and every change is written
//! to it before the call returns, while the map's shard is still locked, so memory and disk
//! see changes to one key in the same order. A write reaches the operating system at once
//! (fjall's journal), so a process killed right after a call returns loses nothing.

use fjall::Keyspace;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use super::bounded::BoundedMap;

/// A bounded map, and the keyspace behind it when state is durable.
pub(crate) struct Table<V> {
    map: BoundedMap<V>,
    disk: Option<Keyspace>,
}

impl<V: Serialize + DeserializeOwned> Table<V> {
    /// A table in memory only, holding at most `capacity` entries.
    pub(crate) fn in_memory(capacity: usize) -> Self {
        Self {
            map: BoundedMap::new(capacity),
            disk: None,
        }
    }

    /// A table kept in `disk`, with at most `capacity` entries cached in memory.
    pub(crate) fn on_disk(capacity: usize, disk: Keyspace) -> Self {
        Self {
            map: BoundedMap::new(capacity),
            disk: Some(disk),
        }
    }

    /// Runs `f` on the entry for `key` (`V::default()` when there is none) and keeps the
    /// result.
    pub(crate) fn update<R>(&self, key: u64, f: impl FnOnce(&mut V) -> R) -> Result<R, StoreError>
    where
        V: Default,
    {
        self.map.update_loading(
            key,
            || self.load(key),
            |value| {
                let result = f(value);
                self.save(key, value).map(|()| result)
            },
        )?
    }

    /// Reads the entry for `key`, if there is one.
    pub(crate) fn read<R>(
        &self,
        key: u64,
        f: impl FnOnce(&V) -> R,
    ) -> Result<Option<R>, StoreError> {
        self.map
            .get_loading(key, || self.load(key), |value| f(value))
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
            |value| {
                let result = f(value);
                self.save(key, value).map(|()| result)
            },
        )?;
        changed.transpose()
    }

    /// Removes the entry for `key`; returns it, if there was one.
    pub(crate) fn remove(&self, key: u64) -> Result<Option<V>, StoreError> {
        let cached = self.map.remove(key);
        let Some(disk) = &self.disk else {
            return Ok(cached);
        };
        let stored = match cached {
            Some(value) => Some(value),
            None => self.load(key)?,
        };
        disk.remove(key.to_be_bytes()).map_err(backend)?;
        Ok(stored)
    }

    /// Runs `keep` on every entry, removing those it returns false for and keeping what it
    /// changes; returns how many were removed. Reads the whole table: for erasure, not for
    /// the request path.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&mut V) -> bool) -> Result<usize, StoreError> {
        let in_memory = self.map.retain(&mut keep);
        let Some(disk) = &self.disk else {
            return Ok(in_memory);
        };
        let mut removed = 0;
        for entry in disk.iter() {
            let (key, bytes) = entry.into_inner().map_err(backend)?;
            let mut value: V = decode(&bytes)?;
            if !keep(&mut value) {
                disk.remove(key).map_err(backend)?;
                removed += 1;
            } else {
                let kept = encode(&value)?;
                if *kept != *bytes {
                    disk.insert(key, kept).map_err(backend)?;
                }
            }
        }
        Ok(removed.max(in_memory))
    }

    /// Entries held in memory.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn load(&self, key: u64) -> Result<Option<V>, StoreError> {
        let Some(disk) = &self.disk else {
            return Ok(None);
        };
        match disk.get(key.to_be_bytes()).map_err(backend)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn save(&self, key: u64, value: &V) -> Result<(), StoreError> {
        if let Some(disk) = &self.disk {
            disk.insert(key.to_be_bytes(), encode(value)?)
                .map_err(backend)?;
        }
        Ok(())
    }
}

/// Entries are JSON: self-describing, so fields can be added without a migration (the
/// database's format version covers the rest).
fn encode<V: Serialize>(value: &V) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("cannot encode state: {e}")))
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("corrupt state entry: {e}")))
}

fn backend(error: fjall::Error) -> StoreError {
    StoreError::Backend(format!("embedded store: {error}"))
}
