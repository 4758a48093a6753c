//! The disk behind the embedded backend's tables, written by group commit.
//!
//! A change is staged here (its key's latest encoding) while the table's shard is locked, so
//! staged values follow each key's changes in order. A request about to answer awaits
//! [`Disk::committed`]: requests whose changes are not logged yet take the commit log in
//! turn, and the holder takes everything staged as a batch and appends it to the log in one
//! write, which hands it to the operating system (syncing the disk when [`SyncMode`] says
//! so); requests queued meanwhile find their changes in that batch or share the next one. A
//! key changed many times between two batches is logged once. A background thread, the
//! applier, then writes logged batches into fjall, merging those that queued up, so the
//! database's flushes, compactions and syncs never hold an answer back.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{Database, Keyspace, PersistMode};

use super::background;
use super::commit_log::{self, CommitLog};
use super::embedded::SyncMode;
use super::{Committed, StoreError};

/// How often [`SyncMode::EverySec`] syncs the disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How far (in bytes of changes) the database may lag behind the log before callers wait
/// for it to catch up: it falls behind while fjall stalls its writers for a flush, and this
/// bounds the memory the lag holds (about six seconds of 10,000 logins a second).
const MAX_UNAPPLIED_BYTES: usize = 64 << 20;
/// The applier's pause between rounds: batches logged meanwhile are merged into one database
/// write, so a key changed on every request is written a hundred times a second at most and
/// fjall has little to flush and compact (writing every batch as it came cost the answers
/// CPU on a 2-core machine).
const APPLY_PAUSE: Duration = Duration::from_millis(10);
/// How long the applier waits before trying a refused write again.
const APPLY_RETRY: Duration = Duration::from_millis(100);

/// The keyspaces of the embedded store, one per table; the numbers are written in the commit
/// log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Space {
    /// Users' failures.
    Failures = 1,
    /// Users' locks.
    Locks = 2,
    /// Learned profiles.
    Profiles = 3,
    /// IP counters.
    Ips = 4,
    /// Device counters.
    Devices = 5,
    /// Attempts awaiting their outcome.
    Pending = 6,
}

impl Space {
    /// The space a commit log record numbers `code`.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        [
            Space::Failures,
            Space::Locks,
            Space::Profiles,
            Space::Ips,
            Space::Devices,
            Space::Pending,
        ]
        .into_iter()
        .find(|space| *space as u8 == code)
    }

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
pub(crate) type Changes = HashMap<(Space, u64), Option<Vec<u8>>>;

/// What [`Disk::fetch`] read.
#[derive(Debug)]
pub(crate) struct Fetched {
    value: Option<Vec<u8>>,
    /// [`Staged::drops`] before the read.
    drops: u64,
}

/// Changes not yet in the database.
struct Staged {
    /// Changes since the last batch was taken.
    open: Changes,
    /// The number the open batch will be logged as.
    open_number: u64,
    /// Batches taken for the log and not yet in the database, oldest first by number; reads
    /// look here too until the applier has written them.
    unapplied: VecDeque<(u64, Arc<Changes>)>,
    /// For each key changed in an unapplied batch, the newest such batch: a read finds the
    /// key's latest value with one lookup however far the database lags.
    newest: HashMap<(Space, u64), u64>,
    /// The size of the unapplied batches, for [`MAX_UNAPPLIED_BYTES`].
    unapplied_bytes: usize,
    /// Full log segments, each with the last batch it holds: deleted once the database has
    /// that batch on the disk.
    full_segments: Vec<(PathBuf, u64)>,
    /// The segment being appended to, for the background sync.
    segment: Arc<File>,
    /// Set when the store closes: the applier stops once everything logged is applied.
    closing: bool,
    /// How many times the applier has dropped batches the database now holds: a key read
    /// before a drop may have changed since without a trace left here ([`Disk::refresh`]).
    drops: u64,
}

impl Staged {
    /// A key's latest value not yet in the database: staged, or in an unapplied batch.
    fn latest(&self, space: Space, key: u64) -> Option<Option<Vec<u8>>> {
        if let Some(value) = self.open.get(&(space, key)) {
            return Some(value.clone());
        }
        let number = *self.newest.get(&(space, key))?;
        let at = self
            .unapplied
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()?;
        let (_, batch) = self.unapplied.get(at)?;
        batch.get(&(space, key)).cloned()
    }

