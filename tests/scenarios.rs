//! Behaviour written as data: every `tests/scenarios/*.json` story runs in process against a
//! fresh engine (shipped policies, the test GeoIP databases), with the event time of each step
//! passed in, and every answer is matched against the step's `expect`. The format is described
//! in `tests/scenarios/README.md`.
//!
//! All stories run and all mismatches are reported together (file, step index and name,
//! repetition, field path, expected and got) before the test fails.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::redis::RedisServer;
use riskgate::config::Settings;
use riskgate::engine::Engine;
use riskgate::history::{self, Player};
use serde::{Deserialize, Deserializer, de};
use serde_json::{Value, json};

/// One story file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Story {
    /// One sentence: what the story shows.
    story: String,
    /// A policy name in the shipped policies directory.
    policy: Option<String>,
    /// Overrides of the service settings (`riskgate.toml` keys, e.g. `fail_safe`).
    settings: Option<Value>,
    /// Entries appended to the shipped lists (`{"blocklist": ["175.16.199.0/24"]}`).
    #[serde(default)]
    lists: BTreeMap<String, Vec<String>>,
    steps: Vec<Step>,
}

/// One step: a history step (`riskgate::history`, which plays it) and what its answers
/// must match. `expect` is required, and `null` is a value here (an export of an unknown
/// user): a missing key is `None`, `"expect": null` is `Some(Null)`.
#[derive(Debug)]
struct Step {
    step: history::Step,
    expect: Option<Value>,
    expect_each: Option<Value>,
}

impl<'de> Deserialize<'de> for Step {
    /// The history step's keys are checked by its own deserializer (unknown keys refused);
    /// the expectations are taken out first.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::deserialize(d)?;
        let expect = fields.remove("expect");
        let expect_each = fields.remove("expect_each");
        let step = serde_json::from_value(Value::Object(fields)).map_err(de::Error::custom)?;
        Ok(Self {
            step,
            expect,
            expect_each,
        })
    }
}

impl Step {
    /// Checks the history step, and that the expectations fit it.
    fn check(&self) -> Result<(), String> {
        self.step.check()?;
        if self.expect_each.is_some() && self.step.repeat.unwrap_or(1) < 2 {
            return Err("`expect_each` needs `repeat` of at least 2".into());
        }
        if self.expect.is_none() {
            return Err("every step needs an `expect`".into());
        }
        Ok(())
    }
}

/// The runner's view of one story: the player of its steps on the story's engine.
struct Run<'a> {
    file: &'a str,
    player: Player<'a>,
    /// Runs the engine's calls, as the server's runtime would.
    runtime: tokio::runtime::Runtime,
    failures: &'a mut Vec<String>,
}

impl Run<'_> {
    fn step(&mut self, index: usize, step: &Step) -> Result<(), String> {
        step.check()?;
        let label = step.step.label(index);
        let answers = self.runtime.block_on(self.player.play(&step.step))?;
        let repeat = answers.len();
        for (i, answer) in answers.iter().enumerate() {
            let (label, expected) = match repeat {
                1 => (label.clone(), step.expect.as_ref()),
                _ if i + 1 == repeat => (
                    format!("{label} [i={i}, last of {repeat}]"),
                    step.expect.as_ref(),
                ),
                _ => (
                    format!("{label} [i={i} of {repeat}]"),
                    step.expect_each.as_ref(),
                ),
            };
            let got = answer.to_json();
            match expected {
                Some(expected) => self.compare(&label, expected, &got),
                None => self.trace(&label, &got),
            }
        }
        Ok(())
    }

    /// Prints an answer when `SCENARIO_TRACE` is set, to help write stories.
    fn trace(&self, label: &str, got: &Value) {
        if std::env::var_os("SCENARIO_TRACE").is_some() {
            eprintln!("{} {label}: {got}", self.file);
        }
    }

    fn compare(&mut self, label: &str, expected: &Value, got: &Value) {
        self.trace(label, got);
        let mut mismatches = Vec::new();
        matches(expected, Some(got), "", &mut mismatches);
        if mismatches.is_empty() {
            return;
        }
        // The answer's headline, so a wrong expectation and a wrong decision read apart.
        let headline = match got.get("decision") {
            Some(decision) => format!(
                "\n    answer: decision {decision}, score {}, reasons {}, lock_seconds {}",
                got["score"],
                got["reasons"],
                got.get("lock_seconds").unwrap_or(&Value::Null)
            ),
            None => {
                // Exports hold whole profiles; the mismatch lines above name the fields.
                let text = got.to_string();
                let cut = text.char_indices().nth(300).map_or(text.len(), |(i, _)| i);
                let more = if cut < text.len() { "…" } else { "" };
                format!("\n    answer: {}{more}", &text[..cut])
            }
        };
        self.failures.push(format!(
            "{}: {label}:\n    {}{headline}",
            self.file,
            mismatches.join("\n    ")
        ));
    }
}

