//! JSON-lines logs: riskgate's own decision log, or plain attempts and events.

use std::io::BufRead;

use serde::Deserialize;

use super::{ReadError, geo_hint};
use crate::decision_log::LogLine;
use crate::model::{Attempt, Decision, Outcome};
use crate::replay::{Label, ReplayEvent, ReplayItem};

/// A plain attempt line: an evaluate body plus what happened and its label.
#[derive(Deserialize)]
struct PlainAttempt {
    #[serde(flatten)]
    attempt: Attempt,
    #[serde(default)]
    attack: Option<bool>,
    #[serde(default)]
    takeover: Option<bool>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    asn: Option<u32>,
}

/// Reads JSON lines: decision-log lines (`"kind"`), events (`"type"`) or plain attempts.
pub(super) fn events(input: Box<dyn BufRead + Send>) -> impl Iterator<Item = ReplayItem> + Send {
    let mut row = 0u64;
    input.lines().filter_map(move |line| {
        row += 1;
        let line = match line {
            Ok(l) if l.trim().is_empty() => return None,
            Ok(l) => l,
            Err(e) => {
                return Some(Err(ReadError::Row {
                    row,
                    message: e.to_string(),
                }));
            }
        };
        Some(jsonl_line(&line, row))
    })
}

fn jsonl_line(line: &str, row: u64) -> ReplayItem {
    let bad = |e: serde_json::Error| ReadError::Row {
        row,
        message: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
    if value.get("kind").is_some() {
        return match serde_json::from_value::<LogLine>(value).map_err(bad)? {
            LogLine::Evaluate {
                at,
                mut request,
                answer,
                ..
            } => {
                request.timestamp = request.timestamp.or(Some(at));
                let logged = answer
                    .get("decision")
                    .and_then(|d| d.as_str())
                    .and_then(Decision::parse);
                let request_id = answer
                    .get("request_id")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned);
                Ok(ReplayEvent::logged(row, request, logged, request_id))
            }
            LogLine::Event { at, mut event, .. } => {
                event.timestamp = event.timestamp.or(Some(at));
                Ok(ReplayEvent::outcome(row, event))
            }
        };
    }
    if value.get("type").is_some() {
        let event: Outcome = serde_json::from_value(value).map_err(bad)?;
        return if event.timestamp.is_some() {
            Ok(ReplayEvent::outcome(row, event))
        } else {
            Err(ReadError::Row {
                row,
                message: "event without `timestamp`".into(),
            })
        };
    }
    let plain: PlainAttempt = serde_json::from_value(value).map_err(bad)?;
    if plain.attempt.timestamp.is_none() {
        return Err(ReadError::Row {
            row,
            message: "attempt without `timestamp`".into(),
        });
    }
    let label = (plain.attack.is_some() || plain.takeover.is_some()).then(|| Label {
        attack: plain.attack.unwrap_or(false) || plain.takeover.unwrap_or(false),
        takeover: plain.takeover.unwrap_or(false),
    });
    let asn = plain.asn.map(|a| a.to_string());
    let geo = geo_hint(
        plain.country.as_deref(),
        plain.city.as_deref(),
        asn.as_deref(),
    );
    Ok(ReplayEvent::login(row, plain.attempt, label, geo))
}
