//! The disk behind the embedded backend's tables, written by group commit.
//!
//! A change is staged here (its key's latest encoding) while the table's shard is locked, so
//! staged values follow each key's changes in order. A request about to answer awaits
//! [`Disk::committed`]: requests whose changes are not written yet take the writer lock in
//! turn, and the holder takes everything staged as a batch, writes it to fjall in one journal
//! write and hands it to the operating system (syncing the disk when [`SyncMode`] says so);
//! requests queued meanwhile find their changes in that batch or share the next one. A key changed many times between two batches is written once. That is
//! what keeps a durable answer close to the cost of an in-memory one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{Database, Keyspace, PersistMode};

use super::embedded::SyncMode;
use super::{Committed, StoreError};

/// How often [`SyncMode::EverySec`] syncs the disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The keyspaces of the embedded store, one per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    /// Users' failures.
    Failures,
    /// Users' locks.
    Locks,
    /// Learned profiles.
    Profiles,
    /// IP counters.
    Ips,
    /// Device counters.
    Devices,
    /// Attempts awaiting their outcome.
    Pending,
}

impl Space {
    /// The keyspace's name in the database.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Space::Failures => "failures",
            Space::Locks => "locks",
            Space::Profiles => "profiles",
            Space::Ips => "ips",
            Space::Devices => "devices",
            Space::Pending => "pending",
        }
    }
}

/// One keyspace per [`Space`].
pub(crate) struct Keyspaces {
    pub(crate) failures: Keyspace,
    pub(crate) locks: Keyspace,
    pub(crate) profiles: Keyspace,
    pub(crate) ips: Keyspace,
    pub(crate) devices: Keyspace,
    pub(crate) pending: Keyspace,
}

impl Keyspaces {
    /// Opens (or creates) every keyspace with `open`.
    pub(crate) fn open(
        mut open: impl FnMut(&str) -> fjall::Result<Keyspace>,
    ) -> fjall::Result<Self> {
        Ok(Self {
            failures: open(Space::Failures.name())?,
            locks: open(Space::Locks.name())?,
            profiles: open(Space::Profiles.name())?,
            ips: open(Space::Ips.name())?,
            devices: open(Space::Devices.name())?,
            pending: open(Space::Pending.name())?,
        })
    }

    fn get(&self, space: Space) -> &Keyspace {
        match space {
            Space::Failures => &self.failures,
            Space::Locks => &self.locks,
            Space::Profiles => &self.profiles,
            Space::Ips => &self.ips,
            Space::Devices => &self.devices,
            Space::Pending => &self.pending,
        }
    }
}

/// The latest encoding of each changed key; `None` for a removal.
type Changes = HashMap<(Space, u64), Option<Vec<u8>>>;

/// Changes not yet in the database.
#[derive(Default)]
struct Staged {
    /// Changes since the last batch was taken.
    open: Changes,
    /// The number the open batch will be written as.
    open_number: u64,
    /// The batch being written; reads look here too until it is in the database.
    writing: Option<Arc<Changes>>,
}

/// The database, and the changes staged in front of it.
pub(crate) struct Disk {
    db: Database,
    spaces: Keyspaces,
    staged: Mutex<Staged>,
    /// Taken in turn by callers whose changes are not written yet; the holder writes
    /// everything staged (a group commit), so those queued after it usually find theirs
    /// written already.
    writer: tokio::sync::Mutex<()>,
    /// Every batch up to this number is with the operating system.
    written_through: AtomicU64,
    /// The latest batch was refused (cleared by the next one written).
    refused: AtomicBool,
    sync: SyncMode,
    /// Tests make the disk refuse writes with it.
    #[cfg(test)]
    pub(crate) refuse_writes: AtomicBool,
}

impl Disk {
    /// The database and its keyspaces.
    pub(crate) fn new(db: Database, spaces: Keyspaces, sync: SyncMode) -> Self {
        Self {
            db,
            spaces,
            staged: Mutex::new(Staged {
                open_number: 1,
                ..Staged::default()
            }),
            writer: tokio::sync::Mutex::new(()),
            written_through: AtomicU64::new(0),
            refused: AtomicBool::new(false),
            sync,
            #[cfg(test)]
            refuse_writes: AtomicBool::new(false),
        }
    }

    /// Stages a key's new encoding (`None`: removed); call it while the key's shard is
    /// locked.
    pub(crate) fn stage(&self, space: Space, key: u64, value: Option<Vec<u8>>) {
        self.lock().open.insert((space, key), value);
    }

    /// A key's latest encoding: staged, or else in the database.
    pub(crate) fn load(&self, space: Space, key: u64) -> Result<Option<Vec<u8>>, StoreError> {
        {
            let staged = self.lock();
            let in_batch = |changes: &Changes| changes.get(&(space, key)).cloned();
            if let Some(value) =
                in_batch(&staged.open).or_else(|| staged.writing.as_deref().and_then(in_batch))
            {
                return Ok(value);
            }
        }
        let stored = self
            .spaces
            .get(space)
            .get(key.to_be_bytes())
            .map_err(backend)?;
        Ok(stored.map(|bytes| bytes.to_vec()))
    }

