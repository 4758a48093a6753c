//! Replay: score historical login logs exactly as production would.
//!
//! A log is streamed in event-time order through fresh engine state whose `now` is each row's
//! timestamp, so every user's history is rebuilt as it happened. One router orders
//! events and keeps the state users share (IP and device counters); users are split over
//! shards, each an engine with its own per-user state, on their own threads; results
//! are collected back in routing order. Nothing a user's score depends on differs between
//! shards, so results never depend on the thread count.
//!
//! [`run`] is the entry point: a [`ReplaySpec`] in, a [`Summary`] out.

mod collector;
mod event;
mod pipeline;
mod readers;
mod reorder;
mod report;
mod router;
mod shard;
pub mod summary;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use collector::Collector;
pub use event::{AttackKind, Label};
pub(crate) use event::{EventKind, Login, ReplayEvent, ReplayItem, ScoredLogin};
pub use readers::{ColumnMap, Format, ReadError};
use router::{Router, Shared};
use shard::Shard;
pub use summary::Summary;

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::policy::{PolicyError, PolicySet, Runtime, Selection};
use crate::service::{self, ServiceError};
use crate::state::bounded::{Placement, SHARDED_FROM, SHARDS};
use crate::state::global::GlobalStats;
use crate::state::memory::Capacity;
use crate::state::{MemoryStore, NetworkActivity};

/// A replay to run: the log, the policies to score it with, where the results go.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    /// The log (`.gz` accepted).
    pub input: PathBuf,
    /// Its format; guessed from the file name when `None` (see [`Format::guess`]).
    pub format: Option<Format>,
    /// CSV column mapping; when `None`, columns are named like the fields, or the RBA
    /// dataset's when the header is.
    pub map: Option<ColumnMap>,
    /// The policy to score with: a `.rhai` file or a policy name; the configured default
    /// when `None`.
    pub policy: Option<String>,
    /// A second policy scored on the same stream (A/B): a `.rhai` file or a name.
    pub compare: Option<String>,
    /// Write one JSON line per row with its decisions here (`.gz` compresses).
    pub out: Option<PathBuf>,
    /// Write `summary.json` and `report.html` into this directory.
    pub report: Option<PathBuf>,
    /// How to run it.
    pub options: Options,
}

impl ReplaySpec {
    /// A replay of `input` with the default policy and options, writing nothing.
    pub fn new(input: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            format: None,
            map: None,
            policy: None,
            compare: None,
            out: None,
            report: None,
            options: Options::default(),
        }
    }
}

/// How a replay runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// 1: everything on the calling thread; more: reading, ordering and collecting on their
    /// own threads, and users split over up to this many scoring threads. Results are the
    /// same whatever the count.
    pub threads: usize,
    /// Rows held to restore event-time order in slightly unordered logs.
    pub reorder_window: usize,
    /// Step-up resolution when a row has no label.
    pub unlabelled_mfa: UnlabelledMfa,
    /// Changed decisions kept as A/B samples.
    pub samples: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            threads: 2,
            reorder_window: 100_000,
            unlabelled_mfa: UnlabelledMfa::Pass,
            samples: 50,
        }
    }
}

/// How a step-up is resolved for logs that do not record its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlabelledMfa {
    /// A successful login passes its step-up (the user had their second factor).
    Pass,
    /// Every step-up fails (nothing is learned from stepped-up logins).
    Fail,
}

impl UnlabelledMfa {
    /// The lowercase name, as the command line takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            UnlabelledMfa::Pass => "pass",
            UnlabelledMfa::Fail => "fail",
        }
    }
}

impl FromStr for UnlabelledMfa {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(UnlabelledMfa::Pass),
            "fail" => Ok(UnlabelledMfa::Fail),
            other => Err(format!("`{other}` is not one of pass, fail")),
        }
    }
}

impl std::fmt::Display for UnlabelledMfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors that stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be opened.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The input's format cannot be told from its name.
    #[error("cannot tell the format of `{0}` from its name; pass --format jsonl|csv|rba")]
    UnknownFormat(PathBuf),
    /// The engine could not be built (GeoIP files, policies).
    #[error(transparent)]
    Start(#[from] ServiceError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A policy did not load, or a shard's copy of the policies did not compile.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The output could not be written.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A replay thread ended before its work was done.
    #[error("a replay thread stopped unexpectedly")]
    Stopped,
}

