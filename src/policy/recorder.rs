//! A `ctx` of plain values that notes what a policy reads.
//!
//! Policy tests run policies on one (a case's partial ctx, or the signals an engine computed
//! for a case's history), so a failing case can show the fields the policy looked at. It is
//! a type of its own in a runtime of its own ([`Recorder`]): the engine's `ctx` (`context`)
//! records nothing and costs nothing more.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rhai::{Dynamic, EvalAltResult};

use super::context::{APP, FIELDS, Field};
use super::{Limits, Policy, PolicyError, PolicyOutput, Runtime};
use crate::signals::Signals;

/// A field a policy read, and the value it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// `group.member` (`user.failures_15m`), or `app`.
    pub field: String,
    /// The value, as Rhai shows it (`9`, `"GB"`, `["hosting"]`, `()` when absent).
    pub value: String,
}

/// A ctx as plain values by field path (`user.failures_15m`, `app`); a field without a
/// value reads as `()`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CtxValues(BTreeMap<String, Dynamic>);

impl CtxValues {
    /// Every field of `signals`, with the value the engine's `ctx` shows for it.
    pub(crate) fn of(signals: &Signals) -> Self {
        let mut values: BTreeMap<String, Dynamic> = FIELDS
            .iter()
            .map(|f| (path(f.group, f.member), (f.read)(signals)))
            .collect();
        values.insert(APP.to_owned(), signals.app.clone().into());
        Self(values)
    }

    /// Sets `group.member` (or `app`, with no member) to `value`. Fails for a field `ctx`
    /// does not have, or a value of another type than the field's (an integer is taken for
    /// a number), so a misspelt or mistyped field cannot make a case pass unnoticed.
    pub(crate) fn set(
        &mut self,
        group: &str,
        member: Option<&str>,
        value: Dynamic,
    ) -> Result<(), String> {
        let (path, expected) = match member {
            None if group == APP => (APP.to_owned(), Dynamic::from(String::new())),
            None => return Err(format!("`{group}` is not a ctx field: expected a table")),
            Some(member) => {
                let field = field(group, member).ok_or_else(|| {
                    if FIELDS.iter().any(|f| f.group == group) {
                        format!("`ctx.{group}` has no field `{member}`")
                    } else {
                        format!("`ctx` has no group `{group}`")
                    }
                })?;
                (path(group, member), (field.read)(&Signals::default()))
            }
        };
        let value = match (expected.is_float(), value.as_int()) {
            (true, Ok(int)) => Dynamic::from(int as f64),
            _ => value,
        };
        // Optional fields default to `()`: any value stands for what they hold.
        if !expected.is_unit() && expected.type_name() != value.type_name() {
            return Err(format!(
                "`ctx.{path}` is {}, not {}",
                kind(&expected),
                kind(&value)
            ));
        }
        self.0.insert(path, value);
        Ok(())
    }

    fn get(&self, path: &str) -> Dynamic {
        self.0.get(path).cloned().unwrap_or(Dynamic::UNIT)
    }
}

fn path(group: &str, member: &str) -> String {
    format!("{group}.{member}")
}

fn field(group: &str, member: &str) -> Option<&'static Field> {
    FIELDS
        .iter()
        .find(|f| f.group == group && f.member == member)
}

/// A value's type as a case author knows it.
fn kind(value: &Dynamic) -> &'static str {
    if value.is_int() {
        "an integer"
    } else if value.is_float() {
        "a number"
    } else if value.is_bool() {
        "a boolean"
    } else if value.is_string() {
        "a string"
    } else if value.is_array() {
        "an array"
    } else if value.is_map() {
        "a table"
    } else {
        "something else"
    }
}

/// `ctx` in a recorded run: the values and the reads so far.
#[derive(Debug, Clone)]
struct RecordedCtx {
    values: Arc<CtxValues>,
    reads: Arc<Mutex<Vec<Read>>>,
}

impl RecordedCtx {
    /// Reads `path`, noting it the first time.
    fn read(&self, path: String) -> Dynamic {
        let value = self.values.get(&path);
        let mut reads = self.reads.lock();
        if !reads.iter().any(|r| r.field == path) {
            reads.push(Read {
                field: path,
                value: format!("{value:?}"),
            });
        }
        value
    }
}

/// `ctx.<group>` in a recorded run.
#[derive(Debug, Clone)]
struct RecordedGroup {
    ctx: RecordedCtx,
    group: &'static str,
}

/// A runtime that runs policies on [`CtxValues`], recording what they read.
#[derive(Debug)]
pub(crate) struct Recorder {
    runtime: Runtime,
}

