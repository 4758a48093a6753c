//! State behind one trait: per-user, per-IP and per-device activity, learned profiles,
//! attempts awaiting their outcome.
//!
//! Backends implement [`Store`]; the engine owns all decision logic, so a backend only keeps
//! data. Every call is one atomic step per key, which a remote backend can do in one round
//! trip.

mod background;
pub(crate) mod bounded;
mod commit_log;
mod disk;
pub(crate) mod embedded;
pub(crate) mod global;
pub(crate) mod memory;
pub(crate) mod network;
pub(crate) mod profile;
pub(crate) mod redis;
mod snapshot;
mod table;
pub(crate) mod window;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

pub(crate) use memory::MemoryStore;
pub(crate) use network::{NetworkActivity, NetworkCounts, NetworkKeys};
pub(crate) use profile::{
    Feature, FeatureValue, KnownValue, Label, LoginFacts, LoginPlace, UserProfile,
};
pub(crate) use snapshot::Snapshot;
pub(crate) use window::{DistinctWindow, EventWindow};

use crate::{DAY, HOUR, MINUTE, Millis};

/// How long and how many failures are kept per user (the longest user window is 24 h).
pub(crate) const USER_FAILURES: (Millis, usize) = (DAY, 64);
/// Live counters of one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserActivity {
    /// Failed logins.
    pub failures: EventWindow,
    /// Locked until this time, if locked.
    pub locked_until: Option<Millis>,
}

/// The keys of one attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptKeys<'a> {
    /// The account.
    pub user_id: &'a str,
    /// Where it came from; `None` when the caller keeps the network counters itself
    /// (replay counts them centrally, ahead of its per-user shards) or, for a failed step-up,
    /// when the failure is the user's alone.
    pub network: Option<NetworkKeys<'a>>,
    /// The password (or step-up) failed.
    pub failed: bool,
}

/// Event counts over the windows the signals use, each in `(now - window, now]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// The user's failures in 15 minutes, 1 hour, 24 hours.
    pub user_failures: [i64; 3],
    /// The IP's and the device's counters.
    pub network: NetworkCounts,
}

/// Window lengths of [`Counts::user_failures`].
pub(crate) const USER_FAILURE_WINDOWS: [Millis; 3] = [15 * MINUTE, HOUR, DAY];

/// A user's failures over [`USER_FAILURE_WINDOWS`] at `now`.
pub(crate) fn user_failure_counts(failures: &EventWindow, now: Millis) -> [i64; 3] {
    USER_FAILURE_WINDOWS.map(|w| failures.count(now, w))
}

/// Counts a failure of the user's at `now` into `failures`; returns their failures over
/// [`USER_FAILURE_WINDOWS`] including it.
pub(crate) fn count_user_failure(failures: &mut EventWindow, now: Millis) -> [i64; 3] {
    let (horizon, cap) = USER_FAILURES;
    failures.push(now, horizon, cap);
    user_failure_counts(failures, now)
}

/// The key a user id or device id is stored under.
pub(crate) fn key(id: &str) -> u64 {
    xxh3_64(id.as_bytes())
}

/// The key an attempt awaiting its outcome is parked under: its user's and its request id's,
/// so an event naming another user cannot take it.
pub(crate) fn pending_key(user_id: &str, request_id: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&key(user_id).to_le_bytes());
    hasher.update(request_id.as_bytes());
    hasher.digest()
}

/// Encodes a stored value as MessagePack, structs as arrays without field names: a quarter
/// of JSON's cost to write, and what the durable backends write on every attempt is half the
/// size it is with names. A field may be added at the end of a struct (with a default, for
/// entries written before it); reading takes structs written with names by earlier builds
/// too. Anything else is a format change (the format version covers it).
pub(crate) fn encode<V: Serialize>(value: &V) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(value).map_err(|e| StoreError::Backend(format!("cannot encode state: {e}")))
}

/// Decodes what [`encode`] wrote.
pub(crate) fn decode<V: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<V, StoreError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("corrupt state entry: {e}")))
}

/// The state an attempt is judged against, read right after counting it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observation {
    /// Live counters.
    pub counts: Counts,
    /// The user's lock, if any (possibly expired).
    pub locked_until: Option<Millis>,
    /// The user's learned profile, if they ever logged in successfully.
    pub profile: Option<Arc<UserProfile>>,
}

/// Where an attempt waiting for its outcome stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PendingStage {
    /// A pre-auth check: the password is not verified yet.
    Password {
        /// The decision asked for MFA, so a right password alone does not complete it.
        mfa_required: bool,
    },
    /// The password was right and the user was asked for MFA.
    Mfa,
}