/// Runs a replay with `config`'s enrichment, policies and state bounds, writing `out` and
/// `report` when the spec asks; `progress` hears the rows scored so far.
pub fn run(
    spec: &ReplaySpec,
    config: &Config,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, ReplayError> {
    let engine = engine_for(spec, config)?;
    let format = spec
        .format
        .or_else(|| Format::guess(&spec.input))
        .ok_or_else(|| ReplayError::UnknownFormat(spec.input.clone()))?;
    let events = readers::events(&spec.input, format, spec.map.clone())?;
    let layout = Layout {
        capacity: config.capacity,
        // Decision logs report outcomes as later events, which need the user's whole
        // state in one place: they are scored on one shard.
        split_users: format != Format::Jsonl,
    };
    let mut out = spec.out.as_deref().map(crate::files::create).transpose()?;
    let summary = replay(
        &engine,
        events,
        &spec.options,
        layout,
        out.as_mut().map(|w| w as &mut dyn Write),
        progress,
    )?;
    drop(out);
    if let Some(dir) = &spec.report {
        report::write(dir, &summary)?;
    }
    Ok(summary)
}

/// An engine over `config` scoring with the spec's policy and comparing with its other one.
fn engine_for(spec: &ReplaySpec, config: &Config) -> Result<Engine, ReplayError> {
    let runtime = Runtime::new(config.limits);
    let mut policies = service::load_policies(&runtime, config)?;
    let default = match &spec.policy {
        Some(policy) => named_policy(&runtime, &mut policies, policy)?,
        None => config.selection.default.clone(),
    };
    let shadow = match &spec.compare {
        Some(policy) => Some(named_policy(&runtime, &mut policies, policy)?),
        None => None,
    };
    let policies = policies.select(Selection {
        default,
        apps: config.selection.apps.clone(),
        shadow,
    })?;
    // Replay keeps its state in memory, whatever backend the service uses.
    let store = Arc::new(MemoryStore::new(config.capacity, PLACEMENT));
    Ok(service::build_engine_with(
        config, runtime, policies, store,
    )?)
}

/// A policy given by the caller: a file, added to the set, or a name already in it.
fn named_policy(
    runtime: &Runtime,
    set: &mut PolicySet,
    policy: &str,
) -> Result<String, PolicyError> {
    let path = Path::new(policy);
    if !(policy.ends_with(".rhai") || path.is_file()) {
        return Ok(policy.to_owned());
    }
    let source = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let name = path.file_stem().unwrap_or_default().to_string_lossy();
    set.insert(runtime.compile(&name, policy, &source)?);
    Ok(name.into_owned())
}

/// Where replay's state keeps entries: the same in every run, so replaying a log twice evicts
/// the same entries and gives the same answers (a replay is not exposed to chosen names).
pub(crate) const PLACEMENT: Placement = Placement::fixed();

/// What the config and the input decide about a replay's state.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Bounds of the state, as in the server.
    capacity: Capacity,
    /// Every row carries its own outcome (CSV logs), so IP and device counters can be
    /// counted centrally and users scored on parallel shards.
    split_users: bool,
}

impl Layout {
    /// Shards of users: a power of two, and one unless users can be split and every
    /// per-user map is large enough to be sharded the same way (so evictions, too, are the
    /// same whatever the thread count).
    fn shards(&self, threads: usize) -> usize {
        let splittable = self.split_users
            && self.capacity.users >= SHARDED_FROM
            && self.capacity.profiles >= SHARDED_FROM;
        if splittable && threads > 1 {
            1 << threads.min(SHARDS).ilog2()
        } else {
            1
        }
    }
}

/// Streams `events` through fresh state over `engine`'s enrichment and copies of its policies,
/// writing per-row decisions to `out` and calling `progress` with the rows scored so far.
fn replay(
    engine: &Engine,
    events: Box<dyn Iterator<Item = ReplayItem> + Send>,
    options: &Options,
    layout: Layout,
    out: Option<&mut dyn Write>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, ReplayError> {
    let started = std::time::Instant::now();
    let shards = layout.shards(options.threads);
    let shared = layout.split_users.then(|| Shared {
        network: NetworkActivity::new(layout.capacity.ips, layout.capacity.devices, PLACEMENT),
        global: GlobalStats::new(),
    });
    let router = Router::new(options.reorder_window, shared, shards);
    let new_shard = || -> Result<Shard, PolicyError> {
        let store = Arc::new(MemoryStore::new(layout.capacity, PLACEMENT));
        let learns_globally = !layout.split_users;
        Ok(Shard::new(
            engine.replica(store, learns_globally)?,
            options.unlabelled_mfa,
        ))
    };
    let mut collector = Collector::new(options.samples, out, progress);
    let out_of_order = if options.threads <= 1 {
        sequential(engine, events, router, new_shard()?, &mut collector)?
    } else {
        let shards = (0..shards).map(|_| new_shard()).collect::<Result<_, _>>()?;
        pipeline::run(engine, events, router, shards, &mut collector)?
    };
    let mut summary = collector.finish()?;
    summary.metrics.out_of_order = out_of_order;
    summary.finish(started.elapsed());
    Ok(summary)
}

/// Reads, routes, scores and collects on the calling thread; returns the out-of-order count.
fn sequential(
    engine: &Engine,
    events: Box<dyn Iterator<Item = ReplayItem> + Send>,
    mut router: Router,
    mut shard: Shard,
    collector: &mut Collector<'_, '_>,
) -> Result<u64, ReplayError> {
    for item in events {
        match enrich(engine, item) {
            Ok(event) => {
                if let Some((_, routed)) = router.push(event) {
                    collector.add(shard.process(routed)?)?;
                }
            }
            Err(e) => collector.summary.skip(&e),
        }
    }
    while let Some((_, routed)) = router.pop() {
        collector.add(shard.process(routed)?)?;
    }
    Ok(router.out_of_order)
}

/// GeoIP and user-agent parsing, done where the rows are read so the scoring threads do less,
/// and user ids in the form the engine keeps them under (before routing by user).
fn enrich(engine: &Engine, item: ReplayItem) -> ReplayItem {
    let mut event = item?;
    match &mut event.kind {
        EventKind::Login(login) => {
            engine.canonical_user_id(&mut login.attempt.user_id);
            let attempt = &login.attempt;
            login.enrichment = Some(engine.enrichment(
                attempt.ip,
                attempt.user_agent.as_deref(),
                login.geo.take(),
            ));
        }
        EventKind::Outcome(outcome) => engine.canonical_user_id(&mut outcome.user_id),
    }
    Ok(event)
}
