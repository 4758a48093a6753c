//! Replay: score historical login logs exactly as production would.
//!
//! A log is streamed in event-time order through fresh engine state whose `now` is each row's
//! timestamp, so every user's history is rebuilt as it happened. One router orders
//! events and keeps the state users share (IP and device counters); users are split over
//! shards, each an engine with its own per-user state, on their own threads; results
//! are collected back in routing order. Nothing a user's score depends on differs between
//! shards, so results never depend on the thread count.

pub mod command;
pub mod corpus;
pub mod readers;
pub mod report;
pub mod summary;

mod reorder;
mod router;
mod shard;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, mpsc};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Millis;
use crate::engine::{Engine, EngineError, Enrichment};
use crate::enrich::GeoInfo;
use crate::model::{Attempt, Decision, Outcome, Verdict};
use crate::policy::PolicyError;
use crate::signals::Signals;
use crate::state::bounded::{SHARDED_FROM, SHARDS};
use crate::state::memory::Capacity;
use crate::state::{MemoryStore, NetworkActivity};
pub use readers::{ColumnMap, Format, ReadError};
use router::{Routed, Router};
use shard::{Scored, Shard};
pub use summary::Summary;

/// What the log says an event really was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Label {
    /// From an attacker (attack IP or account takeover).
    pub attack: bool,
    /// A successful login by an attacker.
    pub takeover: bool,
}

/// One row of a log.
#[derive(Debug, Clone)]
pub struct ReplayEvent {
    /// 1-based row in the input.
    pub row: u64,
    /// Event time.
    pub at: Millis,
    /// What it is.
    pub kind: EventKind,
}

/// A login attempt, or an outcome reported for an earlier one.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// A login attempt (with its password result in `password_ok`).
    Login(Box<Login>),
    /// An outcome event, as in the decision log.
    Outcome(Box<Outcome>),
}

/// A login attempt and what the log knows about it.
#[derive(Debug, Clone)]
pub struct Login {
    /// The attempt.
    pub attempt: Attempt,
    /// Its label, when the log has one.
    pub label: Option<Label>,
    /// Country, city, ASN given by the log, used instead of a GeoIP lookup (taken by the
    /// enrichment).
    pub geo: Option<GeoInfo>,
    /// The decision the server logged, for decision-log input.
    pub logged: Option<Decision>,
    /// The server's request id, to tie later logged events to this attempt.
    pub request_id: Option<String>,
    /// GeoIP and user agent, filled in on the reading thread.
    pub enrichment: Option<Enrichment>,
}

/// One scored login, as the summary and `--out` need it.
#[derive(Debug, Clone)]
pub struct ScoredLogin {
    /// 1-based row in the input.
    pub row: u64,
    /// The account.
    pub user_id: String,
    /// Event time.
    pub at: Millis,
    /// Whether the password was right.
    pub password_ok: Option<bool>,
    /// The log's label.
    pub label: Option<Label>,
    /// The decision the server logged, for decision-log input.
    pub logged: Option<Decision>,
    /// The active policy's verdict.
    pub verdict: Verdict,
    /// The compared policy's verdict, with `--compare`.
    pub shadow: Option<Verdict>,
    /// The signals, kept only where the compared policy decided differently (A/B samples).
    pub signals: Option<Arc<Signals>>,
}

/// One item of a reader: an event or a row that failed to parse.
pub type ReplayItem = Result<ReplayEvent, ReadError>;

fn millis(t: Option<DateTime<Utc>>) -> Millis {
    t.map_or(0, |t| t.timestamp_millis())
}

impl ReplayEvent {
    /// A login row from a CSV or plain JSONL log.
    pub fn login(row: u64, attempt: Attempt, label: Option<Label>, geo: Option<GeoInfo>) -> Self {
        Self {
            row,
            at: millis(attempt.timestamp),
            kind: EventKind::Login(Box::new(Login {
                attempt,
                label,
                geo,
                logged: None,
                request_id: None,
                enrichment: None,
            })),
        }
    }

    /// An evaluation from the decision log.
    pub fn logged(
        row: u64,
        attempt: Attempt,
        logged: Option<Decision>,
        request_id: Option<String>,
    ) -> Self {
        Self {
            row,
            at: millis(attempt.timestamp),
            kind: EventKind::Login(Box::new(Login {
                attempt,
                label: None,
                geo: None,
                logged,
                request_id,
                enrichment: None,
            })),
        }
    }

    /// An outcome event.
    pub fn outcome(row: u64, outcome: Outcome) -> Self {
        Self {
            row,
            at: millis(outcome.timestamp),
            kind: EventKind::Outcome(Box::new(outcome)),
        }
    }
}

