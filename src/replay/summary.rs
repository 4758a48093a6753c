//! What a replay measured: decision counts, reasons, and against labels the confusion matrix,
//! detection and friction, a threshold sweep; with a second policy, the A/B differences.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AttackKind, Label, ReadError, ScoredLogin};
use crate::model::{Decision, PolicyRef, Verdict};

/// Score histogram bins: `floor(score * 100)`, scores clamped to 0..=1.
pub(crate) const SCORE_BINS: usize = 101;
/// Detection rates for which a threshold is suggested.
pub(crate) const TARGETS: [f64; 5] = [0.5, 0.8, 0.9, 0.95, 0.99];
const MAX_SKIP_EXAMPLES: usize = 5;
/// Milliseconds per day.
pub(crate) use crate::DAY;

/// Counts per decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionCounts {
    /// Allowed.
    pub allow: u64,
    /// Stepped up.
    pub mfa: u64,
    /// Locked.
    pub lock: u64,
}

impl DecisionCounts {
    fn add(&mut self, decision: Decision) {
        *self.slot(decision) += 1;
    }

    fn slot(&mut self, decision: Decision) -> &mut u64 {
        match decision {
            Decision::Allow => &mut self.allow,
            Decision::Mfa => &mut self.mfa,
            Decision::Lock => &mut self.lock,
        }
    }

    /// All decisions.
    pub fn total(&self) -> u64 {
        self.allow + self.mfa + self.lock
    }

    /// Stepped up or locked.
    pub fn challenged(&self) -> u64 {
        self.mfa + self.lock
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Per-label decision counts and score histograms of one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labelled {
    /// Decisions for attack rows.
    pub attack: DecisionCounts,
    /// Decisions for account-takeover rows (a subset of attacks).
    pub takeover: DecisionCounts,
    /// Decisions for legitimate rows.
    pub legitimate: DecisionCounts,
    /// Decisions for legitimate rows with the right password (where friction is felt).
    pub legitimate_success: DecisionCounts,
    /// Score histogram of attack rows.
    pub attack_scores: Vec<u64>,
    /// Score histogram of takeover rows.
    pub takeover_scores: Vec<u64>,
    /// Score histogram of legitimate rows with the right password.
    pub legitimate_scores: Vec<u64>,
    /// Per kind of row, when the log says who made each (`Attack Kind`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<AttackKind, KindCounts>,
}

impl Default for Labelled {
    fn default() -> Self {
        Self {
            attack: DecisionCounts::default(),
            takeover: DecisionCounts::default(),
            legitimate: DecisionCounts::default(),
            legitimate_success: DecisionCounts::default(),
            attack_scores: vec![0; SCORE_BINS],
            takeover_scores: vec![0; SCORE_BINS],
            legitimate_scores: vec![0; SCORE_BINS],
            kinds: BTreeMap::new(),
        }
    }
}

/// Decisions and score histograms of the rows of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindCounts {
    /// Decisions for the kind's rows.
    pub rows: DecisionCounts,
    /// Decisions for the kind's account takeovers.
    pub takeover: DecisionCounts,
    /// Score histogram of the kind's rows.
    pub scores: Vec<u64>,
    /// Score histogram of the kind's account takeovers.
    pub takeover_scores: Vec<u64>,
}

impl Default for KindCounts {
    fn default() -> Self {
        Self {
            rows: DecisionCounts::default(),
            takeover: DecisionCounts::default(),
            scores: vec![0; SCORE_BINS],
            takeover_scores: vec![0; SCORE_BINS],
        }
    }
}

/// Detection of one kind of attack: of its rows, and of its account takeovers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KindRates {
    /// Share of the kind's rows challenged (mfa or lock; in a sweep, scoring at least the
    /// threshold).
    pub detection_rate: f64,
    /// The same share of the kind's account takeovers.
    pub takeover_detection_rate: f64,
}

/// Detection and friction at one score threshold: what a policy challenging exactly the
/// rows scoring at least the threshold would give. A score does not say whether a challenge
/// is a step-up or a lock: the policy's own split is in [`Quality`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Rows scoring at least this would be challenged.
    pub threshold: f64,
    /// Share of attack rows at or above the threshold.
    pub detection_rate: f64,
    /// Share of takeover rows at or above the threshold.
    pub takeover_detection_rate: f64,
    /// Share of legitimate successful logins at or above the threshold.
    pub friction: f64,
    /// The same detection per kind of attack, when the log has kinds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<AttackKind, KindRates>,
}