impl Recorder {
    /// A recorder whose runs have the given limits.
    pub(crate) fn new(limits: Limits) -> Self {
        let mut runtime = Runtime::new(limits);
        let engine = runtime.engine_mut();
        engine.register_type_with_name::<RecordedCtx>("Ctx");
        engine.register_type_with_name::<RecordedGroup>("CtxGroup");
        // Property reads (`ctx.user`, `user.failures_15m`) fall back to string indexers.
        engine.register_indexer_get(
            |ctx: &mut RecordedCtx, key: &str| -> Result<Dynamic, Box<EvalAltResult>> {
                if key == APP {
                    return Ok(ctx.read(APP.to_owned()));
                }
                let field = FIELDS
                    .iter()
                    .find(|f| f.group == key)
                    .ok_or_else(|| format!("`ctx` has no group `{key}`"))?;
                Ok(Dynamic::from(RecordedGroup {
                    ctx: ctx.clone(),
                    group: field.group,
                }))
            },
        );
        engine.register_indexer_get(
            |g: &mut RecordedGroup, key: &str| -> Result<Dynamic, Box<EvalAltResult>> {
                let field = field(g.group, key)
                    .ok_or_else(|| format!("`ctx.{}` has no field `{key}`", g.group))?;
                Ok(g.ctx.read(path(field.group, field.member)))
            },
        );
        Self { runtime }
    }

    /// Runs `policy` on `values`; returns its result and the fields it read, each once, in
    /// the order first read.
    pub(crate) fn run(
        &self,
        policy: &Policy,
        values: Arc<CtxValues>,
    ) -> (Result<PolicyOutput, PolicyError>, Vec<Read>) {
        let ctx = RecordedCtx {
            values,
            reads: Arc::default(),
        };
        let result = self.runtime.call(policy, (ctx.clone(),));
        let reads = std::mem::take(&mut *ctx.reads.lock());
        (result, reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;

    const POLICY: &str = r#"
        fn evaluate(ctx) {
            let user = ctx.user;
            if user.failures_15m >= 10 || user.failures_15m == () {
                return #{ decision: "lock", reasons: [`${ctx.geo.country}`, `${ctx.app}`] };
            }
            #{ decision: "allow", score: ctx.rba.score }
        }
    "#;

    fn run(values: CtxValues) -> (Result<PolicyOutput, PolicyError>, Vec<Read>) {
        let recorder = Recorder::new(Limits::default());
        let policy = recorder.runtime.compile("t", "t.rhai", POLICY).unwrap();
        recorder.run(&policy, Arc::new(values))
    }

    fn fields(reads: &[Read]) -> Vec<String> {
        reads
            .iter()
            .map(|r| format!("{} = {}", r.field, r.value))
            .collect()
    }

    #[test]
    fn a_partial_ctx_reads_missing_fields_as_unit_and_each_read_is_noted_once() {
        let mut values = CtxValues::default();
        values
            .set("user", Some("failures_15m"), Dynamic::from(9_i64))
            .unwrap();
        values
            .set("rba", Some("score"), Dynamic::from(1_i64))
            .unwrap();
        let (out, reads) = run(values);
        let out = out.unwrap();
        assert_eq!((out.decision, out.score), (Decision::Allow, 1.0));
        assert_eq!(fields(&reads), ["user.failures_15m = 9", "rba.score = 1.0"]);

        let (out, reads) = run(CtxValues::default());
        assert_eq!(out.unwrap().reasons, ["", ""]);
        assert_eq!(
            fields(&reads),
            ["user.failures_15m = ()", "geo.country = ()", "app = ()"]
        );
    }

    #[test]
    fn the_full_ctx_of_signals_reads_as_the_engines_ctx_does() {
        let mut signals = Signals::default();
        signals.user.failures_15m = 12;
        signals.geo.location.country = Some("DE".into());
        signals.app = "payroll".into();
        let (out, reads) = run(CtxValues::of(&signals));
        assert_eq!(out.unwrap().reasons, ["DE", "payroll"]);
        assert_eq!(
            fields(&reads),
            [
                "user.failures_15m = 12",
                "geo.country = \"DE\"",
                "app = \"payroll\""
            ]
        );
    }

    #[test]
    fn unknown_fields_and_values_of_the_wrong_type_are_refused() {
        let mut values = CtxValues::default();
        let err = |r: Result<(), String>| r.unwrap_err();
        assert!(err(values.set("user", Some("failures_15min"), 1_i64.into())).contains("no field"));
        assert!(err(values.set("usr", Some("failures_15m"), 1_i64.into())).contains("no group"));
        assert!(err(values.set("user", None, 1_i64.into())).contains("expected a table"));
        assert!(
            err(values.set("user", Some("locked"), "yes".into()))
                .contains("`ctx.user.locked` is a boolean, not a string")
        );
        assert!(err(values.set("app", None, true.into())).contains("a string"));
        // Optional fields take what they would hold; integers are numbers where one is due.
        values.set("geo", Some("asn"), 4837_i64.into()).unwrap();
        values.set("rba", Some("score"), 1_i64.into()).unwrap();
        assert!(values.get("rba.score").is_float());

        let recorder = Recorder::new(Limits::default());
        let policy = recorder
            .runtime
            .compile(
                "t",
                "t.rhai",
                "fn evaluate(ctx) { ctx.user.no_such_signal }",
            )
            .unwrap();
        let (out, _) = recorder.run(&policy, Arc::new(values));
        assert!(out.unwrap_err().to_string().contains("no_such_signal"));
    }
}
