//! The decision log: one JSON line per evaluation and per outcome event, the production record
//! analysts replay.
//!
//! Lines are written off the request path: handlers hand a [`LogLine`] to a bounded channel and
//! a writer task serialises and appends them. The queue is bounded in lines and in bytes (a
//! stalled disk must not turn memory into a backlog): when either is full the line is
//! dropped and counted, so logging never blocks a login. The file is rotated by size
//! (`decisions.jsonl` → `decisions.jsonl.1` → ...).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::model::{Assessment, Attempt, Outcome, Recorded};

/// Lines buffered between handlers and the writer.
pub(crate) const CHANNEL_CAPACITY: usize = 16_384;
/// Bytes (estimated) buffered between handlers and the writer.
pub(crate) const QUEUE_MAX_BYTES: usize = 64 << 20;
/// An answer's estimated size in a line: decision, reasons, policy and every signal.
const ANSWER_BYTES: usize = 3 << 10;
/// Size at which the log is rotated.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Rotated files kept beside the current one.
pub(crate) const KEEP_ROTATED: usize = 5;

/// Where and how the decision log is written.
#[derive(Debug, Clone)]
pub(crate) struct LogSettings {
    /// The file.
    pub path: PathBuf,
    /// Size at which it rotates.
    pub max_bytes: u64,
    /// Attribute values it leaves out.
    pub redact: Redaction,
}

/// Attribute keys whose values never reach the log (tokens, phone numbers...), matched
/// case-insensitively at any depth of `attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Redaction {
    keys: Vec<String>,
}

/// What a redacted value is written as.
pub(crate) const REDACTED: &str = "[redacted]";

impl Redaction {
    /// The keys of a comma-separated list; blanks are ignored.
    pub(crate) fn new(list: &str) -> Self {
        let keys = list
            .split(',')
            .map(|key| key.trim().to_lowercase())
            .filter(|key| !key.is_empty())
            .collect();
        Self { keys }
    }

    /// Replaces the value of every listed key in `attributes`, at any depth.
    fn apply(&self, attributes: &mut serde_json::Map<String, serde_json::Value>) {
        if self.keys.is_empty() {
            return;
        }
        let mut objects = vec![attributes];
        while let Some(object) = objects.pop() {
            for (key, value) in object.iter_mut() {
                let key = key.to_lowercase();
                if self.keys.contains(&key) {
                    *value = serde_json::Value::from(REDACTED);
                } else {
                    collect_objects(value, &mut objects);
                }
            }
        }
    }
}

/// Pushes the objects in `value` (itself, or those inside an array) onto `objects`.
fn collect_objects<'a>(
    value: &'a mut serde_json::Value,
    objects: &mut Vec<&'a mut serde_json::Map<String, serde_json::Value>>,
) {
    match value {
        serde_json::Value::Object(object) => objects.push(object),
        serde_json::Value::Array(items) => {
            for item in items {
                collect_objects(item, objects);
            }
        }
        _ => {}
    }
}

/// One line of the decision log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum LogLine {
    /// A `POST /v1/evaluate`.
    Evaluate {
        /// Server time of the call.
        at: DateTime<Utc>,
        /// The attempt as received.
        request: Attempt,
        /// The full answer (decision, score, reasons, signals, policy, shadow).
        answer: serde_json::Value,
        /// Time spent in the engine, in microseconds.
        latency_us: u64,
    },
    /// A `POST /v1/events`.
    Event {
        /// Server time of the call.
        at: DateTime<Utc>,
        /// The event as received.
        event: Outcome,
        /// What it changed.
        recorded: Recorded,
    },
}

impl LogLine {
    /// The line for an evaluation.
    pub(crate) fn evaluate(
        at: DateTime<Utc>,
        request: &Attempt,
        answer: &Assessment,
        latency_us: u64,
    ) -> Self {
        LogLine::Evaluate {
            at,
            request: request.clone(),
            answer: serde_json::to_value(answer).unwrap_or_default(),
            latency_us,
        }
    }
}

/// Lines written and lines lost, as the metrics report them.
#[derive(Clone)]
pub(crate) struct LogCounters {
    /// Lines written to the file.
    pub written: prometheus::IntCounter,
    /// Lines dropped because the writer was behind, or lost in a failed write.
    pub dropped: prometheus::IntCounter,
}

#[cfg(test)]
impl Default for LogCounters {
    fn default() -> Self {
        let counter = |name| prometheus::IntCounter::new(name, name).unwrap();
        Self {
            written: counter("written"),
            dropped: counter("dropped"),
        }
    }
}