/// The quality of one policy against labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Share of attack rows that got mfa or lock.
    pub detection_rate: f64,
    /// Share of account-takeover rows that got mfa or lock.
    pub takeover_detection_rate: f64,
    /// Share of legitimate successful logins asked for MFA.
    pub friction_mfa: f64,
    /// Share of legitimate successful logins locked.
    pub friction_lock: f64,
    /// Detection per kind of attack, when the log has kinds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<AttackKind, KindRates>,
    /// Thresholds 0, 0.05 .. 1 on the policy score.
    pub sweep: Vec<SweepPoint>,
    /// For each reachable target detection rate, the highest threshold reaching it.
    pub suggested: Vec<Suggestion>,
}

/// The highest score threshold that still reaches a target detection rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// The detection rate aimed for.
    pub target: f64,
    /// The threshold and what it gives.
    #[serde(flatten)]
    pub at: SweepPoint,
}

/// Everything measured for one policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// The policy.
    pub policy: Option<PolicyRef>,
    /// Decisions over all login rows.
    pub decisions: DecisionCounts,
    /// How often each reason was given.
    pub reasons: BTreeMap<String, u64>,
    /// Per-label counts, when the log has labels.
    pub labelled: Option<Labelled>,
    /// Metrics derived from `labelled`.
    pub quality: Option<Quality>,
}

impl Side {
    fn add(&mut self, verdict: &Verdict, login: &ScoredLogin) {
        if self.policy.is_none() {
            self.policy = Some(PolicyRef::clone(&verdict.policy));
        }
        self.decisions.add(verdict.decision);
        for reason in &verdict.reasons {
            match self.reasons.get_mut(reason) {
                Some(n) => *n += 1,
                None => {
                    self.reasons.insert(reason.clone(), 1);
                }
            }
        }
        let Some(label) = login.label else { return };
        let labelled = self.labelled.get_or_insert_with(Labelled::default);
        let bin = ((verdict.score.clamp(0.0, 1.0) * 100.0) as usize).min(SCORE_BINS - 1);
        if let Some(kind) = label.kind {
            let counts = labelled.kinds.entry(kind).or_default();
            counts.rows.add(verdict.decision);
            bump(&mut counts.scores, bin);
            if label.takeover {
                counts.takeover.add(verdict.decision);
                bump(&mut counts.takeover_scores, bin);
            }
        }
        if label.attack {
            labelled.attack.add(verdict.decision);
            bump(&mut labelled.attack_scores, bin);
            if label.takeover {
                labelled.takeover.add(verdict.decision);
                bump(&mut labelled.takeover_scores, bin);
            }
        } else {
            labelled.legitimate.add(verdict.decision);
            if login.password_ok == Some(true) {
                labelled.legitimate_success.add(verdict.decision);
                bump(&mut labelled.legitimate_scores, bin);
            }
        }
    }

    fn finish(&mut self) {
        self.quality = self.labelled.as_ref().map(quality);
    }
}

/// Counts one score in its histogram bin.
fn bump(histogram: &mut [u64], bin: usize) {
    if let Some(count) = histogram.get_mut(bin) {
        *count += 1;
    }
}

/// Share of a histogram's rows in `bin` or above.
fn above(hist: &[u64], bin: usize) -> f64 {
    let total: u64 = hist.iter().sum();
    share(hist.iter().skip(bin).sum(), total)
}

/// `rates` of every attack kind in `l`.
fn per_kind(
    l: &Labelled,
    rates: impl Fn(&KindCounts) -> KindRates,
) -> BTreeMap<AttackKind, KindRates> {
    let attacks = l.kinds.iter().filter(|(kind, _)| kind.is_attack());
    attacks
        .map(|(&kind, counts)| (kind, rates(counts)))
        .collect()
}