/// How a step-up is resolved for logs that do not record its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum UnlabelledMfa {
    /// A successful login passes its step-up (the user had their second factor).
    Pass,
    /// Every step-up fails (nothing is learned from stepped-up logins).
    Fail,
}

/// Replay settings.
#[derive(Debug, Clone)]
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
    /// Bounds of the replay's state, as in the server.
    pub capacity: Capacity,
    /// Every row carries its own outcome (CSV logs), so IP and device counters can be
    /// counted centrally and users scored on parallel shards. Logs with outcome events
    /// reported later (the decision log) are scored on one shard.
    pub split_users: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            threads: 2,
            reorder_window: 100_000,
            unlabelled_mfa: UnlabelledMfa::Pass,
            samples: 50,
            capacity: Capacity::default(),
            split_users: true,
        }
    }
}

impl Options {
    /// Shards of users: a power of two, and one unless users can be split and every
    /// per-user map is large enough to be sharded the same way (so evictions, too, are the
    /// same whatever the thread count).
    fn shards(&self) -> usize {
        let splittable = self.split_users
            && self.capacity.users >= SHARDED_FROM
            && self.capacity.profiles >= SHARDED_FROM;
        if splittable && self.threads > 1 {
            let threads = self.threads.min(SHARDS);
            1 << threads.ilog2()
        } else {
            1
        }
    }
}

/// Errors that stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be opened.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A shard's copy of the policies did not compile.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The output could not be written.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A replay thread ended before its work was done.
    #[error("a replay thread stopped unexpectedly")]
    Stopped,
}

/// One line of `--out`: what riskgate decided for one input row.
#[derive(Serialize)]
struct OutLine<'a> {
    row: u64,
    user_id: &'a str,
    timestamp: &'a str,
    decision: Decision,
    score: f64,
    reasons: &'a [String],
    policy_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logged_decision: Option<Decision>,
}