    /// Queues a batch taken for the log (numbers only grow).
    fn push_unapplied(&mut self, number: u64, batch: Arc<Changes>) {
        for key in batch.keys() {
            self.newest.insert(*key, number);
        }
        self.unapplied_bytes += batch_bytes(&batch);
        self.unapplied.push_back((number, batch));
    }

    /// Takes back the newest batch (the log refused it).
    fn pop_unapplied(&mut self) {
        if let Some((number, batch)) = self.unapplied.pop_back() {
            self.forget_batch(number, &batch);
        }
    }

    /// Drops the batches up to `through`, now in the database.
    fn drop_applied(&mut self, through: u64) {
        self.drops += 1;
        while let Some((number, _)) = self.unapplied.front()
            && *number <= through
            && let Some((number, batch)) = self.unapplied.pop_front()
        {
            self.forget_batch(number, &batch);
        }
    }

    fn forget_batch(&mut self, number: u64, batch: &Changes) {
        for key in batch.keys() {
            if self.newest.get(key) == Some(&number) {
                self.newest.remove(key);
            }
        }
        self.unapplied_bytes = self.unapplied_bytes.saturating_sub(batch_bytes(batch));
    }
}

/// About how much memory a batch holds.
fn batch_bytes(batch: &Changes) -> usize {
    batch
        .values()
        .map(|value| 16 + value.as_ref().map_or(0, Vec::len))
        .sum()
}

/// The database, the commit log, and the changes staged in front of them.
pub(crate) struct Disk {
    db: Database,
    spaces: Keyspaces,
    staged: Mutex<Staged>,
    /// Wakes the applier when a batch is logged or the store closes.
    logged: Condvar,
    /// Wakes callers waiting for the applier to catch up.
    applied: tokio::sync::Notify,
    /// Taken in turn by callers whose changes are not logged yet; the holder logs everything
    /// staged (a group commit), so those queued after it usually find theirs logged already.
    log: tokio::sync::Mutex<CommitLog>,
    log_dir: PathBuf,
    /// Every batch up to this number is with the operating system.
    written_through: AtomicU64,
    /// The latest batch could not be logged (cleared by the next one logged).
    log_refused: AtomicBool,
    /// The database refuses the applier's writes (cleared when one succeeds).
    apply_refused: AtomicBool,
    sync: SyncMode,
    /// Tests make the log refuse writes with it.
    #[cfg(test)]
    pub(crate) refuse_writes: AtomicBool,
    /// Tests make the database refuse the applier's writes with it.
    #[cfg(test)]
    pub(crate) refuse_applies: AtomicBool,
}

impl Disk {
    /// Brings the database up to date with the commit log in `log_dir` (left by a process
    /// that did not close its store), syncs it, and begins a new log.
    pub(crate) fn recover(
        db: Database,
        spaces: Keyspaces,
        log_dir: &Path,
        sync: SyncMode,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut logged = Changes::new();
        let replayed = commit_log::replay(log_dir, |batch| logged.extend(batch))?;
        if !logged.is_empty() {
            tracing::info!(
                changes = logged.len(),
                "restored changes from the commit log"
            );
            write_newest(&db, &spaces, [&logged])?;
        }
        db.persist(PersistMode::SyncAll)?;
        for segment in replayed {
            std::fs::remove_file(segment)?;
        }
        let log = CommitLog::create(log_dir)?;
        Ok(Self {
            db,
            spaces,
            staged: Mutex::new(Staged {
                open: Changes::new(),
                open_number: 1,
                unapplied: VecDeque::new(),
                newest: HashMap::new(),
                unapplied_bytes: 0,
                full_segments: Vec::new(),
                segment: log.file(),
                closing: false,
                drops: 0,
            }),
            logged: Condvar::new(),
            applied: tokio::sync::Notify::new(),
            log: tokio::sync::Mutex::new(log),
            log_dir: log_dir.to_owned(),
            written_through: AtomicU64::new(0),
            log_refused: AtomicBool::new(false),
            apply_refused: AtomicBool::new(false),
            sync,
            #[cfg(test)]
            refuse_writes: AtomicBool::new(false),
            #[cfg(test)]
            refuse_applies: AtomicBool::new(false),
        })
    }