fn quality(l: &Labelled) -> Quality {
    let point = |bin: usize| SweepPoint {
        threshold: bin as f64 / 100.0,
        detection_rate: above(&l.attack_scores, bin),
        takeover_detection_rate: above(&l.takeover_scores, bin),
        friction: above(&l.legitimate_scores, bin),
        kinds: per_kind(l, |k| KindRates {
            detection_rate: above(&k.scores, bin),
            takeover_detection_rate: above(&k.takeover_scores, bin),
        }),
    };
    let has_attacks = l.attack.total() > 0;
    Quality {
        detection_rate: share(l.attack.challenged(), l.attack.total()),
        takeover_detection_rate: share(l.takeover.challenged(), l.takeover.total()),
        friction_mfa: share(l.legitimate_success.mfa, l.legitimate_success.total()),
        friction_lock: share(l.legitimate_success.lock, l.legitimate_success.total()),
        kinds: per_kind(l, |k| KindRates {
            detection_rate: share(k.rows.challenged(), k.rows.total()),
            takeover_detection_rate: share(k.takeover.challenged(), k.takeover.total()),
        }),
        sweep: (0..SCORE_BINS).step_by(5).map(point).collect(),
        suggested: TARGETS
            .iter()
            .filter(|_| has_attacks)
            .filter_map(|&target| {
                let at = (0..SCORE_BINS)
                    .rev()
                    .map(point)
                    .find(|p| p.detection_rate >= target)?;
                Some(Suggestion { target, at })
            })
            .collect(),
    }
}

/// Decisions that differ between the active and the compared policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Input row.
    pub row: u64,
    /// The user.
    pub user_id: String,
    /// Event time.
    pub timestamp: String,
    /// The active policy's verdict.
    pub active: Verdict,
    /// The compared policy's verdict.
    pub compare: Verdict,
    /// The row's label.
    pub label: Option<Label>,
    /// The signals both policies saw.
    pub signals: serde_json::Value,
}

/// The A/B comparison of two policies on the same stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The compared policy's own measurements.
    pub side: Side,
    /// `matrix[active][compare]`, decisions in the order allow, mfa, lock.
    pub matrix: [[u64; 3]; 3],
    /// The first changed rows.
    pub samples: Vec<Change>,
}

/// Everything a replay measured that does not depend on the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Login rows scored.
    pub rows: u64,
    /// Outcome events applied (decision-log input).
    pub events: u64,
    /// Rows that could not be parsed.
    pub skipped: u64,
    /// The first parse errors.
    pub skipped_examples: Vec<String>,
    /// Rows older than one already scored (beyond the reorder window).
    pub out_of_order: u64,
    /// The active policy.
    pub active: Side,
    /// The compared policy, with `--compare`.
    pub compare: Option<Comparison>,
    /// Decisions per UTC day (days since the Unix epoch).
    pub timeline: BTreeMap<i64, DecisionCounts>,
    /// For decision-log input: how often the replay agreed with the server.
    pub logged_agreement: Option<Agreement>,
}

/// Replayed decisions against the decisions a log recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// Rows decided the same.
    pub same: u64,
    /// Rows decided differently.
    pub different: u64,
}

/// How fast the replay ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Login rows and events per second.
    pub events_per_second: f64,
}

/// The result of a replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// What was measured.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Speed (varies by machine).
    pub performance: Performance,
    #[serde(skip)]
    samples_wanted: usize,
}

fn index(decision: Decision) -> usize {
    match decision {
        Decision::Allow => 0,
        Decision::Mfa => 1,
        Decision::Lock => 2,
    }
}

impl Summary {
    /// An empty summary keeping up to `samples` changed rows.
    pub(crate) fn new(samples: usize) -> Self {
        Self {
            samples_wanted: samples,
            ..Self::default()
        }
    }

    /// Counts a row that could not be parsed.
    pub(crate) fn skip(&mut self, error: &ReadError) {
        let m = &mut self.metrics;
        m.skipped += 1;
        if m.skipped_examples.len() < MAX_SKIP_EXAMPLES {
            m.skipped_examples.push(error.to_string());
        }
    }

    /// Counts one scored login.
    pub(crate) fn add(&mut self, login: &ScoredLogin) {
        let m = &mut self.metrics;
        m.rows += 1;
        let verdict = &login.verdict;
        m.active.add(verdict, login);
        let day = login.at.div_euclid(DAY);
        m.timeline.entry(day).or_default().add(verdict.decision);
        if let Some(logged) = login.logged {
            let agreement = m.logged_agreement.get_or_insert_with(Agreement::default);
            if logged == verdict.decision {
                agreement.same += 1;
            } else {
                agreement.different += 1;
            }
        }
        if let Some(shadow) = &login.shadow {
            let comparison = m.compare.get_or_insert_with(Comparison::default);
            comparison.side.add(shadow, login);
            let cell = comparison
                .matrix
                .get_mut(index(verdict.decision))
                .and_then(|row| row.get_mut(index(shadow.decision)));
            if let Some(cell) = cell {
                *cell += 1;
            }
            if shadow.decision != verdict.decision && comparison.samples.len() < self.samples_wanted
            {
                comparison.samples.push(Change {
                    row: login.row,
                    user_id: login.user_id.clone(),
                    timestamp: crate::signals::rfc3339(login.at),
                    active: verdict.clone(),
                    compare: shadow.clone(),
                    label: login.label,
                    signals: login
                        .signals
                        .as_ref()
                        .and_then(|s| serde_json::to_value(&**s).ok())
                        .unwrap_or_default(),
                });
            }
        }
    }

