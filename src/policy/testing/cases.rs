//! Case files as written (TOML), read into checked cases; every error names its line.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use rhai::Dynamic;
use serde::Deserialize;
use toml::Spanned;

use super::{Expect, FileError};
use crate::history::Step;
use crate::policy::{CtxValues, PolicySet};

/// A case file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// The policy of cases that name none [default: the file's stem].
    policy: Option<Spanned<String>>,
    /// The ctx every ctx case of the file starts from.
    ctx: Option<Spanned<toml::Table>>,
    #[serde(default)]
    case: Vec<Spanned<CaseSpec>>,
}

/// One `[[case]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    policy: Option<Spanned<String>>,
    ctx: Option<Spanned<toml::Table>>,
    history: Option<Vec<Spanned<toml::Value>>>,
    expect: Spanned<Expect>,
}

/// A checked case.
#[derive(Debug)]
pub(super) struct Case {
    /// Its name, unique in its file.
    pub name: String,
    /// The line of its `[[case]]`.
    pub line: usize,
    /// The policy it runs.
    pub policy: String,
    /// What the policy sees.
    pub input: Input,
    /// The answer expected.
    pub expect: Expect,
}

/// What a case's policy sees.
#[derive(Debug)]
pub(super) enum Input {
    /// A ctx given field by field; fields not given read as `()`.
    Ctx(Arc<CtxValues>),
    /// Steps played through a fresh engine, each with its line; the last one evaluates.
    History(Vec<(usize, Step)>),
}

impl Case {
    /// Engine calls its history makes, repetitions included (none for a ctx case).
    pub(super) fn runs(&self) -> u64 {
        match &self.input {
            Input::Ctx(_) => 0,
            Input::History(steps) => steps
                .iter()
                .map(|(_, step)| u64::from(step.repeat.unwrap_or(1)))
                .sum(),
        }
    }
}

/// Reads the cases of the file at `path` (for names and errors) holding `text`, checking
/// that each names a policy `policies` has.
pub(super) fn parse(path: &Path, text: &str, policies: &PolicySet) -> Result<Vec<Case>, FileError> {
    let file: FileSpec = toml::from_str(text).map_err(|e| FileError {
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim_end().to_owned(),
    })?;
    if file.case.is_empty() {
        return Err(FileError {
            line: None,
            message: "no cases: add a `[[case]]`".into(),
        });
    }
    let mut ctx = CtxValues::default();
    if let Some(table) = &file.ctx {
        apply(table.get_ref(), &mut ctx).map_err(|m| error_at(text, table.span(), m))?;
    }
    let defaults = Defaults {
        policy: file.policy.as_ref(),
        stem: path.file_stem().unwrap_or_default().to_string_lossy(),
        ctx,
    };
    let mut names = HashSet::new();
    let mut cases = Vec::with_capacity(file.case.len());
    for spec in &file.case {
        let case = check(text, spec, &defaults, policies)?;
        if !names.insert(case.name.clone()) {
            let message = format!("case `{}`: the name is used twice", case.name);
            return Err(error_at(text, spec.span(), message));
        }
        cases.push(case);
    }
    Ok(cases)
}

/// What a file gives each of its cases.
struct Defaults<'a> {
    /// The policy of cases that name none, if the file names one.
    policy: Option<&'a Spanned<String>>,
    /// The file's name without extension: the policy when the file names none.
    stem: Cow<'a, str>,
    /// The ctx a ctx case starts from.
    ctx: CtxValues,
}

/// Checks one `[[case]]`.
fn check(
    text: &str,
    spanned: &Spanned<CaseSpec>,
    defaults: &Defaults<'_>,
    policies: &PolicySet,
) -> Result<Case, FileError> {
    let (span, spec) = (spanned.span(), spanned.get_ref());
    if spec.name.trim().is_empty() {
        return Err(error_at(text, span, "a case needs a `name`".into()));
    }
    let error =
        |at: Range<usize>, m: &str| error_at(text, at, format!("case `{}`: {m}", spec.name));
    let (policy, policy_span) = match spec.policy.as_ref().or(defaults.policy) {
        Some(p) => (p.get_ref().clone(), p.span()),
        None => (defaults.stem.to_string(), span.clone()),
    };
    if policies.get(&policy).is_none() {
        let m = format!("no policy `{policy}` in the policies directory");
        return Err(error(policy_span, &m));
    }
    let expect = spec.expect.get_ref();
    expect
        .validate()
        .map_err(|m| error(spec.expect.span(), &m))?;
    let input = match (&spec.ctx, &spec.history) {
        (Some(ctx), None) => {
            let mut values = defaults.ctx.clone();
            apply(ctx.get_ref(), &mut values).map_err(|m| error(ctx.span(), &m))?;
            Input::Ctx(Arc::new(values))
        }
        (None, Some(steps)) => Input::History(history(text, steps).map_err(|e| FileError {
            line: e.line.or(Some(line_of(text, span.start))),
            message: format!("case `{}`: {}", spec.name, e.message),
        })?),
        _ => return Err(error(span, "give either `ctx` or `history`")),
    };
    Ok(Case {
        name: spec.name.clone(),
        line: line_of(text, span.start),
        policy,
        input,
        expect: expect.clone(),
    })
}

/// An error about the text at `span`.
fn error_at(text: &str, span: Range<usize>, message: String) -> FileError {
    FileError {
        line: Some(line_of(text, span.start)),
        message,
    }
}

/// Sets the fields a ctx table gives (`user.failures_15m = 9`, `app = "payroll"`).
fn apply(table: &toml::Table, values: &mut CtxValues) -> Result<(), String> {
    for (group, value) in table {
        match value {
            toml::Value::Table(members) => {
                for (member, value) in members {
                    values.set(group, Some(member), dynamic(value))?;
                }
            }
            value => values.set(group, None, dynamic(value))?,
        }
    }
    Ok(())
}

/// Checked history steps with their lines; the last must evaluate. An error names the
/// step's line when it is about one step.
fn history(text: &str, steps: &[Spanned<toml::Value>]) -> Result<Vec<(usize, Step)>, FileError> {
    let steps = steps
        .iter()
        .enumerate()
        .map(|(index, spanned)| {
            let line = line_of(text, spanned.span().start);
            serde_json::from_value(json(spanned.get_ref()))
                .map_err(|e| e.to_string())
                .and_then(|step: Step| step.check().map(|()| (line, step)))
                .map_err(|e| FileError {
                    line: Some(line),
                    message: format!("history step {index}: {e}"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match steps.last() {
        Some((_, step)) if step.evaluates() => Ok(steps),
        _ => Err(FileError {
            line: None,
            message: "`history` must end with an `evaluate` step: the attempt the case checks"
                .into(),
        }),
    }
}

/// A TOML value as JSON (the history bodies' format); date-times become RFC 3339 strings.
fn json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => Json::from(*f),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(json).collect()),
        toml::Value::Table(table) => {
            Json::Object(table.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        }
    }
}

/// A TOML value as a script sees it; date-times become RFC 3339 strings, as `ctx` has them.
fn dynamic(value: &toml::Value) -> Dynamic {
    match value {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => Dynamic::from_array(items.iter().map(dynamic).collect()),
        toml::Value::Table(table) => Dynamic::from_map(
            table
                .iter()
                .map(|(k, v)| (k.as_str().into(), dynamic(v)))
                .collect(),
        ),
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    before.iter().filter(|&&b| b == b'\n').count() + 1
}
