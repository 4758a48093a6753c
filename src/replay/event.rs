//! What a replay reads and what it produces per row.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::readers::ReadError;
use crate::Millis;
use crate::engine::Enrichment;
use crate::enrich::GeoInfo;
use crate::model::{Attempt, Decision, Outcome, Verdict};
use crate::signals::Signals;

/// What the log says an event really was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Label {
    /// From an attacker (attack IP or account takeover).
    pub attack: bool,
    /// A successful login by an attacker.
    pub takeover: bool,
    /// Who made the login, when the log says (generated corpora do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AttackKind>,
}

impl Label {
    /// The label of a row with these columns, if it has any: a takeover, or a row of an
    /// attacker's kind, is an attack too.
    pub(crate) fn from_columns(
        attack: Option<bool>,
        takeover: Option<bool>,
        kind: Option<AttackKind>,
    ) -> Option<Self> {
        let labelled = attack.is_some() || takeover.is_some() || kind.is_some();
        let takeover = takeover == Some(true);
        labelled.then(|| Label {
            attack: attack == Some(true) || takeover || kind.is_some_and(AttackKind::is_attack),
            takeover,
            kind,
        })
    }
}

/// Who made a login: the user, or one of the attacks `riskgate gen` writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    /// The account's owner.
    Legitimate,
    /// Credential stuffing: leaked pairs tried in bursts from a few addresses.
    Stuffing,
    /// Password spraying: a few common passwords across many accounts from one address.
    Spraying,
    /// A targeted takeover from the victim's country, after a few guesses.
    Targeted,
    /// A takeover from far away shortly after the victim's own login.
    Travel,
}

impl AttackKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [AttackKind; 5] = [
        AttackKind::Legitimate,
        AttackKind::Stuffing,
        AttackKind::Spraying,
        AttackKind::Targeted,
        AttackKind::Travel,
    ];

    /// The name logs and reports use (`travel`).
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Legitimate => "legitimate",
            AttackKind::Stuffing => "stuffing",
            AttackKind::Spraying => "spraying",
            AttackKind::Targeted => "targeted",
            AttackKind::Travel => "travel",
        }
    }

    /// The kind named `name`, in any case.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Made by an attacker.
    pub fn is_attack(self) -> bool {
        self != AttackKind::Legitimate
    }
}

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of a log.
#[derive(Debug, Clone)]
pub(crate) struct ReplayEvent {
    /// 1-based row in the input.
    pub row: u64,
    /// Event time.
    pub at: Millis,
    /// What it is.
    pub kind: EventKind,
}

/// A login attempt, or an outcome reported for an earlier one.
#[derive(Debug, Clone)]
pub(crate) enum EventKind {
    /// A login attempt (with its password result in `password_ok`).
    Login(Box<Login>),
    /// An outcome event, as in the decision log.
    Outcome(Box<Outcome>),
}

/// A login attempt and what the log knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Login {
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
pub(crate) struct ScoredLogin {
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
pub(crate) type ReplayItem = Result<ReplayEvent, ReadError>;

fn millis(t: Option<DateTime<Utc>>) -> Millis {
    t.map_or(0, |t| t.timestamp_millis())
}

impl ReplayEvent {
    /// A login row from a CSV or plain JSONL log.
    pub(crate) fn login(
        row: u64,
        attempt: Attempt,
        label: Option<Label>,
        geo: Option<GeoInfo>,
    ) -> Self {
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

    /// An evaluation from the decision log: what the server decided, and the request id its
    /// later events refer to.
    pub(crate) fn logged(
        row: u64,
        attempt: Attempt,
        logged: Option<Decision>,
        request_id: Option<String>,
    ) -> Self {
        let mut event = Self::login(row, attempt, None, None);
        if let EventKind::Login(login) = &mut event.kind {
            login.logged = logged;
            login.request_id = request_id;
        }
        event
    }

    /// An outcome event.
    pub(crate) fn outcome(row: u64, outcome: Outcome) -> Self {
        Self {
            row,
            at: millis(outcome.timestamp),
            kind: EventKind::Outcome(Box::new(outcome)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_reads_back_from_its_name_and_serializes_as_it() {
        for kind in AttackKind::ALL {
            assert_eq!(AttackKind::parse(kind.name()), Some(kind));
            assert_eq!(AttackKind::parse(&kind.name().to_uppercase()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        assert_eq!(AttackKind::parse("phishing"), None);
    }

    #[test]
    fn a_row_is_labelled_by_any_label_column_and_an_attackers_kind_is_an_attack() {
        assert_eq!(Label::from_columns(None, None, None), None);
        let label = |a, t, k| Label::from_columns(a, t, k).map(|l| (l.attack, l.takeover));
        assert_eq!(label(Some(false), None, None), Some((false, false)));
        assert_eq!(label(None, Some(true), None), Some((true, true)));
        assert_eq!(
            label(None, None, Some(AttackKind::Spraying)),
            Some((true, false))
        );
        assert_eq!(
            label(Some(false), None, Some(AttackKind::Legitimate)),
            Some((false, false))
        );
    }
}