    /// Derives the rates and records the elapsed time.
    pub(crate) fn finish(&mut self, elapsed: Duration) {
        let m = &mut self.metrics;
        m.active.finish();
        if let Some(c) = &mut m.compare {
            c.side.finish();
        }
        let seconds = elapsed.as_secs_f64();
        self.performance = Performance {
            seconds,
            events_per_second: (m.rows + m.events) as f64 / seconds.max(1e-9),
        };
    }

    /// The terminal summary.
    pub fn render(&self) -> String {
        let m = &self.metrics;
        let mut s = String::new();
        let total = m.active.decisions.total();
        let _ = writeln!(
            s,
            "rows {}  events {}  skipped {}  out of order {}  ({:.1} s, {:.0} events/s)",
            m.rows,
            m.events,
            m.skipped,
            m.out_of_order,
            self.performance.seconds,
            self.performance.events_per_second
        );
        for example in &m.skipped_examples {
            let _ = writeln!(s, "  skipped: {example}");
        }
        render_side(&mut s, "policy", &m.active, total);
        if let Some(c) = &m.compare {
            render_side(&mut s, "compare", &c.side, total);
            let _ = writeln!(s, "decision changes (rows: active, columns: compare)");
            let _ = writeln!(s, "{:>8} {:>10} {:>10} {:>10}", "", "allow", "mfa", "lock");
            for (name, row) in ["allow", "mfa", "lock"].iter().zip(c.matrix) {
                let _ = writeln!(s, "{name:>8} {:>10} {:>10} {:>10}", row[0], row[1], row[2]);
            }
        }
        if let Some(a) = &m.logged_agreement {
            let _ = writeln!(
                s,
                "agreement with the logged decisions: {} same, {} different",
                a.same, a.different
            );
        }
        s
    }
}

fn render_side(s: &mut String, title: &str, side: &Side, total: u64) {
    let d = &side.decisions;
    let name = side.policy.as_ref().map_or("-", |p| p.name.as_str());
    let _ = writeln!(s, "{title} `{name}`:");
    for (decision, n) in [("allow", d.allow), ("mfa", d.mfa), ("lock", d.lock)] {
        let _ = writeln!(
            s,
            "  {decision:<6} {n:>10}  {:>6.2}%",
            100.0 * share(n, total)
        );
    }
    let mut reasons: Vec<_> = side.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (reason, n) in reasons.iter().take(12) {
        let _ = writeln!(s, "    {reason:<28} {n:>10}");
    }
    if let Some(q) = &side.quality {
        let _ = writeln!(
            s,
            "  detection {:.2}%  takeover detection {:.2}%  friction: mfa {:.2}% lock {:.3}%",
            100.0 * q.detection_rate,
            100.0 * q.takeover_detection_rate,
            100.0 * q.friction_mfa,
            100.0 * q.friction_lock
        );
        if let Some(l) = &side.labelled {
            render_kinds(s, &l.kinds);
        }
        for Suggestion { target, at } in &q.suggested {
            let _ = writeln!(
                s,
                "    for {:.0}% detection: score >= {:.2} (detection {:.1}%, friction {:.2}%)",
                100.0 * target,
                at.threshold,
                100.0 * at.detection_rate,
                100.0 * at.friction
            );
        }
    }
}