/// Partial match of `got` against `expected`, pushing one line per mismatch:
/// - objects: every key given must match (others are ignored); a missing key reads as null;
/// - an object whose keys all start with `$` is a set of checks: `$gt`, `$ge`, `$lt`, `$le`
///   (numbers) and `$contains` (an array holding each given element);
/// - arrays: same length, elements matched in order by these rules;
/// - numbers: as f64, within 1e-6 relative; everything else: equal.
fn matches(expected: &Value, got: Option<&Value>, path: &str, out: &mut Vec<String>) {
    let null = Value::Null;
    let actual = got.unwrap_or(&null);
    let at = if path.is_empty() { "(answer)" } else { path };
    match expected {
        Value::Object(checks)
            if !checks.is_empty() && checks.keys().all(|k| k.starts_with('$')) =>
        {
            for (op, operand) in checks {
                if let Err(why) = check_operator(op, operand, actual) {
                    out.push(format!(
                        "{at}: expected {op} {operand}, got {actual} ({why})"
                    ));
                }
            }
        }
        Value::Object(fields) => {
            let Some(object) = actual.as_object() else {
                out.push(format!("{at}: expected an object, got {actual}"));
                return;
            };
            for (key, value) in fields {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                matches(value, object.get(key), &path, out);
            }
        }
        Value::Array(items) => match actual.as_array() {
            Some(array) if array.len() == items.len() => {
                for (i, (e, g)) in items.iter().zip(array).enumerate() {
                    matches(e, Some(g), &format!("{path}[{i}]"), out);
                }
            }
            _ => out.push(format!("{at}: expected {expected}, got {actual}")),
        },
        Value::Number(e) => {
            let ok = actual
                .as_f64()
                .is_some_and(|g| close(e.as_f64().unwrap_or(f64::NAN), g));
            if !ok {
                out.push(format!("{at}: expected {expected}, got {actual}"));
            }
        }
        _ => {
            if expected != actual {
                out.push(format!("{at}: expected {expected}, got {actual}"));
            }
        }
    }
}

fn close(expected: f64, got: f64) -> bool {
    (expected - got).abs() <= 1e-6 * expected.abs().max(1.0)
}

fn check_operator(op: &str, operand: &Value, actual: &Value) -> Result<(), String> {
    let compare = |holds: fn(f64, f64) -> bool| match (actual.as_f64(), operand.as_f64()) {
        (Some(a), Some(b)) if holds(a, b) => Ok(()),
        (Some(_), Some(_)) => Err("false".to_owned()),
        _ => Err("not a number".to_owned()),
    };
    match op {
        "$gt" => compare(|a, b| a > b),
        "$ge" => compare(|a, b| a >= b),
        "$lt" => compare(|a, b| a < b),
        "$le" => compare(|a, b| a <= b),
        "$contains" => {
            let (Some(wanted), Some(array)) = (operand.as_array(), actual.as_array()) else {
                return Err("`$contains` takes an array and checks an array".into());
            };
            let missing: Vec<&Value> = wanted
                .iter()
                .filter(|w| {
                    !array.iter().any(|a| {
                        let mut no = Vec::new();
                        matches(w, Some(a), "", &mut no);
                        no.is_empty()
                    })
                })
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {}", json!(missing)))
            }
        }
        other => Err(format!("unknown check `{other}`")),
    }
}

/// The matcher accepts what it should and rejects what it should: a matcher that accepted
/// everything would make every story pass.
fn matcher_self_check() {
    let got = json!({"decision": "mfa", "score": 0.9, "reasons": ["a", "b"], "n": 3});
    let ok = |expected: Value| {
        let mut out = Vec::new();
        matches(&expected, Some(&got), "", &mut out);
        out.is_empty()
    };
    assert!(ok(
        json!({"decision": "mfa", "score": 0.9000000001, "lock_seconds": null})
    ));
    assert!(ok(
        json!({"reasons": {"$contains": ["b"]}, "n": {"$gt": 2, "$le": 3}})
    ));
    for wrong in [
        json!({"decision": "allow"}),
        json!({"score": 0.91}),
        json!({"reasons": ["a"]}),
        json!({"reasons": ["b", "a"]}),
        json!({"reasons": {"$contains": ["c"]}}),
        json!({"n": {"$gt": 3}}),
        json!({"n": {"$between": 3}}),
        json!({"missing": 1}),
        json!({"decision": null}),
    ] {
        assert!(!ok(wrong.clone()), "the matcher accepted {wrong}");
    }
}

/// A copy of the shipped policies directory with the story's list entries appended.
fn policies_with(lists: &BTreeMap<String, Vec<String>>, dir: &Path) -> Result<PathBuf, String> {
    let shipped = common::shipped_policies();
    if lists.is_empty() {
        return Ok(shipped);
    }
    let copy = dir.join("policies");
    std::fs::create_dir_all(copy.join("lists")).map_err(|e| e.to_string())?;
    for sub in ["", "lists"] {
        for entry in std::fs::read_dir(shipped.join(sub)).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_file() {
                let target = copy.join(sub).join(path.file_name().unwrap());
                std::fs::copy(&path, target).map_err(|e| e.to_string())?;
            }
        }
    }
    for (name, entries) in lists {
        let path = copy.join("lists").join(format!("{name}.txt"));
        // Only lists the shipped policies know: a misspelt name would silently match nothing.
        let mut text = std::fs::read_to_string(&path)
            .map_err(|_| format!("`lists`: no shipped list named `{name}`"))?;
        text.push('\n');
        text.push_str(&entries.join("\n"));
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
    }
    Ok(copy)
}