/// An attempt whose outcome is not known yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The account.
    pub user_id: String,
    /// The client IP (bucketed).
    pub ip: IpAddr,
    /// The explicit device id.
    pub device_id: Option<String>,
    /// What a success would teach.
    pub facts: LoginFacts,
    /// What it waits for.
    pub stage: PendingStage,
}

impl Pending {
    /// The keys for counting this attempt's failure: a wrong password counts against its IP
    /// too, a failed step-up only against the user.
    pub(crate) fn failure_keys(&self, wrong_password: bool) -> AttemptKeys<'_> {
        AttemptKeys {
            user_id: &self.user_id,
            network: wrong_password.then_some(NetworkKeys {
                ip: self.ip,
                device_id: self.device_id.as_deref(),
            }),
            failed: true,
        }
    }
}

/// Errors from a state backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed or could not be reached.
    #[error("state backend: {0}")]
    Backend(String),
}

/// A state backend. Calls return futures: in-process backends answer at once, remote ones
/// over the network; each call is one atomic step per key (one round trip per key's slot).
pub(crate) trait Store: Send + Sync {
    /// Counts an attempt (and its failure, if `failed`) and returns the state to judge it by.
    fn observe<'a>(
        &'a self,
        attempt: &'a AttemptKeys<'a>,
        now: Millis,
    ) -> StoreFuture<'a, Observation>;
    /// Reads the state [`Store::observe`] would count this attempt into, changing nothing:
    /// no counter, no expiry, no cache's recency ([`Snapshot::counted`] then counts it on
    /// copies, for a what-if evaluation).
    fn peek<'a>(&'a self, attempt: &'a AttemptKeys<'a>) -> StoreFuture<'a, Snapshot>;
    /// Counts a failure reported after the attempt was observed (or never observed).
    fn count_failure<'a>(
        &'a self,
        attempt: &'a AttemptKeys<'a>,
        now: Millis,
    ) -> StoreFuture<'a, ()>;
    /// Teaches the user's profile a fully successful login.
    fn learn<'a>(&'a self, user_id: &'a str, login: LoginFacts) -> StoreFuture<'a, ()>;
    /// Marks a device the user already knows as trusted; returns whether it was known.
    fn trust_device<'a>(&'a self, user_id: &'a str, device: u64) -> StoreFuture<'a, bool>;
    /// Locks the user until `until` (never shortens an existing lock).
    fn lock<'a>(&'a self, user_id: &'a str, until: Millis) -> StoreFuture<'a, ()>;
    /// Lifts the user's lock; returns whether there was one.
    fn unlock<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, bool>;
    /// Parks an attempt until its outcome arrives, under its user and request id.
    fn put_pending<'a>(&'a self, request_id: &'a str, pending: Pending) -> StoreFuture<'a, ()>;
    /// Takes the user's parked attempt; `None` if unknown, another user's, or already
    /// resolved.
    fn take_pending<'a>(
        &'a self,
        user_id: &'a str,
        request_id: &'a str,
    ) -> StoreFuture<'a, Option<Pending>>;
    /// The user's profile.
    fn profile<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Option<Arc<UserProfile>>>;
    /// The user's counters.
    fn activity<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, UserActivity>;
    /// Erases everything kept about the user (profile, failures, lock, attempts awaiting
    /// their outcome, their place in IP and device counters); returns whether anything was.
    fn forget<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, bool>;
    /// Removes what no signal can use any more (expired windows, lifted locks, attempts
    /// whose outcome never came) and profiles without a successful login for `retention`.
    fn sweep(&self, now: Millis, retention: Millis) -> StoreFuture<'_, Swept>;
    /// Resolves when every change made so far survives the process being killed; awaited
    /// before an answer that implies changes leaves.
    fn committed(&self) -> Committed;
    /// False while the backend cannot keep state (a disk refusing writes, a server down).
    fn healthy(&self) -> bool;
    /// How common each login feature value is across users (the score's `p(x)`).
    fn global(&self) -> &global::GlobalStats;
}

/// Runs a call over in-memory state to its end on this thread (replay, tests): every store
/// call is ready at once there, so this returns on the first poll (it yields, never spins
/// hot, if a call ever is not ready).
pub(crate) fn finish<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// What a [`Store`] call returns.
pub(crate) type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What [`Store::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Profiles deleted after the retention period without a successful login.
    pub profiles: usize,
    /// Expired counters, locks and attempts awaiting their outcome.
    pub expired: usize,
}

/// How long an attempt waits for its outcome before it is forgotten.
pub(crate) const PENDING_TTL: Millis = DAY;

/// A promise that changes are durable, from [`Store::committed`].
pub(crate) type Committed =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;
