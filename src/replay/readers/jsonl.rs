//! JSON-lines logs: riskgate's own decision log, or plain attempts and events.

use std::io::BufRead;

use serde::Deserialize;

use super::{ReadError, geo_hint};
use crate::decision_log::LogLine;
use crate::model::{Attempt, Decision, Outcome};
use crate::replay::{AttackKind, Label, ReplayEvent, ReplayItem};

/// A plain attempt line: an evaluate body plus what happened and its label.
#[derive(Deserialize)]
struct PlainAttempt {
    #[serde(flatten)]
    attempt: Attempt,
    #[serde(default)]
    attack: Option<bool>,
    #[serde(default)]
    takeover: Option<bool>,
    /// Not `kind`: that key marks a decision-log line.
    #[serde(default)]
    attack_kind: Option<AttackKind>,
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
    let label = Label::from_columns(plain.attack, plain.takeover, plain.attack_kind);
    let asn = plain.asn.map(|a| a.to_string());
    let geo = geo_hint(
        plain.country.as_deref(),
        plain.city.as_deref(),
        asn.as_deref(),
    );
    Ok(ReplayEvent::login(row, plain.attempt, label, geo))
}

#[cfg(test)]
mod tests {
    mod props {
        use std::io::Cursor;
        use std::net::IpAddr;

        use chrono::{DateTime, Utc};
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::super::events;
        use crate::model::{Attempt, Decision, Outcome, OutcomeKind};
        use crate::replay::readers::ReadError;
        use crate::replay::readers::tests::props::{label, mutated, place};
        use crate::replay::readers::time::tests::props::instant;
        use crate::replay::{AttackKind, EventKind, ReplayEvent, ReplayItem};

        fn read(text: impl Into<Vec<u8>>) -> Vec<ReplayItem> {
            events(Box::new(Cursor::new(text.into()))).collect()
        }

        /// A device id: blank ones are read as none.
        fn device_id() -> impl Strategy<Value = Option<String>> {
            prop::option::of(any::<String>().prop_filter("blank", |d| !d.trim().is_empty()))
        }

        fn attempt() -> impl Strategy<Value = Attempt> {
            let attributes = prop::collection::btree_map("[a-z_]{1,8}", any::<i64>(), 0..3);
            (
                (
                    any::<String>(),
                    any::<IpAddr>(),
                    prop::option::of(instant()),
                ),
                (prop::option::of(any::<String>()), device_id()),
                (
                    prop::option::of(any::<String>()),
                    prop::option::of(any::<bool>()),
                ),
                attributes,
            )
                .prop_map(
                    |(
                        (user_id, ip, timestamp),
                        (user_agent, device_id),
                        (app, password_ok),
                        attributes,
                    )| {
                        let mut attempt = Attempt::new(user_id, ip);
                        attempt.timestamp = timestamp;
                        attempt.user_agent = user_agent;
                        attempt.device_id = device_id;
                        attempt.app = app;
                        attempt.password_ok = password_ok;
                        attempt.attributes =
                            attributes.into_iter().map(|(k, v)| (k, v.into())).collect();
                        attempt
                    },
                )
        }

        fn outcome() -> impl Strategy<Value = Outcome> {
            let kind = prop::sample::select(vec![
                OutcomeKind::LoginFailed,
                OutcomeKind::LoginSucceeded,
                OutcomeKind::MfaPassed,
                OutcomeKind::MfaFailed,
                OutcomeKind::DeviceTrusted,
            ]);
            (
                (
                    kind,
                    any::<String>(),
                    prop::option::of(any::<IpAddr>()),
                    device_id(),
                ),
                (
                    prop::option::of(any::<String>()),
                    prop::option::of(any::<String>()),
                    instant(),
                ),
            )
                .prop_map(
                    |((kind, user_id, ip, device_id), (user_agent, request_id, at))| Outcome {
                        kind,
                        user_id,
                        ip,
                        device_id,
                        user_agent,
                        request_id,
                        timestamp: Some(at),
                    },
                )
        }

