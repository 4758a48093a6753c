//! The embedded durable backend: the bounded maps of [`MemoryStore`] in front of a fjall
//! database in the data directory, which holds every entry, and a commit log beside it
//! (`commit-log/`) that answers wait for instead of the database (see the `disk` module).
//!
//! fjall was chosen over redb by measuring both on riskgate's write pattern (README, "Choosing
//! the embedded store"): it keeps what was handed to the operating system without an fsync,
//! so a process killed right after an answer loses nothing while the disk is synced at the
//! pace [`SyncMode`] sets. redb only keeps what an fsync'd commit wrote.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::background;
use super::disk::{Disk, Keyspaces};
use super::memory::{Capacity, MemoryStore};

/// The on-disk format this build reads and writes. Raise it when entries change in a way an
/// older build would misread; a newer database is refused, never misread.
pub(crate) const FORMAT_VERSION: u64 = 3;
/// Where the format version is kept.
const META: &str = "meta";
const FORMAT_KEY: &str = "format_version";
/// The commit log's directory, inside the data directory.
const LOG_DIR: &str = "commit-log";
/// Memtable size per keyspace. Attempts awaiting their outcome are new keys on most requests,
/// so memtables fill steadily; small ones flush quickly, so fjall seldom halts the applier
/// for a flush to catch up.
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// Journals kept before fjall flushes them into tables; bounds the journal's disk use.
const MAX_JOURNALING_BYTES: u64 = 512 * 1024 * 1024;

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
    /// The directory holds a format from an earlier build that this one cannot read.
    #[error(
        "the data directory `{dir}` holds state format {found}, written by an earlier \
         development build that this one ({FORMAT_VERSION}) cannot read; move it aside to start \
         with empty state"
    )]
    OlderFormat {
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

/// When the state reaches the disk itself, like Redis's `appendfsync` (it reaches the
/// operating system before each answer, whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every request waits for its changes to be on the disk; concurrent requests share one
    /// sync (a group commit). A power cut loses nothing acknowledged.
    Always,
    /// The disk is synced once a second in the background; a power cut loses about a second.
    #[default]
    EverySec,
    /// The operating system decides when (typically within 30 s on Linux).
    No,
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "everysec" => Ok(Self::EverySec),
            "no" => Ok(Self::No),
            other => Err(format!("`{other}` is not one of always, everysec, no")),
        }
    }
}

/// The file in the data directory holding the global frequencies of login features.
const GLOBAL_FILE: &str = "global-stats.msgpack";

