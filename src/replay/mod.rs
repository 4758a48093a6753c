//! Replay: score historical login logs exactly as production would.
//!
//! A log is streamed in event-time order through a fresh [`Engine`] whose `now` is each row's
//! timestamp, so every user's history is rebuilt as it happened. Parsing runs on its own
//! thread while scoring stays sequential, so results never depend on the thread count.

pub mod command;
pub mod corpus;
pub mod readers;
pub mod report;
pub mod summary;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Millis;
use crate::engine::{Engine, EngineError, Enrichment};
use crate::enrich::GeoInfo;
use crate::state::bounded::BoundedMap;

/// Logged request ids remembered for the events that follow them.
const REQUEST_IDS_KEPT: usize = 1_000_000;
use crate::model::{Assessment, Attempt, Decision, Outcome, OutcomeKind};
pub use readers::{ColumnMap, Format, ReadError};
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
    /// Country, city, ASN given by the log, used instead of a GeoIP lookup.
    pub geo: Option<GeoInfo>,
    /// The decision the server logged, for decision-log input.
    pub logged: Option<Decision>,
    /// The server's request id, to tie later logged events to this attempt.
    pub request_id: Option<String>,
    /// GeoIP and user agent, filled in on the reading thread.
    pub enrichment: Option<Enrichment>,
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
    /// 1: parse and score on one thread; 2 or more: parse on a second thread.
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

/// Errors that stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be opened.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The output could not be written.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
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