        /// One line of a log that is read.
        #[derive(Debug, Clone)]
        enum Line {
            /// A plain attempt (with a timestamp), its label and its place.
            Attempt {
                attempt: Attempt,
                attack: Option<bool>,
                takeover: Option<bool>,
                kind: Option<AttackKind>,
                country: Option<String>,
                city: Option<String>,
                asn: Option<u32>,
            },
            /// An outcome event.
            Outcome(Outcome),
            /// A decision-log evaluation; the request's time falls back to `at`.
            Logged {
                at: DateTime<Utc>,
                request: Attempt,
                decision: Option<Decision>,
                request_id: Option<String>,
            },
        }

        fn line() -> impl Strategy<Value = Line> {
            let decision =
                prop::sample::select(vec![Decision::Allow, Decision::Mfa, Decision::Lock]);
            let timed = (attempt(), instant()).prop_map(|(mut attempt, at)| {
                attempt.timestamp = Some(at);
                attempt
            });
            prop_oneof![
                (
                    timed,
                    (
                        prop::option::of(any::<bool>()),
                        prop::option::of(any::<bool>()),
                        prop::option::of(prop::sample::select(AttackKind::ALL.to_vec())),
                    ),
                    (
                        prop::option::of(any::<String>()),
                        prop::option::of(any::<String>())
                    ),
                    prop::option::of(any::<u32>()),
                )
                    .prop_map(
                        |(attempt, (attack, takeover, kind), (country, city), asn)| Line::Attempt {
                            attempt,
                            attack,
                            takeover,
                            kind,
                            country,
                            city,
                            asn,
                        }
                    ),
                outcome().prop_map(Line::Outcome),
                (
                    instant(),
                    attempt(),
                    prop::option::of(decision),
                    prop::option::of(any::<String>())
                )
                    .prop_map(|(at, request, decision, request_id)| Line::Logged {
                        at,
                        request,
                        decision,
                        request_id,
                    }),
            ]
        }

        impl Line {
            fn json(&self) -> Value {
                match self {
                    Line::Attempt {
                        attempt,
                        attack,
                        takeover,
                        kind,
                        country,
                        city,
                        asn,
                    } => {
                        let mut line = json!(attempt);
                        line["attack"] = json!(attack);
                        line["takeover"] = json!(takeover);
                        line["attack_kind"] = json!(kind);
                        line["country"] = json!(country);
                        line["city"] = json!(city);
                        line["asn"] = json!(asn);
                        line
                    }
                    Line::Outcome(outcome) => json!(outcome),
                    Line::Logged {
                        at,
                        request,
                        decision,
                        request_id,
                    } => json!({
                        "kind": "evaluate",
                        "at": at,
                        "request": request,
                        "answer": {"decision": decision, "request_id": request_id, "score": 0.5},
                        "latency_us": 42,
                    }),
                }
            }

            /// Checks that `event`, read from row `row`, is this line.
            fn check(&self, event: ReplayEvent, row: u64) -> Result<(), TestCaseError> {
                prop_assert_eq!(event.row, row);
                match (self, event.kind) {
                    (
                        Line::Attempt {
                            attempt,
                            attack,
                            takeover,
                            kind,
                            country,
                            city,
                            asn,
                        },
                        EventKind::Login(login),
                    ) => {
                        prop_assert_eq!(json!(login.attempt), json!(attempt));
                        prop_assert_eq!(login.label, label(*attack, *takeover, *kind));
                        prop_assert_eq!(
                            login.geo,
                            place(country.as_deref(), city.as_deref(), *asn)
                        );
                        prop_assert_eq!(event.at, attempt.timestamp.unwrap().timestamp_millis());
                    }
                    (Line::Outcome(outcome), EventKind::Outcome(read)) => {
                        prop_assert_eq!(json!(read), json!(outcome));
                        prop_assert_eq!(event.at, outcome.timestamp.unwrap().timestamp_millis());
                    }
                    (
                        Line::Logged {
                            at,
                            request,
                            decision,
                            request_id,
                        },
                        EventKind::Login(login),
                    ) => {
                        let mut expected = request.clone();
                        expected.timestamp = request.timestamp.or(Some(*at));
                        prop_assert_eq!(json!(login.attempt), json!(expected));
                        prop_assert_eq!(login.logged, *decision);
                        prop_assert_eq!(&login.request_id, request_id);
                        prop_assert_eq!(event.at, expected.timestamp.unwrap().timestamp_millis());
                    }
                    (line, kind) => prop_assert!(false, "{line:?} read as {kind:?}"),
                }
                Ok(())
            }
        }