/// The sending side, shared by handlers.
#[derive(Clone)]
pub(crate) struct DecisionLog {
    tx: mpsc::Sender<(Pending, usize)>,
    counters: LogCounters,
    /// Estimated bytes queued, added by handlers and taken off by the writer.
    queued: Arc<AtomicUsize>,
}

/// What handlers send: serialisation of the answer happens in the writer task.
enum Pending {
    Evaluate(Box<Evaluation>),
    Line(LogLine),
}

struct Evaluation {
    at: DateTime<Utc>,
    request: Attempt,
    answer: Assessment,
    latency_us: u64,
}

impl Pending {
    fn into_line(self, redact: &Redaction) -> LogLine {
        match self {
            Pending::Evaluate(mut e) => {
                redact.apply(&mut e.request.attributes);
                let mut line = LogLine::evaluate(e.at, &e.request, &e.answer, e.latency_us);
                // The answer's signals echo the request, attributes included.
                if let LogLine::Evaluate { answer, .. } = &mut line
                    && let Some(echoed) = answer
                        .pointer_mut("/signals/request/attributes")
                        .and_then(serde_json::Value::as_object_mut)
                {
                    redact.apply(echoed);
                }
                line
            }
            Pending::Line(line) => line,
        }
    }
}

impl DecisionLog {
    /// Starts the writer task appending to the log `settings` name; returns the handle and
    /// the task, which ends (after flushing) once every handle is dropped.
    pub(crate) fn spawn(
        settings: LogSettings,
        counters: LogCounters,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let queued = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write_lines(
            settings,
            rx,
            Arc::clone(&queued),
            counters.clone(),
        ));
        let log = Self {
            tx,
            counters,
            queued,
        };
        (log, task)
    }

    /// Queues an evaluation; never waits.
    pub(crate) fn evaluation(
        &self,
        at: DateTime<Utc>,
        request: &Attempt,
        answer: &Assessment,
        latency_us: u64,
    ) {
        let bytes = request_bytes(request) + ANSWER_BYTES;
        let pending = || {
            Pending::Evaluate(Box::new(Evaluation {
                at,
                request: request.clone(),
                answer: answer.clone(),
                latency_us,
            }))
        };
        self.send(pending, bytes);
    }

    /// Queues an outcome event; never waits.
    pub(crate) fn event(&self, at: DateTime<Utc>, event: &Outcome, recorded: Recorded) {
        let bytes = 256
            + event.user_id.len()
            + [&event.device_id, &event.user_agent, &event.request_id]
                .iter()
                .map(|field| field.as_ref().map_or(0, String::len))
                .sum::<usize>();
        let pending = || {
            Pending::Line(LogLine::Event {
                at,
                event: event.clone(),
                recorded,
            })
        };
        self.send(pending, bytes);
    }

    /// Lines dropped because the writer could not keep up.
    pub(crate) fn dropped(&self) -> u64 {
        self.counters.dropped.get()
    }

    /// Queues what `pending` makes (built only if it fits), `bytes` its estimated size.
    fn send(&self, pending: impl FnOnce() -> Pending, bytes: usize) {
        let queued = self.queued.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let sent = queued <= QUEUE_MAX_BYTES && self.tx.try_send((pending(), bytes)).is_ok();
        if !sent {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.counters.dropped.inc();
            let total = self.counters.dropped.get();
            if total.is_power_of_two() {
                tracing::warn!(dropped = total, "decision log is behind; lines dropped");
            }
        }
    }
}

/// An attempt's estimated size in a line.
fn request_bytes(request: &Attempt) -> usize {
    let attributes = if request.attributes.is_empty() {
        0
    } else {
        serde_json::to_vec(&request.attributes).map_or(0, |bytes| bytes.len())
    };
    256 + request.user_id.len()
        + [&request.user_agent, &request.device_id, &request.app]
            .iter()
            .map(|field| field.as_ref().map_or(0, String::len))
            .sum::<usize>()
        + attributes
}

async fn write_lines(
    settings: LogSettings,
    mut rx: mpsc::Receiver<(Pending, usize)>,
    queued: Arc<AtomicUsize>,
    counters: LogCounters,
) {
    let LogSettings {
        path,
        max_bytes,
        redact,
    } = settings;
    let mut file = match LogFile::open(path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the decision log; logging is off");
            return;
        }
    };
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 1024 {
                break;
            }
        }
        let mut buf = Vec::with_capacity(batch.len() * 1024);
        let mut lines = 0;
        for (pending, bytes) in batch {
            queued.fetch_sub(bytes, Ordering::AcqRel);
            if serde_json::to_writer(&mut buf, &pending.into_line(&redact)).is_ok() {
                buf.push(b'\n');
                lines += 1;
            }
        }
        match file.append(&buf, max_bytes).await {
            Ok(()) => counters.written.inc_by(lines),
            Err(e) => {
                tracing::error!(error = %e, "decision log write failed");
                counters.dropped.inc_by(lines);
            }
        }
    }
    if let Err(e) = file.file.flush().await {
        tracing::error!(error = %e, "decision log flush failed");
    }
}