/// Streams `events` through fresh state over `engine`'s enrichment and copies of its policies,
/// writing per-row decisions to `out` and calling `progress` with the rows scored so far.
pub fn replay(
    engine: &Engine,
    events: Box<dyn Iterator<Item = ReplayItem> + Send>,
    options: &Options,
    out: Option<&mut dyn Write>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, ReplayError> {
    let started = std::time::Instant::now();
    let shards = options.shards();
    let network = options
        .split_users
        .then(|| NetworkActivity::new(options.capacity.ips, options.capacity.devices));
    let router = Router::new(options.reorder_window, network, shards);
    let new_shard = || -> Result<Shard, PolicyError> {
        let store = Arc::new(MemoryStore::new(options.capacity));
        Ok(Shard::new(engine.replica(store)?, options.unlabelled_mfa))
    };
    let mut collector = Collector {
        summary: Summary::new(options.samples),
        out,
        progress,
        scored: 0,
    };
    let out_of_order = if options.threads <= 1 {
        sequential(engine, events, router, new_shard()?, &mut collector)?
    } else {
        let shards = (0..shards).map(|_| new_shard()).collect::<Result<_, _>>()?;
        parallel(engine, events, router, shards, &mut collector)?
    };
    if let Some(out) = collector.out {
        out.flush()?;
    }
    let mut summary = collector.summary;
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

/// Events routed between two hand-overs to the shards.
const BATCH: usize = 2048;

/// What the collector does next, in the order the router decided.
enum Route {
    /// Take the next result of this shard.
    Shard(usize),
    /// Count a row that could not be read.
    Skipped(ReadError),
}

/// One thread reads, enriches, orders and routes, one per shard scores, and the calling
/// thread collects results in routing order, so the output matches [`sequential`].
fn parallel(
    engine: &Engine,
    events: Box<dyn Iterator<Item = ReplayItem> + Send>,
    mut router: Router,
    shards: Vec<Shard>,
    collector: &mut Collector<'_, '_>,
) -> Result<u64, ReplayError> {
    std::thread::scope(|scope| {
        let mut to_shards = Vec::new();
        let mut from_shards = Vec::new();
        for mut shard in shards {
            let (tx, rx) = mpsc::sync_channel::<Vec<Routed>>(16);
            let (result_tx, result_rx) = mpsc::sync_channel(16);
            scope.spawn(move || {
                for batch in rx {
                    let scored: Result<Vec<Scored>, ReplayError> =
                        batch.into_iter().map(|r| shard.process(r)).collect();
                    let failed = scored.is_err();
                    if result_tx.send(scored).is_err() || failed {
                        return;
                    }
                }
            });
            to_shards.push(tx);
            from_shards.push(result_rx);
        }

        let (route_tx, route_rx) = mpsc::sync_channel::<Vec<Route>>(32);
        let routing = scope.spawn(move || {
            let mut dispatch = Dispatch {
                batches: to_shards.iter().map(|_| Vec::new()).collect(),
                routes: Vec::with_capacity(BATCH),
                to_shards,
                route_tx,
            };
            for item in events {
                let open = match enrich(engine, item) {
                    Ok(event) => router
                        .push(event)
                        .is_none_or(|(shard, routed)| dispatch.send(shard, routed)),
                    Err(e) => dispatch.push(Route::Skipped(e)),
                };
                if !open {
                    return router.out_of_order;
                }
            }
            while let Some((shard, routed)) = router.pop() {
                if !dispatch.send(shard, routed) {
                    return router.out_of_order;
                }
            }
            dispatch.hand_over();
            router.out_of_order
        });

        let mut ready: Vec<VecDeque<Scored>> =
            from_shards.iter().map(|_| VecDeque::new()).collect();
        for routes in route_rx {
            for route in routes {
                match route {
                    Route::Skipped(e) => collector.summary.skip(&e),
                    Route::Shard(shard) => {
                        if ready[shard].is_empty() {
                            let batch = from_shards[shard]
                                .recv()
                                .map_err(|_| ReplayError::Stopped)??;
                            ready[shard].extend(batch);
                        }
                        let scored = ready[shard].pop_front().ok_or(ReplayError::Stopped)?;
                        collector.add(scored)?;
                    }
                }
            }
        }
        routing.join().map_err(|_| ReplayError::Stopped)
    })
}

/// Batches routed events per shard, and their order for the collector.
struct Dispatch {
    batches: Vec<Vec<Routed>>,
    routes: Vec<Route>,
    to_shards: Vec<mpsc::SyncSender<Vec<Routed>>>,
    route_tx: mpsc::SyncSender<Vec<Route>>,
}

impl Dispatch {
    /// Queues `routed` for `shard`; false once the replay has stopped.
    fn send(&mut self, shard: usize, routed: Routed) -> bool {
        self.batches[shard].push(routed);
        self.push(Route::Shard(shard))
    }

    /// Queues a step for the collector, handing over full batches; false once stopped.
    fn push(&mut self, route: Route) -> bool {
        self.routes.push(route);
        self.routes.len() < BATCH || self.hand_over()
    }

    /// Every shard gets its events before the collector learns their order, so the
    /// collector only ever waits for results already on their way.
    fn hand_over(&mut self) -> bool {
        for (tx, batch) in self.to_shards.iter().zip(&mut self.batches) {
            if !batch.is_empty() && tx.send(std::mem::take(batch)).is_err() {
                return false;
            }
        }
        self.route_tx.send(std::mem::take(&mut self.routes)).is_ok()
    }
}

/// GeoIP and user-agent parsing, done where the rows are read so the scoring threads do less.
fn enrich(engine: &Engine, item: ReplayItem) -> ReplayItem {
    let mut event = item?;
    if let EventKind::Login(login) = &mut event.kind {
        let attempt = &login.attempt;
        login.enrichment =
            Some(engine.enrichment(attempt.ip, attempt.user_agent.as_deref(), login.geo.take()));
    }
    Ok(event)
}

/// Gathers results in routing order into the summary and `--out`.
struct Collector<'o, 'p> {
    summary: Summary,
    out: Option<&'o mut dyn Write>,
    progress: &'p (dyn Fn(u64) + Sync),
    scored: u64,
}

impl Collector<'_, '_> {
    fn add(&mut self, scored: Scored) -> Result<(), ReplayError> {
        match scored {
            Scored::Event => self.summary.metrics.events += 1,
            Scored::Login(login) => {
                self.summary.add(&login);
                if let Some(out) = &mut self.out {
                    write_line(&mut **out, &login)?;
                }
            }
        }
        self.scored += 1;
        if self.scored.is_multiple_of(8192) {
            (self.progress)(self.scored);
        }
        Ok(())
    }
}

fn write_line(out: &mut dyn Write, login: &ScoredLogin) -> std::io::Result<()> {
    let line = OutLine {
        row: login.row,
        user_id: &login.user_id,
        timestamp: &crate::signals::rfc3339(login.at),
        decision: login.verdict.decision,
        score: login.verdict.score,
        reasons: &login.verdict.reasons,
        policy_version: &login.verdict.policy.version,
        compare_decision: login.shadow.as_ref().map(|s| s.decision),
        compare_score: login.shadow.as_ref().map(|s| s.score),
        label: login.label,
        logged_decision: login.logged,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}
