//! The embedded durable backend: the bounded maps of [`MemoryStore`] in front of a fjall
//! database in the data directory, which holds every entry.
//!
//! fjall was chosen over redb by measuring both on riskgate's write pattern (README, "Choosing
//! the embedded store"): its journal hands each write to the operating system at once, so a
//! process killed right after an answer loses nothing, without an fsync per answer. redb only
//! keeps what an fsync'd commit wrote.

use std::path::{Path, PathBuf};

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::memory::{Capacity, Disk, Keyspaces, MemoryStore};

/// How often the state is synced to the disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The on-disk format this build reads and writes. Raise it when entries change in a way an
/// older build would misread; a newer database is refused, never misread.
pub(crate) const FORMAT_VERSION: u64 = 1;
/// Where the format version is kept.
const META: &str = "meta";
const FORMAT_KEY: &str = "format_version";
/// Journals kept before fjall flushes them into tables; bounds the journal's disk use.
const MAX_JOURNALING_BYTES: u64 = 64 * 1024 * 1024;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Another process has the directory open.
    #[error(
        "the data directory `{0}` is in use by another riskgate process; stop it, or give this \
         one its own RISKGATE_DATA_DIR"
    )]
    InUse(PathBuf),
    /// The directory holds a format this build does not know.
    #[error(
        "the data directory `{dir}` holds state format {found}, newer than this build's \
         {FORMAT_VERSION}; run a newer riskgate"
    )]
    NewerFormat {
        /// The directory.
        dir: PathBuf,
        /// The format found there.
        found: u64,
    },
    /// The database could not be opened or read (a damaged file, a permission...).
    #[error("cannot open the state in `{dir}`: {message}")]
    Open {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A store over the database in `dir` (created when absent).
pub(crate) fn open(dir: &Path, capacity: Capacity) -> Result<MemoryStore, EmbeddedError> {
    let failed = |error: fjall::Error| match error {
        fjall::Error::Locked => EmbeddedError::InUse(dir.to_owned()),
        other => EmbeddedError::Open {
            dir: dir.to_owned(),
            message: other.to_string(),
        },
    };
    let db = Database::builder(dir)
        .max_journaling_size(MAX_JOURNALING_BYTES)
        .open()
        .map_err(failed)?;
    check_format(&db, dir)?;
    let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
    let disk = Keyspaces {
        failures: keyspace("failures").map_err(failed)?,
        locks: keyspace("locks").map_err(failed)?,
        profiles: keyspace("profiles").map_err(failed)?,
        ips: keyspace("ips").map_err(failed)?,
        devices: keyspace("devices").map_err(failed)?,
        pending: keyspace("pending").map_err(failed)?,
    };
    let syncer = Syncer::start(db.clone());
    let disk_handles = Disk {
        _syncer: syncer,
        _db: db,
    };
    Ok(MemoryStore::on_disk(capacity, disk, disk_handles))
}

/// Syncs the database to the disk once a second in the background, so a power cut loses at
/// most about a second (like Redis's `appendfsync everysec`); a killed process loses
/// nothing, as every write already reached the operating system.
pub(crate) struct Syncer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(db: Database) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("riskgate-fsync".into())
            .spawn(move || {
                // Woken by the interval, or by `stop` going away (the store is dropped).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SYNC_EVERY) {
                    if let Err(error) = db.persist(PersistMode::SyncData) {
                        tracing::error!(%error, "cannot sync the state to disk");
                    }
                }
                if let Err(error) = db.persist(PersistMode::SyncAll) {
                    tracing::error!(%error, "cannot sync the state to disk");
                }
            })
            .ok();
        if thread.is_none() {
            tracing::error!("cannot start the state sync thread; syncing is left to the OS");
        }
        Self {
            stop: Some(stop),
            thread,
        }
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

/// Writes the format version into a new database; refuses a newer one.
fn check_format(db: &Database, dir: &Path) -> Result<(), EmbeddedError> {
    let fjall_error = |e: fjall::Error| EmbeddedError::Open {
        dir: dir.to_owned(),
        message: e.to_string(),
    };
    let meta: Keyspace = db
        .keyspace(META, KeyspaceCreateOptions::default)
        .map_err(fjall_error)?;
    let Some(stored) = meta.get(FORMAT_KEY).map_err(fjall_error)? else {
        meta.insert(FORMAT_KEY, FORMAT_VERSION.to_be_bytes())
            .map_err(fjall_error)?;
        return Ok(());
    };
    let found = <[u8; 8]>::try_from(&*stored)
        .map(u64::from_be_bytes)
        .map_err(|_| EmbeddedError::Open {
            dir: dir.to_owned(),
            message: "the format version is unreadable".into(),
        })?;
    if found > FORMAT_VERSION {
        return Err(EmbeddedError::NewerFormat {
            dir: dir.to_owned(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::{AttemptKeys, Feature, FeatureValue, LoginFacts, Store};

    fn capacity() -> Capacity {
        Capacity {
            users: 100,
            profiles: 100,
            ips: 100,
            devices: 100,
            pending: 100,
        }
    }

    fn failed(user: &str) -> AttemptKeys<'_> {
        AttemptKeys {
            user_id: user,
            network: None,
            failed: true,
        }
    }

    #[test]
    fn everything_comes_back_after_a_reopen_and_a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), capacity()).unwrap();
            let mut facts = LoginFacts::default();
            facts.features[Feature::Device as usize] =
                Some(FeatureValue::new(Feature::Device, "laptop"));
            store.learn("alice", facts).unwrap();
            store.lock("bob", 5_000).unwrap();
            store.observe(&failed("bob"), 1_000).unwrap();
            store.observe(&failed("carol"), 1_000).unwrap();
            store.forget("carol").unwrap();
            assert!(matches!(
                open(dir.path(), capacity()),
                Err(EmbeddedError::InUse(_))
            ));
        }
        let store = open(dir.path(), capacity()).unwrap();
        let profile = store.profile("alice").unwrap().unwrap();
        let laptop = FeatureValue::new(Feature::Device, "laptop");
        assert!(profile.known(Feature::Device, laptop.id).is_some());
        let bob = store.activity("bob").unwrap();
        assert_eq!(bob.locked_until, Some(5_000));
        assert_eq!(bob.failures.count(1_000, 60_000), 1);
        assert_eq!(
            store.activity("carol").unwrap(),
            Default::default(),
            "erased"
        );
        assert!(Arc::strong_count(&profile) >= 1);
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), capacity()).unwrap());
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let meta = db.keyspace(META, KeyspaceCreateOptions::default).unwrap();
            meta.insert(FORMAT_KEY, (FORMAT_VERSION + 1).to_be_bytes())
                .unwrap();
        }
        let error = open(dir.path(), capacity()).err().unwrap();
        assert!(
            matches!(error, EmbeddedError::NewerFormat { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("newer riskgate"), "{error}");
    }
}