struct LogFile {
    path: PathBuf,
    file: tokio::fs::File,
    size: u64,
}

impl LogFile {
    async fn open(path: PathBuf) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true);
        // Requests and their attributes are personal data: readable by the service's user
        // only (an existing file keeps the mode its operator gave it).
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&path).await?;
        let size = file.metadata().await?.len();
        Ok(Self { path, file, size })
    }

    async fn append(&mut self, bytes: &[u8], max_bytes: u64) -> std::io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > max_bytes {
            self.rotate().await?;
        }
        self.file.write_all(bytes).await?;
        self.file.flush().await?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    async fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush().await?;
        for i in (1..KEEP_ROTATED).rev() {
            let from = rotated(&self.path, i);
            if tokio::fs::try_exists(&from).await? {
                tokio::fs::rename(&from, rotated(&self.path, i + 1)).await?;
            }
        }
        tokio::fs::rename(&self.path, rotated(&self.path, 1)).await?;
        *self = Self::open(self.path.clone()).await?;
        Ok(())
    }
}

/// `decisions.jsonl.N`
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OutcomeKind;

    fn failure() -> Outcome {
        Outcome {
            kind: OutcomeKind::LoginFailed,
            user_id: "alice".into(),
            ip: None,
            device_id: None,
            user_agent: None,
            request_id: None,
            timestamp: None,
        }
    }

    #[test]
    fn a_stalled_writer_holds_a_bounded_number_of_bytes_not_just_of_lines() {
        // No writer: as if the disk had stalled.
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        let log = DecisionLog {
            tx,
            counters: LogCounters::default(),
            queued: Arc::default(),
        };
        let line = || {
            Pending::Line(LogLine::Event {
                at: Utc::now(),
                event: failure(),
                recorded: Recorded::FailureCounted,
            })
        };
        let big = 16 << 10;
        for _ in 0..CHANNEL_CAPACITY {
            log.send(line, big);
        }
        let kept = QUEUE_MAX_BYTES / big;
        assert!(kept < CHANNEL_CAPACITY, "the byte bound is the one tested");
        assert_eq!(log.dropped(), (CHANNEL_CAPACITY - kept) as u64);
        assert!(log.queued.load(Ordering::Acquire) <= QUEUE_MAX_BYTES);
        // Taking lines off frees their bytes for new ones.
        let (_, bytes) = rx.try_recv().unwrap();
        log.queued.fetch_sub(bytes, Ordering::AcqRel);
        log.send(line, big);
        assert_eq!(log.dropped(), (CHANNEL_CAPACITY - kept) as u64);
    }

    #[test]
    fn a_request_is_estimated_with_its_attributes() {
        let mut request = Attempt::new("alice", "81.2.69.10".parse().unwrap());
        let plain = request_bytes(&request);
        request
            .attributes
            .insert("note".into(), serde_json::Value::String("x".repeat(4000)));
        assert!(request_bytes(&request) >= plain + 4000);
    }

    #[tokio::test]
    async fn lines_are_appended_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let settings = LogSettings {
            path: path.clone(),
            max_bytes: 2000,
            redact: Redaction::default(),
        };
        let counters = LogCounters::default();
        let (log, task) = DecisionLog::spawn(settings, counters.clone());
        let event = failure();
        for _ in 0..20 {
            log.event(Utc::now(), &event, Recorded::FailureCounted);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(log);
        task.await.unwrap();
        let current = std::fs::read_to_string(&path).unwrap();
        let first: LogLine = serde_json::from_str(current.lines().next().unwrap()).unwrap();
        assert!(matches!(
            first,
            LogLine::Event {
                recorded: Recorded::FailureCounted,
                ..
            }
        ));
        assert!(rotated(&path, 1).exists(), "rotated at 2000 bytes");
        let total: usize = [path.clone(), rotated(&path, 1), rotated(&path, 2)]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.lines().count())
            .sum();
        assert_eq!(total, 20, "every line kept across the rotated files");
        assert_eq!((counters.written.get(), counters.dropped.get()), (20, 0));
        #[cfg(unix)]
        for file in [path.clone(), rotated(&path, 1)] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is readable by others", file.display());
        }
    }
}