async fn build_engine(
    story: &Story,
    backend: &Backend<'_>,
    geoip: &(PathBuf, PathBuf),
    dir: &Path,
) -> Result<Engine, String> {
    let overrides: Settings = match &story.settings {
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|e| format!("`settings`: {e}"))?
        }
        None => Settings::default(),
    };
    if overrides.policies_dir.is_some()
        || overrides.geoip_city.is_some()
        || overrides.geoip_asn.is_some()
        || overrides.policy.is_some()
    {
        return Err(
            "`settings`: the policies, lists and GeoIP files are the runner's; \
                    name the policy with the top-level `policy`"
                .into(),
        );
    }
    let (city, asn) = geoip;
    let settings = Settings {
        policy: story.policy.clone(),
        ..overrides
    }
    .or(Settings {
        policies_dir: Some(policies_with(&story.lists, dir)?),
        geoip_city: Some(city.display().to_string()),
        geoip_asn: Some(asn.display().to_string()),
        data_dir: Some(dir.join("data")),
        state_backend: Some(backend.name.into()),
        redis_url: backend.redis.map(RedisServer::url),
        // Stories share one Redis; each runs under its own prefix.
        redis_prefix: Some(format!("{}:", uuid::Uuid::new_v4().simple())),
        ..Settings::default()
    });
    let config = settings.resolve().map_err(|e| e.to_string())?;
    riskgate::service::build_engine(&config)
        .await
        .map_err(|e| e.to_string())
}

/// A state backend stories run on.
struct Backend<'a> {
    name: &'static str,
    /// The server of the `redis` backend.
    redis: Option<&'a RedisServer>,
}

/// Runs one story file; format errors end it, mismatches are collected and it goes on.
fn run_file(
    path: &Path,
    geoip: &(PathBuf, PathBuf),
    backends: &[Backend<'_>],
    failures: &mut Vec<String>,
) {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let error = |failures: &mut Vec<String>, what: String| {
        failures.push(format!("{file}: {what}"));
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return error(failures, e.to_string()),
    };
    let story: Story = match serde_json::from_str(&text) {
        Ok(story) => story,
        Err(e) => return error(failures, format!("not a story: {e}")),
    };
    if story.story.trim().is_empty() {
        return error(failures, "`story` must say what the story shows".into());
    }
    // Each story must decide something, or it could pass without looking at the policy.
    let decides = story.steps.iter().any(|s| {
        s.step.evaluates()
            && [&s.expect, &s.expect_each]
                .into_iter()
                .flatten()
                .any(|e| e.get("decision").is_some())
    });
    if !decides {
        return error(failures, "no evaluate step expects a `decision`".into());
    }
    let mut names = std::collections::HashSet::new();
    if let Some(name) = story
        .steps
        .iter()
        .filter_map(|s| s.step.name.as_ref())
        .find(|n| !names.insert(*n))
    {
        return error(failures, format!("step name `{name}` is used twice"));
    }
    for backend in backends {
        run_story(
            &story,
            &format!("{file} [{}]", backend.name),
            backend,
            geoip,
            failures,
        );
    }
}

/// Runs a checked story on one backend.
fn run_story(
    story: &Story,
    file: &str,
    backend: &Backend<'_>,
    geoip: &(PathBuf, PathBuf),
    failures: &mut Vec<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = match runtime.block_on(build_engine(story, backend, geoip, dir.path())) {
        Ok(engine) => engine,
        Err(e) => return failures.push(format!("{file}: engine: {e}")),
    };
    let mut run = Run {
        file,
        player: Player::new(&engine),
        runtime,
        failures,
    };
    for (index, step) in story.steps.iter().enumerate() {
        if let Err(e) = run.step(index, step) {
            let label = step.step.label(index);
            run.failures
                .push(format!("{file}: {label}: {e} (the story stops here)"));
            return;
        }
    }
}

#[test]
fn scenario_stories() {
    matcher_self_check();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no stories in {}", dir.display());

    let geo_dir = tempfile::tempdir().unwrap();
    let geoip = common::write_geoip(geo_dir.path());
    // Every story runs on each state backend: each must tell the same story.
    let redis = RedisServer::start();
    let backends = [
        Backend {
            name: "memory",
            redis: None,
        },
        Backend {
            name: "embedded",
            redis: None,
        },
        Backend {
            name: "redis",
            redis: Some(&redis),
        },
    ];
    let mut failures = Vec::new();
    for path in &files {
        run_file(path, &geoip, &backends, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} failed checks in {} story files:\n\n{}\n",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