    /// Stages a key's new encoding (`None`: removed); call it while the key's shard is
    /// locked.
    pub(crate) fn stage(&self, space: Space, key: u64, value: Option<Vec<u8>>) {
        self.lock().open.insert((space, key), value);
    }

    /// A key's latest encoding: staged, or else in the database.
    pub(crate) fn load(&self, space: Space, key: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.lock().latest(space, key) {
            return Ok(value);
        }
        let stored = self
            .spaces
            .get(space)
            .get(key.to_be_bytes())
            .map_err(backend)?;
        Ok(stored.map(|bytes| bytes.to_vec()))
    }

    /// [`Disk::load`] for a key to cache later, off the runtime's threads: a read can wait
    /// several milliseconds for fjall (its flushes and compactions hold a tree's version lock
    /// while they fsync), and on a runtime thread it held up every request the thread had.
    /// [`Disk::refresh`] then tells whether what it read is still the key's latest.
    pub(crate) fn fetch(&self, space: Space, key: u64) -> Result<Fetched, StoreError> {
        let drops = self.lock().drops;
        let value = self.load(space, key)?;
        Ok(Fetched { value, drops })
    }

    /// The latest encoding of a key [`Disk::fetch`]ed earlier: a change staged since then,
    /// or else what the fetch read, unless the applier has dropped batches meanwhile (one may
    /// have held a change to the key, now in the database only): then `None`, read it again.
    /// Call it with the key's shard locked, as for staging.
    pub(crate) fn refresh(
        &self,
        space: Space,
        key: u64,
        fetched: Fetched,
    ) -> Option<Option<Vec<u8>>> {
        let staged = self.lock();
        match staged.latest(space, key) {
            Some(newer) => Some(newer),
            None => (staged.drops == fetched.drops).then_some(fetched.value),
        }
    }