    /// Every entry of a keyspace, staged changes included, each read once; for sweeps and
    /// erasure, never the request path.
    pub(crate) fn entries(&self, space: Space) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let overlay: Changes = {
            let staged = self.lock();
            let mut overlay = staged.writing.as_deref().cloned().unwrap_or_default();
            overlay.extend(staged.open.iter().map(|(k, v)| (*k, v.clone())));
            overlay
        };
        let mut entries = Vec::new();
        for entry in self.spaces.get(space).iter() {
            let (key, bytes) = entry.into_inner().map_err(backend)?;
            let key = <[u8; 8]>::try_from(&*key)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Backend("corrupt state key".into()))?;
            if !overlay.contains_key(&(space, key)) {
                entries.push((key, bytes.to_vec()));
            }
        }
        entries.extend(
            overlay
                .into_iter()
                .filter_map(|((s, key), value)| (s == space).then_some((key, value?))),
        );
        Ok(entries)
    }

    /// Resolves when every change staged so far is with the operating system (on the disk
    /// with [`SyncMode::Always`]). Callers whose changes are not written yet take the writer
    /// lock in turn; the holder writes everything staged, so a queue of requests shares one
    /// write, and each one whose batch was refused tries again once.
    pub(crate) fn committed(self: &Arc<Self>) -> Committed {
        let needed = {
            let staged = self.lock();
            // An empty open batch means everything staged is in earlier batches.
            staged.open_number - u64::from(staged.open.is_empty())
        };
        let disk = Arc::clone(self);
        Box::pin(async move {
            if disk.is_written(needed) {
                return Ok(());
            }
            let _turn = disk.writer.lock().await;
            if disk.is_written(needed) {
                return Ok(());
            }
            disk.write_batch()
        })
    }

    fn is_written(&self, batch: u64) -> bool {
        self.written_through.load(Ordering::Acquire) >= batch
    }

    /// True unless the disk refused the latest batch.
    pub(crate) fn healthy(&self) -> bool {
        !self.refused.load(Ordering::Acquire)
    }

    /// Writes everything staged as one batch; call it holding `writer`. A refused batch stays
    /// staged (under anything newer) for the next writer to try again.
    fn write_batch(&self) -> Result<(), StoreError> {
        let (number, batch) = {
            let mut staged = self.lock();
            let batch = Arc::new(std::mem::take(&mut staged.open));
            let number = staged.open_number;
            staged.open_number += 1;
            staged.writing = Some(Arc::clone(&batch));
            (number, batch)
        };
        let result = self.write(&batch);
        let mut staged = self.lock();
        staged.writing = None;
        match result {
            Ok(()) => {
                drop(staged);
                self.written_through.store(number, Ordering::Release);
                self.refused.store(false, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "cannot write the state");
                let newer = std::mem::take(&mut staged.open);
                staged.open = Arc::unwrap_or_clone(batch);
                staged.open.extend(newer);
                drop(staged);
                self.refused.store(true, Ordering::Release);
                Err(StoreError::Backend(format!(
                    "cannot write the state: {error}"
                )))
            }
        }
    }

    /// Writes a batch in one journal write and hands it to the operating system.
    fn write(&self, batch: &Changes) -> fjall::Result<()> {
        #[cfg(test)]
        if self.refuse_writes.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the disk is full").into());
        }
        let mut writes = self.db.batch();
        for (&(space, key), value) in batch {
            let keyspace = self.spaces.get(space);
            match value {
                Some(bytes) => writes.insert(keyspace, key.to_be_bytes(), bytes.as_slice()),
                None => writes.remove(keyspace, key.to_be_bytes()),
            }
        }
        writes.commit()?;
        let mode = match self.sync {
            SyncMode::Always => PersistMode::SyncData,
            SyncMode::EverySec | SyncMode::No => PersistMode::Buffer,
        };
        self.db.persist(mode)
    }

    /// Starts syncing the disk once a second when [`SyncMode::EverySec`] says so; the handle
    /// writes what is staged and syncs when dropped.
    pub(crate) fn start(self: &Arc<Self>) -> std::io::Result<DiskHandle> {
        let syncer = match self.sync {
            SyncMode::EverySec => Some(Syncer::start(self.db.clone())?),
            SyncMode::Always | SyncMode::No => None,
        };
        Ok(DiskHandle {
            disk: Arc::clone(self),
            _syncer: syncer,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Staged> {
        // Staging never panics while holding the lock; a poisoned lock's data is whole.
        self.staged.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps the disk in shape while the store is open: dropping it writes what is staged, stops
/// the background sync and syncs.
pub(crate) struct DiskHandle {
    disk: Arc<Disk>,
    _syncer: Option<Syncer>,
}

impl Drop for DiskHandle {
    fn drop(&mut self) {
        // A request's commit may still hold the writer; wait for it (the store is going
        // away, so no new one comes).
        let _turn = loop {
            match self.disk.writer.try_lock() {
                Ok(turn) => break turn,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if !self.disk.lock().open.is_empty() {
            let _ = self.disk.write_batch();
        }
        if let Err(error) = self.disk.db.persist(PersistMode::SyncAll) {
            tracing::error!(%error, "cannot sync the state to disk");
        }
    }
}

/// Syncs the database to the disk once a second in the background (`everysec`), so a power
/// cut loses about a second; a killed process loses nothing, as every acknowledged change is
/// with the operating system already.
struct Syncer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start(db: Database) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("riskgate-fsync".into())
            .spawn(move || {
                // Woken by the interval, or by `stop` going away.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SYNC_EVERY) {
                    if let Err(error) = db.persist(PersistMode::SyncData) {
                        tracing::error!(%error, "cannot sync the state to disk");
                    }
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend(error: fjall::Error) -> StoreError {
    StoreError::Backend(format!("embedded store: {error}"))
}