/// A store over the database in `dir` (created when absent).
pub(crate) fn open(
    dir: &Path,
    capacity: Capacity,
    sync: SyncMode,
) -> Result<MemoryStore, EmbeddedError> {
    let failed = |error: fjall::Error| match error {
        fjall::Error::Locked => EmbeddedError::InUse(dir.to_owned()),
        other => EmbeddedError::Open {
            dir: dir.to_owned(),
            message: other.to_string(),
        },
    };
    // One background worker: flushes and compactions then take at most one core from the
    // answers (measured with benches/load.sh on 2 cores); opened at background priority, so
    // the worker it starts has it too.
    let db = background::run(|| {
        Database::builder(dir)
            .max_journaling_size(MAX_JOURNALING_BYTES)
            .worker_threads(1)
            .open()
    })
    .map_err(failed)?;
    check_format(&db, dir)?;
    // fjall's journal need not reach the operating system per write: the commit log holds
    // every change until the database is synced (when a log segment is retired).
    let options = || {
        KeyspaceCreateOptions::default()
            .manual_journal_persist(true)
            .max_memtable_size(MEMTABLE_BYTES)
    };
    let keyspaces = Keyspaces::open(|name| db.keyspace(name, options)).map_err(failed)?;
    let disk = Disk::recover(db, keyspaces, &dir.join(LOG_DIR), sync).map_err(|e| {
        EmbeddedError::Open {
            dir: dir.to_owned(),
            message: e.to_string(),
        }
    })?;
    let disk = Arc::new(disk);
    let handle = disk.start().map_err(|e| EmbeddedError::Open {
        dir: dir.to_owned(),
        message: format!("cannot start the state sync: {e}"),
    })?;
    Ok(MemoryStore::on_disk(
        capacity,
        disk,
        handle,
        dir.join(GLOBAL_FILE),
    ))
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
    let dir = dir.to_owned();
    match found {
        FORMAT_VERSION => Ok(()),
        found if found > FORMAT_VERSION => Err(EmbeddedError::NewerFormat { dir, found }),
        // Format 2 had no commit log: its entries read the same. Raising the number keeps an
        // older build, which would ignore the log, away from the directory.
        2 => meta
            .insert(FORMAT_KEY, FORMAT_VERSION.to_be_bytes())
            .map_err(fjall_error),
        // Format 1 held JSON entries; no release wrote it, so there is nothing to migrate.
        found => Err(EmbeddedError::OlderFormat { dir, found }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::{
        AttemptKeys, Feature, FeatureValue, LoginFacts, Pending, PendingStage, Store, Swept, finish,
    };

    fn capacity() -> Capacity {
        Capacity {
            users: 100,
            profiles: 100,
            ips: 100,
            devices: 100,
            pending: 100,
        }
    }

    /// An attempt of `user` parked until its step-up outcome.
    fn parked(user: &str, facts: LoginFacts) -> Pending {
        Pending {
            user_id: user.into(),
            ip: "192.0.2.1".parse().unwrap(),
            device_id: None,
            facts,
            stage: PendingStage::Mfa,
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
            let store = open(dir.path(), capacity(), SyncMode::Always).unwrap();
            let mut facts = LoginFacts::default();
            facts.features[Feature::Device as usize] =
                Some(FeatureValue::new(Feature::Device, "laptop"));
            store.learn("alice", facts).unwrap();
            store.lock("bob", 5_000).unwrap();
            store.observe(&failed("bob"), 1_000).unwrap();
            store.observe(&failed("carol"), 1_000).unwrap();
            store.forget("carol").unwrap();
            assert!(matches!(
                open(dir.path(), capacity(), SyncMode::Always),
                Err(EmbeddedError::InUse(_))
            ));
        }
        let store = open(dir.path(), capacity(), SyncMode::Always).unwrap();
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
    fn a_peek_reads_the_disk_and_leaves_the_cache_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), capacity(), SyncMode::Always).unwrap();
            store.learn("bob", LoginFacts::default()).unwrap();
            store.lock("bob", 5_000).unwrap();
            store.observe(&failed("bob"), 1_000).unwrap();
        }
        let store = open(dir.path(), capacity(), SyncMode::Always).unwrap();
        let snapshot = store.peek(&failed("bob")).unwrap();
        assert_eq!(store.sizes(), [0; 6], "nothing cached");
        assert_eq!(snapshot.locked_until, Some(5_000));
        assert!(snapshot.profile.is_some());
        let observation = snapshot.counted(&failed("bob"), 2_000);
        assert_eq!(observation.counts.user_failures, [2, 2, 2]);
        assert_eq!(
            store.activity("bob").unwrap().failures.count(2_000, 60_000),
            1,
            "only the real failure is kept"
        );
    }

    #[test]
    fn entries_evicted_before_their_batch_is_written_are_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = Capacity {
            users: 2,
            ..capacity()
        };
        let store = open(dir.path(), tiny, SyncMode::No).unwrap();
        let users: Vec<String> = (0..500).map(|i| format!("user{i}")).collect();
        for round in 0..3 {
            for user in &users {
                store.observe(&failed(user), 1_000 + round).unwrap();
            }
        }
        for user in &users {
            let failures = store.activity(user).unwrap().failures;
            assert_eq!(failures.count(1_002, 60_000), 3, "{user}");
        }
        finish(store.committed()).unwrap();
        drop(store);
        let store = open(dir.path(), tiny, SyncMode::No).unwrap();
        assert_eq!(
            store
                .activity("user7")
                .unwrap()
                .failures
                .count(1_002, 60_000),
            3
        );
    }

    #[test]
    fn a_sweep_removes_what_expired_from_memory_and_disk_and_keeps_the_rest() {
        use crate::state::NetworkKeys;
        use crate::{DAY, MINUTE};
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        let login = |at| {
            let mut facts = LoginFacts::default();
            facts.place.at = at;
            facts
        };
        let from_home = AttemptKeys {
            user_id: "old",
            network: Some(NetworkKeys {
                ip: "192.0.2.1".parse().unwrap(),
                device_id: Some("laptop"),
            }),
            failed: true,
        };
        store.observe(&from_home, 0).unwrap();
        store.learn("old", login(0)).unwrap();
        store.lock("old", 10 * MINUTE).unwrap();
        store.put_pending("r1", parked("old", login(0))).unwrap();
        store.learn("recent", login(30 * DAY)).unwrap();
        store.lock("recent", 100 * DAY).unwrap();

        let swept = store.sweep(40 * DAY, 20 * DAY).unwrap();
        assert_eq!(swept.profiles, 1, "{swept:?}");
        // The failures, the lock, the pending attempt, the IP's and the device's counters.
        assert_eq!(swept.expired, 5, "{swept:?}");
        assert_eq!(store.sweep(40 * DAY, 20 * DAY).unwrap(), Swept::default());
        finish(store.committed()).unwrap();
        drop(store);

        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        assert!(store.profile("old").unwrap().is_none());
        assert_eq!(store.activity("old").unwrap(), Default::default());
        assert!(store.take_pending("old", "r1").unwrap().is_none());
        assert!(store.profile("recent").unwrap().is_some());
        assert_eq!(
            store.activity("recent").unwrap().locked_until,
            Some(100 * DAY)
        );
    }

    #[test]
    fn a_refused_write_is_retried_by_the_next_commit_and_nothing_is_lost() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        let disk = store.disk().unwrap();
        disk.refuse_writes.store(true, Ordering::Release);
        store.lock("bob", 5_000).unwrap();
        assert!(finish(store.committed()).is_err());
        assert!(!store.healthy(), "readyz reports it");
        disk.refuse_writes.store(false, Ordering::Release);
        store.lock("carol", 6_000).unwrap();
        finish(store.committed()).unwrap();
        assert!(store.healthy());
        drop(store);
        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        assert_eq!(store.activity("bob").unwrap().locked_until, Some(5_000));
        assert_eq!(store.activity("carol").unwrap().locked_until, Some(6_000));
    }

    #[test]
    fn changes_the_database_refuses_are_kept_by_the_commit_log() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        store
            .disk()
            .unwrap()
            .refuse_applies
            .store(true, Ordering::Release);
        store.lock("bob", 5_000).unwrap();
        finish(store.committed()).unwrap();
        while store.healthy() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(store.activity("bob").unwrap().locked_until, Some(5_000));
        // Closing cannot apply it either: the log is kept for the next start.
        drop(store);
        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        assert_eq!(store.activity("bob").unwrap().locked_until, Some(5_000));
        assert!(store.healthy());
    }

    #[test]
    fn evicted_keys_are_read_from_logged_batches_the_database_has_not_taken() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let tiny = Capacity {
            pending: 2,
            ..capacity()
        };
        let store = open(dir.path(), tiny, SyncMode::No).unwrap();
        let disk = store.disk().unwrap();
        disk.refuse_applies.store(true, Ordering::Release);
        // Each attempt in a batch of its own, behind a database that takes none of them.
        let ids: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        for id in &ids {
            store
                .put_pending(id, parked("alice", LoginFacts::default()))
                .unwrap();
            finish(store.committed()).unwrap();
        }
        for id in &ids {
            assert!(store.take_pending("alice", id).unwrap().is_some(), "{id}");
        }
        finish(store.committed()).unwrap();
        for id in &ids {
            assert!(store.take_pending("alice", id).unwrap().is_none(), "{id}");
        }
        disk.refuse_applies.store(false, Ordering::Release);
        while !store.healthy() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for id in &ids {
            assert!(store.take_pending("alice", id).unwrap().is_none(), "{id}");
        }
    }

    #[test]
    fn a_parked_attempt_is_taken_once_however_many_race_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = Capacity {
            pending: 2,
            ..capacity()
        };
        let store = open(dir.path(), tiny, SyncMode::No).unwrap();
        let ids: Vec<String> = (0..3_000).map(|i| format!("r{i}")).collect();
        for id in &ids {
            let attempt = parked("alice", LoginFacts::default());
            store.put_pending(id, attempt).unwrap();
        }
        let taken: usize = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| {
                        ids.iter()
                            .filter(|id| store.take_pending("alice", id).unwrap().is_some())
                            .count()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).sum()
        });
        assert_eq!(taken, ids.len(), "each attempt resolves exactly once");
    }

    #[test]
    fn a_lock_set_while_a_sweep_runs_is_never_swept() {
        let dir = tempfile::tempdir().unwrap();
        let small = Capacity {
            users: 100,
            ..capacity()
        };
        let store = open(dir.path(), small, SyncMode::No).unwrap();
        let users: Vec<String> = (0..5_000).map(|i| format!("user{i}")).collect();
        for user in &users {
            store.lock(user, 1_000).unwrap();
        }
        std::thread::scope(|scope| {
            scope.spawn(|| store.sweep(2_000, crate::DAY).unwrap());
            scope.spawn(|| {
                for user in &users {
                    store.lock(user, 1_000_000).unwrap();
                }
            });
        });
        for user in &users {
            let until = store.activity(user).unwrap().locked_until;
            assert_eq!(until, Some(1_000_000), "{user}");
        }
    }

    #[test]
    fn changes_left_in_the_commit_log_by_a_killed_process_are_restored_at_start() {
        use crate::state::commit_log::CommitLog;
        use crate::state::disk::{Changes, Space};
        use crate::state::{encode, key};
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
            store.lock("bob", 5_000).unwrap();
            store.lock("carol", 5_000).unwrap();
        }
        // What a process killed before its applier ran leaves: batches in the log only,
        // the newest of a key's changes last.
        let mut log = CommitLog::create(&dir.path().join(LOG_DIR)).unwrap();
        let batch = |changes: &[(&str, Option<u64>)]| -> Changes {
            changes
                .iter()
                .map(|(user, until)| {
                    let value = until.map(|until| encode(&until).unwrap());
                    ((Space::Locks, key(user)), value)
                })
                .collect()
        };
        log.append(&batch(&[("alice", Some(7_000)), ("bob", None)]))
            .unwrap();
        log.append(&batch(&[("alice", Some(9_000))])).unwrap();
        drop(log);

        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        let until = |user| store.activity(user).unwrap().locked_until;
        assert_eq!(until("alice"), Some(9_000));
        assert_eq!(until("bob"), None, "unlocked");
        assert_eq!(until("carol"), Some(5_000), "untouched");
        drop(store);
        let left = std::fs::read_dir(dir.path().join(LOG_DIR)).unwrap().count();
        assert_eq!(left, 0, "a closed store leaves no log to replay");
    }

    #[test]
    fn a_format_2_directory_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
            store.lock("bob", 5_000).unwrap();
        }
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let meta = db.keyspace(META, KeyspaceCreateOptions::default).unwrap();
            meta.insert(FORMAT_KEY, 2u64.to_be_bytes()).unwrap();
        }
        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        assert_eq!(store.activity("bob").unwrap().locked_until, Some(5_000));
        drop(store);
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace(META, KeyspaceCreateOptions::default).unwrap();
        let stored = meta.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(*stored, FORMAT_VERSION.to_be_bytes());
    }

    #[test]
    fn a_newer_or_an_older_format_is_refused() {
        for (version, says) in [(FORMAT_VERSION + 1, "newer riskgate"), (1, "earlier")] {
            let dir = tempfile::tempdir().unwrap();
            drop(open(dir.path(), capacity(), SyncMode::No).unwrap());
            {
                let db = Database::builder(dir.path()).open().unwrap();
                let meta = db.keyspace(META, KeyspaceCreateOptions::default).unwrap();
                meta.insert(FORMAT_KEY, version.to_be_bytes()).unwrap();
            }
            let error = open(dir.path(), capacity(), SyncMode::No).err().unwrap();
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn pinned_entries_leave_memory_when_swept_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), capacity(), SyncMode::No).unwrap();
        store.learn("known", LoginFacts::default()).unwrap();
        let failing = AttemptKeys {
            user_id: "known",
            network: None,
            failed: true,
        };
        store.observe(&failing, 1_000).unwrap();
        store.lock("known", 5_000).unwrap();
        let [failures, locks, ..] = store.sizes();
        assert_eq!((failures, locks), (1, 1), "pinned, as a known user's");
        assert!(store.unlock("known").unwrap());
        store
            .sweep(1_000 + 2 * crate::DAY, 400 * crate::DAY)
            .unwrap();
        let [failures, locks, ..] = store.sizes();
        assert_eq!((failures, locks), (0, 0), "nothing pinned is left behind");
        assert_eq!(
            store.activity("known").unwrap(),
            crate::state::UserActivity::default()
        );
    }
}