    /// Every entry of a keyspace, staged changes included, each read once; for sweeps and
    /// erasure, never the request path.
    pub(crate) fn entries(&self, space: Space) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let overlay: Changes = {
            let staged = self.lock();
            let mut overlay = Changes::new();
            for (_, batch) in &staged.unapplied {
                overlay.extend(batch.iter().map(|(k, v)| (*k, v.clone())));
            }
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
    /// with [`SyncMode::Always`]). Callers whose changes are not logged yet take the log in
    /// turn; the holder logs everything staged, so a queue of requests shares one write, and
    /// each one whose batch was refused tries again once.
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
            let mut log = disk.log.lock().await;
            if !disk.is_written(needed) {
                disk.write_batch(&mut log)?;
            }
            // Holding the log, so that everyone queues while the database catches up.
            disk.caught_up().await
        })
    }

    fn is_written(&self, batch: u64) -> bool {
        self.written_through.load(Ordering::Acquire) >= batch
    }

    /// Waits while the database lags too far behind the log; fails if it refuses writes
    /// meanwhile, rather than holding ever more batches in memory.
    async fn caught_up(&self) -> Result<(), StoreError> {
        loop {
            // Created before the check, so an applier finishing in between still wakes it.
            let applied = self.applied.notified();
            if self.lock().unapplied_bytes <= MAX_UNAPPLIED_BYTES {
                return Ok(());
            }
            if self.apply_refused.load(Ordering::Acquire) {
                return Err(StoreError::Backend(
                    "the state database refuses writes and its backlog is full".into(),
                ));
            }
            applied.await;
        }
    }

    /// Waits until the applier has written every logged batch into the database.
    #[cfg(test)]
    pub(crate) fn wait_until_applied(&self) {
        while !self.lock().unapplied.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// True unless the disk refused the latest batch.
    pub(crate) fn healthy(&self) -> bool {
        !self.log_refused.load(Ordering::Acquire) && !self.apply_refused.load(Ordering::Acquire)
    }

    /// Logs everything staged as one batch; call it holding the log. A refused batch stays
    /// staged (under anything newer) for the next caller to try again.
    fn write_batch(&self, log: &mut CommitLog) -> Result<(), StoreError> {
        let (number, batch) = {
            let mut staged = self.lock();
            let batch = Arc::new(std::mem::take(&mut staged.open));
            let number = staged.open_number;
            staged.open_number += 1;
            staged.push_unapplied(number, Arc::clone(&batch));
            (number, batch)
        };
        let result = self.append(log, &batch);
        let mut staged = self.lock();
        match result {
            Ok(full) => {
                if let Some(full) = full {
                    staged.full_segments.push((full, number));
                    staged.segment = log.file();
                }
                // Stored under the lock the applier waits with, so it cannot miss it.
                self.written_through.store(number, Ordering::Release);
                drop(staged);
                self.logged.notify_one();
                self.log_refused.store(false, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "cannot write the state");
                // The newest unapplied batch is this one: only the log's holder adds any.
                staged.pop_unapplied();
                let newer = std::mem::take(&mut staged.open);
                staged.open = Arc::unwrap_or_clone(batch);
                staged.open.extend(newer);
                drop(staged);
                self.log_refused.store(true, Ordering::Release);
                Err(StoreError::Backend(format!(
                    "cannot write the state: {error}"
                )))
            }
        }
    }

    /// Appends a batch to the log (syncing it when [`SyncMode::Always`] says so); returns the
    /// segment it filled, if any.
    fn append(&self, log: &mut CommitLog, batch: &Changes) -> std::io::Result<Option<PathBuf>> {
        #[cfg(test)]
        if self.refuse_writes.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the disk is full"));
        }
        if batch.is_empty() {
            return Ok(None);
        }
        log.append(batch)?;
        if self.sync == SyncMode::Always {
            log.file().sync_data()?;
        }
        // A segment that cannot be begun leaves the log growing in the old one.
        let full = log.rotate_if_full().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot begin a new commit log segment");
            None
        });
        if full.is_some() && self.sync == SyncMode::Always {
            sync_dir(&self.log_dir)?;
        }
        Ok(full)
    }

    /// The applier: writes logged batches into the database, each round merging all that
    /// queued up, until the store closes and everything logged is applied.
    fn apply_logged(&self) {
        let mut applied_through = 0;
        loop {
            let (through, batches) = {
                let mut staged = self.lock();
                loop {
                    let logged = self.written_through.load(Ordering::Acquire);
                    if logged > applied_through {
                        let batches: Vec<Arc<Changes>> = staged
                            .unapplied
                            .iter()
                            .take_while(|(number, _)| *number <= logged)
                            .map(|(_, batch)| Arc::clone(batch))
                            .collect();
                        break (logged, batches);
                    }
                    if staged.closing {
                        return;
                    }
                    staged = self
                        .logged
                        .wait(staged)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            while let Err(error) = self.apply(&batches) {
                if !self.apply_refused.swap(true, Ordering::AcqRel) {
                    tracing::error!(%error, "cannot write the state database; the commit log keeps every change");
                }
                if self.lock().closing {
                    return;
                }
                std::thread::sleep(APPLY_RETRY);
            }
            self.apply_refused.store(false, Ordering::Release);
            let full = {
                let mut staged = self.lock();
                staged.drop_applied(through);
                let (full, later) = std::mem::take(&mut staged.full_segments)
                    .into_iter()
                    .partition(|(_, last)| *last <= through);
                staged.full_segments = later;
                full
            };
            applied_through = through;
            self.applied.notify_waiters();
            if !full.is_empty() {
                self.retire(full);
            }
            std::thread::sleep(APPLY_PAUSE);
        }
    }

    /// Writes logged batches (oldest first) into the database.
    fn apply(&self, batches: &[Arc<Changes>]) -> fjall::Result<()> {
        #[cfg(test)]
        if self.refuse_applies.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the disk is full").into());
        }
        write_newest(&self.db, &self.spaces, batches.iter().rev().map(|b| &**b))
    }

    /// Deletes full log segments once what they hold is on the disk in the database.
    fn retire(&self, full: Vec<(PathBuf, u64)>) {
        if let Err(error) = self.db.persist(PersistMode::SyncAll) {
            tracing::error!(%error, "cannot sync the state database; keeping the commit log");
            self.lock().full_segments.extend(full);
            return;
        }
        for (segment, _) in full {
            if let Err(error) = std::fs::remove_file(&segment) {
                tracing::warn!(%error, path = %segment.display(), "cannot delete a commit log segment");
            }
        }
    }

    /// Syncs the log to the disk (its directory too, for a segment begun since).
    fn sync_log(&self) -> std::io::Result<()> {
        let segment = Arc::clone(&self.lock().segment);
        segment.sync_data()?;
        sync_dir(&self.log_dir)
    }

    /// Starts the applier, and syncing the log once a second when [`SyncMode::EverySec`]
    /// says so; the handle logs what is staged, applies it and syncs when dropped.
    pub(crate) fn start(self: &Arc<Self>) -> std::io::Result<DiskHandle> {
        let disk = Arc::clone(self);
        let applier = std::thread::Builder::new()
            .name("riskgate-apply".into())
            .spawn(move || {
                background::lower_current_thread();
                disk.apply_logged();
            })?;
        let syncer = match self.sync {
            SyncMode::EverySec => Some(Syncer::start(Arc::clone(self))?),
            SyncMode::Always | SyncMode::No => None,
        };
        Ok(DiskHandle {
            disk: Arc::clone(self),
            applier: Some(applier),
            _syncer: syncer,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Staged> {
        // Staging never panics while holding the lock; a poisoned lock's data is whole.
        self.staged.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes changes into the database in one batch, each key's first (newest) value only,
/// in key order: each write searches fjall's in-memory skip list from its head, and in key
/// order the path to the previous key, still in the CPU's cache, is most of the way to the
/// next (the searches were half the applier's time in random order).
fn write_newest<'a>(
    db: &Database,
    spaces: &Keyspaces,
    newest_first: impl IntoIterator<Item = &'a Changes>,
) -> fjall::Result<()> {
    let mut newest = HashMap::new();
    for changes in newest_first {
        for (&(space, key), value) in changes {
            newest.entry((space as u8, key)).or_insert((space, value));
        }
    }
    let mut newest: Vec<_> = newest.into_iter().collect();
    newest.sort_unstable_by_key(|(order, _)| *order);
    let mut writes = db.batch();
    for ((_, key), (space, value)) in newest {
        let keyspace = spaces.get(space);
        match value {
            Some(bytes) => writes.insert(keyspace, key.to_be_bytes(), bytes.as_slice()),
            None => writes.remove(keyspace, key.to_be_bytes()),
        }
    }
    writes.commit()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Keeps the disk in shape while the store is open: dropping it logs what is staged, lets
/// the applier write everything into the database, syncs it and deletes the log.
pub(crate) struct DiskHandle {
    disk: Arc<Disk>,
    applier: Option<JoinHandle<()>>,
    _syncer: Option<Syncer>,
}

impl Drop for DiskHandle {
    fn drop(&mut self) {
        let disk = &self.disk;
        // A request's commit may still hold the log; wait for it (the store is going away,
        // so no new one comes).
        let mut log = loop {
            match disk.log.try_lock() {
                Ok(log) => break log,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if !disk.lock().open.is_empty() {
            let _ = disk.write_batch(&mut log);
        }
        disk.lock().closing = true;
        disk.logged.notify_one();
        if let Some(applier) = self.applier.take() {
            let _ = applier.join();
        }
        let applied = disk.lock().unapplied.is_empty();
        if let Err(error) = disk.db.persist(PersistMode::SyncAll) {
            tracing::error!(%error, "cannot sync the state to disk");
        } else if applied {
            // Everything logged is on the disk in the database: the next start replays
            // nothing.
            let full = std::mem::take(&mut disk.lock().full_segments);
            for segment in full.into_iter().map(|(path, _)| path).chain([log.path()]) {
                let _ = std::fs::remove_file(segment);
            }
        }
    }
}

/// Syncs the commit log to the disk once a second in the background (`everysec`), so a
/// power cut loses about a second; a killed process loses nothing, as every acknowledged
/// change is with the operating system already.
struct Syncer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start(disk: Arc<Disk>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("riskgate-fsync".into())
            .spawn(move || {
                background::lower_current_thread();
                // Woken by the interval, or by `stop` going away.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SYNC_EVERY) {
                    if let Err(error) = disk.sync_log() {
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