/// Decisions per kind of row, and the share challenged of its rows and of its takeovers.
fn render_kinds(s: &mut String, kinds: &BTreeMap<AttackKind, KindCounts>) {
    if kinds.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "    {:<12} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10} {:>11}",
        "kind", "rows", "allow", "mfa", "lock", "challenged", "takeovers", "challenged"
    );
    for (kind, k) in kinds {
        let r = &k.rows;
        let _ = write!(
            s,
            "    {:<12} {:>9} {:>9} {:>9} {:>9} {:>10.2}%",
            kind.name(),
            r.total(),
            r.allow,
            r.mfa,
            r.lock,
            100.0 * share(r.challenged(), r.total())
        );
        let t = &k.takeover;
        if t.total() > 0 {
            let _ = write!(
                s,
                " {:>10} {:>10.2}%",
                t.total(),
                100.0 * share(t.challenged(), t.total())
            );
        }
        s.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A scored login of `kind` decided `decision` with `score`.
    fn login(
        kind: Option<AttackKind>,
        takeover: bool,
        decision: Decision,
        score: f64,
    ) -> ScoredLogin {
        ScoredLogin {
            row: 1,
            user_id: "u".into(),
            at: 0,
            password_ok: Some(takeover || kind == Some(AttackKind::Legitimate)),
            label: Label::from_columns(None, Some(takeover), kind),
            logged: None,
            verdict: Verdict {
                decision,
                score,
                reasons: Vec::new(),
                lock_seconds: None,
                policy: Arc::new(PolicyRef {
                    name: "p".into(),
                    version: "v".into(),
                }),
                fallback: false,
            },
            shadow: None,
            signals: None,
        }
    }

    fn summary(logins: &[ScoredLogin]) -> Summary {
        let mut summary = Summary::new(0);
        for l in logins {
            summary.add(l);
        }
        summary.finish(Duration::from_secs(1));
        summary
    }

    #[test]
    fn rows_are_counted_per_kind_and_takeovers_within_their_kind() {
        use AttackKind::{Legitimate, Targeted, Travel};
        use Decision::{Allow, Lock, Mfa};
        let m = summary(&[
            login(Some(Legitimate), false, Allow, 0.1),
            login(Some(Legitimate), false, Mfa, 0.6),
            login(Some(Targeted), false, Lock, 1.0),
            login(Some(Targeted), true, Allow, 0.2),
            login(Some(Targeted), true, Mfa, 0.7),
            login(Some(Travel), true, Mfa, 0.9),
        ])
        .metrics;
        let l = m.active.labelled.as_ref().unwrap();
        let rows = |kind| l.kinds[&kind].rows;
        assert_eq!(
            rows(Legitimate),
            DecisionCounts {
                allow: 1,
                mfa: 1,
                lock: 0
            }
        );
        assert_eq!(
            rows(Targeted),
            DecisionCounts {
                allow: 1,
                mfa: 1,
                lock: 1
            }
        );
        assert_eq!(
            l.kinds[&Targeted].takeover,
            DecisionCounts {
                allow: 1,
                mfa: 1,
                lock: 0
            }
        );
        assert_eq!(l.kinds[&Legitimate].takeover.total(), 0);
        let total: u64 = l.kinds.values().map(|k| k.rows.total()).sum();
        assert_eq!(total, m.rows);

        let q = m.active.quality.as_ref().unwrap();
        assert!(
            !q.kinds.contains_key(&Legitimate),
            "legitimate rows are friction, not detection"
        );
        let targeted = q.kinds[&Targeted];
        assert_eq!(targeted.detection_rate, 2.0 / 3.0);
        assert_eq!(targeted.takeover_detection_rate, 1.0 / 2.0);
        assert_eq!(q.kinds[&Travel].takeover_detection_rate, 1.0);
        let at = |threshold: f64| q.sweep.iter().find(|p| p.threshold == threshold).unwrap();
        assert_eq!(at(0.5).kinds[&Targeted].takeover_detection_rate, 1.0 / 2.0);
        assert_eq!(at(0.8).kinds[&Targeted].detection_rate, 1.0 / 3.0);
        assert_eq!(at(0.95).kinds[&Travel].takeover_detection_rate, 0.0);

        let text = summary(&[login(Some(Targeted), true, Mfa, 0.7)]).render();
        assert!(text.contains("targeted"), "{text}");
    }

    #[test]
    fn a_log_without_kinds_reports_none() {
        let m = summary(&[login(None, true, Decision::Mfa, 0.7)]).metrics;
        assert!(m.active.labelled.as_ref().unwrap().kinds.is_empty());
        let q = m.active.quality.as_ref().unwrap();
        assert!(q.kinds.is_empty() && q.sweep.iter().all(|p| p.kinds.is_empty()));
        let json = serde_json::to_value(&m).unwrap();
        assert!(json["active"]["labelled"].get("kinds").is_none(), "{json}");
        assert!(json["active"]["quality"].get("kinds").is_none(), "{json}");
    }
}
