//! Prometheus metrics for `GET /metrics`: what the service answered and how fast, and how the
//! parts it depends on are doing. Each service has a registry of its own, so several servers
//! in one process (the integration tests) count apart.

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::RwLock;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::decision_log::LogCounters;
use crate::engine::{Engine, POLICY_ERROR_REASON, STATE_UNAVAILABLE_REASON};
use crate::model::{Assessment, Verdict};

/// Distinct (policy, reason) series counted; a policy minting reasons from data (a country,
/// an IP) would otherwise grow the metrics without bound. Later ones are counted as `other`.
const MAX_REASON_SERIES: usize = 256;

/// Latency buckets, in seconds: 25 µs to about 0.8 s, doubling.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(25e-6, 2.0, 16).unwrap_or_default()
}

/// Every metric riskgate reports.
pub struct Metrics {
    registry: Registry,
    evaluations: IntCounterVec,
    reasons: IntCounterVec,
    reason_series: RwLock<HashSet<u64>>,
    policy_errors: IntCounterVec,
    fallbacks: IntCounterVec,
    engine_seconds: Histogram,
    request_seconds: HistogramVec,
    reloads: IntCounterVec,
    state_errors: IntCounter,
    log: LogCounters,
    geoip_build: IntGaugeVec,
    policy_info: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a policy reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReloadResult {
    /// The new set answers.
    Accepted,
    /// The set did not compile or failed its tests; the old one goes on answering.
    Rejected,
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("riskgate".into()), None).unwrap_or_else(|_| Registry::new());
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric `{name}` is well-formed: {e}"));
            register(&registry, vec.clone());
            vec
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help)
                .unwrap_or_else(|e| unreachable!("metric `{name}` is well-formed: {e}"));
            register(&registry, counter.clone());
            counter
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric `{name}` is well-formed: {e}"));
            register(&registry, vec.clone());
            vec
        };
        let engine_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "evaluation_duration_seconds",
                "Time the engine took to answer an evaluation, its state committed",
            )
            .buckets(latency_buckets()),
        )
        .unwrap_or_else(|e| unreachable!("the histogram is well-formed: {e}"));
        register(&registry, engine_seconds.clone());
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a request's arrival to its answer, by route and status",
            )
            .buckets(latency_buckets()),
            &["route", "status"],
        )
        .unwrap_or_else(|e| unreachable!("the histogram is well-formed: {e}"));
        register(&registry, request_seconds.clone());
        let log = LogCounters {
            written: counter(
                "decision_log_lines_written_total",
                "Decision-log lines written to the file",
            ),
            dropped: counter(
                "decision_log_lines_dropped_total",
                "Decision-log lines dropped because the writer could not keep up or the write failed",
            ),
        };
        Self {
            evaluations: counter_vec(
                "evaluations_total",
                "Verdicts given, by policy, decision and mode (active or shadow)",
                &["policy", "decision", "mode"],
            ),
            reasons: counter_vec(
                "evaluation_reasons_total",
                "Reasons given in verdicts, by policy",
                &["policy", "reason"],
            ),
            reason_series: RwLock::default(),
            policy_errors: counter_vec(
                "policy_errors_total",
                "Policy runs that failed (an error, a limit, an invalid result), active or shadow, by policy",
                &["policy"],
            ),
            fallbacks: counter_vec(
                "fallback_decisions_total",
                "Fail-safe answers, by cause (policy_error, state_unavailable)",
                &["cause"],
            ),
            engine_seconds,
            request_seconds,
            reloads: counter_vec(
                "policy_reloads_total",
                "Policy set reloads, by result (accepted, rejected)",
                &["result"],
            ),
            state_errors: counter(
                "state_errors_total",
                "Requests the state backend failed (answered fail-safe or 503)",
            ),
            log,
            geoip_build: gauge_vec(
                "geoip_database_build_timestamp_seconds",
                "Each loaded GeoIP database, with when it was built (0 for CSV ranges)",
                &["kind", "file"],
            ),
            policy_info: gauge_vec(
                "policy_info",
                "The loaded policies (value 1), with their version and role",
                &["policy", "version", "role"],
            ),
            registry,
        }
    }

    /// The decision log's line counters, to hand to the log.
    pub(crate) fn log_counters(&self) -> LogCounters {
        self.log.clone()
    }

    /// Counts an evaluation's answer and the engine's time for it.
    pub fn evaluated(&self, answer: &Assessment, engine_time: Duration) {
        self.engine_seconds.observe(engine_time.as_secs_f64());
        self.verdict(&answer.verdict, "active");
        if let Some(shadow) = &answer.shadow {
            self.verdict(shadow, "shadow");
        }
    }

    fn verdict(&self, verdict: &Verdict, mode: &str) {
        let policy = verdict.policy.name.as_str();
        self.evaluations
            .with_label_values(&[policy, verdict.decision.as_str(), mode])
            .inc();
        for reason in &verdict.reasons {
            let reason = self.reason_label(policy, reason);
            self.reasons.with_label_values(&[policy, reason]).inc();
        }
        if !verdict.fallback {
            return;
        }
        let gave = |cause: &str| verdict.reasons.iter().any(|r| r == cause);
        if gave(POLICY_ERROR_REASON) {
            self.policy_errors.with_label_values(&[policy]).inc();
        }
        // A failing shadow policy is a policy error, but no answer fell back to the fail-safe.
        if mode == "shadow" {
            return;
        }
        for cause in [POLICY_ERROR_REASON, STATE_UNAVAILABLE_REASON] {
            if gave(cause) {
                self.fallbacks.with_label_values(&[cause]).inc();
            }
        }
        if gave(STATE_UNAVAILABLE_REASON) {
            self.state_errors.inc();
        }
    }

    /// `reason`, or `other` once [`MAX_REASON_SERIES`] series are counted.
    fn reason_label<'a>(&self, policy: &str, reason: &'a str) -> &'a str {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(policy.as_bytes());
        hasher.update(&[0]);
        hasher.update(reason.as_bytes());
        let key = hasher.digest();
        if self.reason_series.read().contains(&key) {
            return reason;
        }
        let mut series = self.reason_series.write();
        if series.len() < MAX_REASON_SERIES {
            series.insert(key);
            return reason;
        }
        "other"
    }

    /// Counts a request the state backend failed outside an evaluation's fail-safe answer.
    pub(crate) fn state_error(&self) {
        self.state_errors.inc();
    }

    /// Counts a policy reload.
    pub(crate) fn reload(&self, result: ReloadResult) {
        let result = match result {
            ReloadResult::Accepted => "accepted",
            ReloadResult::Rejected => "rejected",
        };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Times a whole request.
    pub(crate) fn request(&self, route: &str, status: axum::http::StatusCode, took: Duration) {
        self.request_seconds
            .with_label_values(&[route, status.as_str()])
            .observe(took.as_secs_f64());
    }

    /// The metrics in Prometheus's text format, with what is read at scrape time (the
    /// policies and GeoIP databases loaded now) brought up to date.
    pub(crate) fn render(&self, engine: &Engine) -> String {
        self.geoip_build.reset();
        for db in engine.geoip_databases() {
            let built = db.built.and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
            self.geoip_build
                .with_label_values(&[db.kind, db.file.as_str()])
                .set(built);
        }
        self.policy_info.reset();
        let policies = engine.policies();
        let active = policies.active(None).reference();
        let shadow = policies.shadow().map(|p| p.reference());
        for policy in policies.policies().map(|p| p.reference()) {
            let role = if policy.name == active.name {
                "active"
            } else if shadow.as_ref().is_some_and(|s| s.name == policy.name) {
                "shadow"
            } else {
                "loaded"
            };
            self.policy_info
                .with_label_values(&[policy.name.as_str(), policy.version.as_str(), role])
                .set(1);
        }
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// Registers a metric whose name no other one in the registry has.
fn register(registry: &Registry, metric: impl prometheus::core::Collector + 'static) {
    if let Err(error) = registry.register(Box::new(metric)) {
        unreachable!("every metric has its own name: {error}");
    }
}