/// Streams `events` through `engine`, writing per-row decisions to `out` and calling
/// `progress` with the number of rows read so far.
pub fn replay(
    engine: &Engine,
    events: Box<dyn Iterator<Item = ReplayItem> + Send>,
    options: &Options,
    mut out: Option<&mut dyn Write>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, ReplayError> {
    let mut run = Run {
        engine,
        options,
        summary: Summary::new(options.samples),
        request_ids: BoundedMap::new(REQUEST_IDS_KEPT),
        pending: BinaryHeap::new(),
        last_at: Millis::MIN,
    };
    let started = std::time::Instant::now();
    let mut consume = |item: ReplayItem| -> Result<(), ReplayError> {
        match item {
            Ok(event) => run.push(event, &mut out),
            Err(e) => {
                run.summary.skip(&e);
                Ok(())
            }
        }
    };
    if options.threads <= 1 {
        for (i, item) in events.enumerate() {
            consume(enrich(engine, item))?;
            if i % 8192 == 0 {
                progress(i as u64);
            }
        }
    } else {
        std::thread::scope(|scope| -> Result<(), ReplayError> {
            let (tx, rx) = mpsc::sync_channel::<Vec<ReplayItem>>(8);
            scope.spawn(move || {
                let mut batch = Vec::with_capacity(1024);
                for item in events {
                    batch.push(enrich(engine, item));
                    if batch.len() == 1024 && tx.send(std::mem::take(&mut batch)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(batch);
            });
            let mut read = 0u64;
            for batch in rx {
                read += batch.len() as u64;
                for item in batch {
                    consume(item)?;
                }
                progress(read);
            }
            Ok(())
        })?;
    }
    run.drain(&mut out)?;
    run.summary.finish(started.elapsed());
    Ok(run.summary)
}

/// GeoIP and user-agent parsing, done where the rows are read so the scoring thread does less.
fn enrich(engine: &Engine, item: ReplayItem) -> ReplayItem {
    let mut event = item?;
    if let EventKind::Login(login) = &mut event.kind {
        let attempt = &login.attempt;
        login.enrichment = Some(engine.enrichment(
            attempt.ip,
            attempt.user_agent.as_deref(),
            login.geo.as_ref(),
        ));
    }
    Ok(event)
}

struct Run<'a> {
    engine: &'a Engine,
    options: &'a Options,
    summary: Summary,
    /// Logged request id → replayed request id, for decision-log events; bounded like the
    /// engine's own attempts awaiting an outcome.
    request_ids: BoundedMap<String>,
    /// Reorder buffer: earliest event first, ties in input order.
    pending: BinaryHeap<Reverse<(Millis, u64, Slot)>>,
    last_at: Millis,
}

/// A buffered event, ordered only by the key beside it.
struct Slot(Box<ReplayEvent>);

impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Run<'_> {
    fn push(
        &mut self,
        event: ReplayEvent,
        out: &mut Option<&mut dyn Write>,
    ) -> Result<(), ReplayError> {
        self.pending
            .push(Reverse((event.at, event.row, Slot(Box::new(event)))));
        if self.pending.len() > self.options.reorder_window {
            self.pop(out)?;
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut Option<&mut dyn Write>) -> Result<(), ReplayError> {
        while !self.pending.is_empty() {
            self.pop(out)?;
        }
        if let Some(out) = out {
            out.flush()?;
        }
        Ok(())
    }

    fn pop(&mut self, out: &mut Option<&mut dyn Write>) -> Result<(), ReplayError> {
        let Some(Reverse((at, _, Slot(event)))) = self.pending.pop() else {
            return Ok(());
        };
        if at < self.last_at {
            self.summary.metrics.out_of_order += 1;
        }
        self.last_at = self.last_at.max(at);
        let now = DateTime::from_timestamp_millis(at).unwrap_or_default();
        match event.kind {
            EventKind::Outcome(mut outcome) => {
                if let Some(id) = &mut outcome.request_id {
                    // An id the replay never saw stays unknown to the engine too (ignored).
                    let key = xxhash_rust::xxh3::xxh3_64(id.as_bytes());
                    if let Some(replayed) = self.request_ids.get(key, |r| r.clone()) {
                        *id = replayed;
                    }
                }
                self.engine.record(&outcome, now)?;
                self.summary.metrics.events += 1;
            }
            EventKind::Login(mut login) => {
                let answer = self.score(&mut login, now)?;
                self.summary.add(event.row, &login, &answer);
                if let Some(out) = out {
                    write_line(out, event.row, &login, &answer)?;
                }
            }
        }
        Ok(())
    }

    fn score(&mut self, login: &mut Login, now: DateTime<Utc>) -> Result<Assessment, ReplayError> {
        let attempt = &login.attempt;
        let enrichment = login.enrichment.take().unwrap_or_else(|| {
            self.engine.enrichment(
                attempt.ip,
                attempt.user_agent.as_deref(),
                login.geo.as_ref(),
            )
        });
        let answer = self
            .engine
            .evaluate_enriched(attempt, now, enrichment, None)?;
        if let Some(logged_id) = &login.request_id {
            // Decision-log input: its own events resolve the attempt.
            let key = xxhash_rust::xxh3::xxh3_64(logged_id.as_bytes());
            let replayed = answer.request_id.clone();
            self.request_ids.update(key, |slot| *slot = replayed);
        } else if answer.verdict.decision == Decision::Mfa
            && login.attempt.password_ok == Some(true)
        {
            let passed = match login.label {
                Some(label) => !label.attack,
                None => self.options.unlabelled_mfa == UnlabelledMfa::Pass,
            };
            let outcome = Outcome {
                kind: if passed {
                    OutcomeKind::MfaPassed
                } else {
                    OutcomeKind::MfaFailed
                },
                user_id: login.attempt.user_id.clone(),
                ip: Some(login.attempt.ip),
                device_id: None,
                user_agent: None,
                request_id: Some(answer.request_id.clone()),
                timestamp: Some(now),
            };
            self.engine.record(&outcome, now)?;
        }
        Ok(answer)
    }
}

fn write_line(
    out: &mut dyn Write,
    row: u64,
    login: &Login,
    answer: &Assessment,
) -> std::io::Result<()> {
    let timestamp = answer.signals.time.timestamp;
    let line = OutLine {
        row,
        user_id: &login.attempt.user_id,
        timestamp: &crate::signals::rfc3339(timestamp.0),
        decision: answer.verdict.decision,
        score: answer.verdict.score,
        reasons: &answer.verdict.reasons,
        policy_version: &answer.verdict.policy.version,
        compare_decision: answer.shadow.as_ref().map(|s| s.decision),
        compare_score: answer.shadow.as_ref().map(|s| s.score),
        label: login.label,
        logged_decision: login.logged,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}