        /// Names the readers look for, to build JSON that gets past the first checks.
        const KEYS: &str = "kind type evaluate event login_failed user_id ip timestamp at request \
                            answer decision latency_us attack asn device_id";

        /// Any JSON, with object keys and strings often the ones the reader looks for.
        fn json_value() -> impl Strategy<Value = Value> {
            let text = prop_oneof![
                any::<String>(),
                prop::sample::select(KEYS.split_whitespace().collect::<Vec<_>>())
                    .prop_map(str::to_owned)
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                text.clone().prop_map(Value::from),
                instant().prop_map(|t| json!(t)),
                any::<IpAddr>().prop_map(|ip| json!(ip)),
            ];
            leaf.prop_recursive(3, 32, 8, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((text.clone(), inner), 0..8)
                        .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        /// A valid line with one field set to any JSON, or removed.
        fn damaged_line() -> impl Strategy<Value = String> {
            (
                line(),
                any::<prop::sample::Index>(),
                prop::option::of(json_value()),
            )
                .prop_map(|(line, field, value)| {
                    let mut line = line.json();
                    let fields = line.as_object_mut().unwrap();
                    let key = fields
                        .keys()
                        .nth(field.index(fields.len()))
                        .unwrap()
                        .clone();
                    match value {
                        Some(value) => fields.insert(key, value),
                        None => fields.remove(&key),
                    };
                    line.to_string()
                })
        }

        /// Noise, lines of any text or any JSON, or valid lines damaged.
        fn input() -> impl Strategy<Value = Vec<u8>> {
            let lines = |lines: Vec<String>| lines.join("\n").into_bytes();
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                prop::collection::vec(any::<String>(), 0..4).prop_map(lines),
                prop::collection::vec(json_value().prop_map(|v| v.to_string()), 1..4)
                    .prop_map(lines),
                prop::collection::vec(damaged_line(), 1..4).prop_map(lines),
                mutated(line().prop_map(|l| l.json().to_string())).prop_map(String::into_bytes),
            ]
        }

        proptest! {
            /// Rows are line numbers: each line gives at most one item, in order.
            #[test]
            fn any_input_gives_at_most_one_item_per_line_without_panicking(input in input()) {
                let lines = input.split(|&b| b == b'\n').count() as u64;
                let mut last = 0;
                for item in read(input) {
                    let row = match item {
                        Ok(event) => event.row,
                        Err(ReadError::Row { row, .. }) => row,
                        Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                    };
                    prop_assert!(last < row && row <= lines, "row {} after {}", row, last);
                    last = row;
                }
            }

            /// Blank lines are skipped but counted, so rows are line numbers.
            #[test]
            fn generated_lines_read_back_with_every_field(
                lines in prop::collection::vec(prop::option::of(line()), 1..8),
            ) {
                let text: Vec<String> = lines
                    .iter()
                    .map(|line| line.as_ref().map_or(" ".to_owned(), |l| l.json().to_string()))
                    .collect();
                let read = read(text.join("\n"));
                let written: Vec<(u64, &Line)> = (1..)
                    .zip(&lines)
                    .filter_map(|(row, line)| Some((row, line.as_ref()?)))
                    .collect();
                prop_assert_eq!(read.len(), written.len());
                for ((row, line), event) in written.into_iter().zip(read) {
                    line.check(event.unwrap(), row)?;
                }
            }

            #[test]
            fn an_attempt_without_a_time_is_refused(mut attempt in attempt()) {
                attempt.timestamp = None;
                let read = read(json!(attempt).to_string());
                let refused = matches!(read.as_slice(), [Err(ReadError::Row { row: 1, .. })]);
                prop_assert!(refused, "{:?}", read);
            }
        }
    }
}
