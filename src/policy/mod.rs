//! Rhai policies: a sandboxed runtime, compiled policies and the set the engine runs.
//!
//! A policy is a script defining `fn evaluate(ctx)` that returns
//! `#{decision: "allow"|"mfa"|"lock", score: <number>, reasons: [..], lock_seconds: <int>}`.
//! Scripts are compiled once into an AST; each call runs under operation, depth and size
//! limits with no file or network access.

pub mod context;
pub mod lists;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, CallFnOptions, Dynamic, Engine, Map, OptimizationLevel, Scope};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use lists::{ListError, Lists};

use crate::model::{Decision, PolicyRef};
use crate::signals::Signals;

/// The longest lock a policy may ask for: a year.
pub const MAX_LOCK_SECONDS: u64 = 365 * 24 * 3600;
/// The function every policy defines.
pub const ENTRY_POINT: &str = "evaluate";
/// The policy used when no app mapping applies.
pub const DEFAULT_POLICY: &str = "default";

/// The shipped default policy, compiled into the binary.
const EMBEDDED_POLICY: &str = include_str!("../../policies/default.rhai");
/// The shipped lists, compiled into the binary.
const EMBEDDED_LISTS: &[(&str, &str)] = &[
    (
        "blocklist",
        include_str!("../../policies/lists/blocklist.txt"),
    ),
    ("hosting", include_str!("../../policies/lists/hosting.txt")),
];

/// Sandbox limits applied to every policy call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Operations per call before the policy is stopped (the policy's time budget).
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_levels: usize,
    /// Longest string a script may build, in bytes.
    pub max_string_size: usize,
    /// Largest array a script may build.
    pub max_array_size: usize,
    /// Largest map a script may build.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 100_000,
            max_call_levels: 32,
            max_string_size: 16 * 1024,
            max_array_size: 1024,
            max_map_size: 256,
        }
    }
}

/// Errors compiling, loading or running a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The script does not parse.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// Where the script came from.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The script has no `fn evaluate(ctx)`.
    #[error("{path}: no `fn {ENTRY_POINT}(ctx)` defined")]
    NoEntryPoint {
        /// Where the script came from.
        path: String,
    },
    /// A policy file or directory could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A list could not be loaded.
    #[error(transparent)]
    List(#[from] ListError),
    /// A configured policy name has no script.
    #[error("policy `{0}` not found in the policies directory")]
    Unknown(String),
    /// The script failed or exceeded a limit while running.
    #[error("policy `{name}` failed: {message}")]
    Runtime {
        /// The policy.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The script returned something that is not a valid verdict.
    #[error("policy `{name}` returned an invalid result: {message}")]
    BadResult {
        /// The policy.
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The sandboxed Rhai engine every policy runs in.
pub struct Runtime {
    engine: Engine,
    limits: Limits,
}

impl Runtime {
    /// A runtime with the given limits, `ctx` types and helper functions registered.
    pub fn new(limits: Limits) -> Self {
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(64, 64)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_max_variables(256)
            .set_max_functions(256)
            // The interner sits behind a lock shared by all threads; without it policies scale.
            .set_max_strings_interned(0)
            .set_optimization_level(OptimizationLevel::Full)
            .on_print(|text| tracing::info!(target: "riskgate::policy", "{text}"))
            .on_debug(|text, _, pos| tracing::debug!(target: "riskgate::policy", %pos, "{text}"));
        engine.disable_symbol("eval");
        context::register(&mut engine);
        engine.register_fn("cidr_match", cidr_match);
        // Comparator calls inside `sort` are not counted against the operation budget, so a
        // policy could spin for seconds: only the plain, bounded sorts are available.
        // Decisions depend on event time (`ctx.time`), never the wall clock, so replays match.
        engine.register_fn(
            "timestamp",
            || -> Result<rhai::Dynamic, Box<rhai::EvalAltResult>> {
                Err("`timestamp()` is not available in policies; use `ctx.time`".into())
            },
        );
        engine.register_fn(
            "sort",
            |_: &mut rhai::Array, _: rhai::FnPtr| -> Result<(), Box<rhai::EvalAltResult>> {
                Err("`sort` with a comparator is not available in policies".into())
            },
        );
        Self { engine, limits }
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles a policy; `origin` names it in error messages.
    ///
    /// Top-level statements run once, here: the constants they declare are then compiled
    /// into the functions, so `const LOCK_AFTER = 10;` costs nothing per call.
    pub fn compile(&self, name: &str, origin: &str, source: &str) -> Result<Policy, PolicyError> {
        let syntax = |e: rhai::ParseError| {
            let pos = e.position();
            PolicyError::Syntax {
                path: origin.to_owned(),
                line: pos.line().unwrap_or(0),
                column: pos.position().unwrap_or(0),
                message: e.err_type().to_string(),
            }
        };
        let ast = self.engine.compile(source).map_err(syntax)?;
        let mut constants = Scope::new();
        self.engine
            .run_ast_with_scope(&mut constants, &ast)
            .map_err(|e| PolicyError::Runtime {
                name: name.to_owned(),
                message: format!("top-level statements failed: {e}"),
            })?;
        let ast = self
            .engine
            .compile_with_scope(&constants, source)
            .map_err(syntax)?;
        if !ast
            .iter_functions()
            .any(|f| f.name == ENTRY_POINT && f.params.len() == 1)
        {
            return Err(PolicyError::NoEntryPoint {
                path: origin.to_owned(),
            });
        }
        Ok(Policy {
            reference: Arc::new(PolicyRef {
                name: name.to_owned(),
                version: source_version(source),
            }),
            origin: origin.to_owned(),
            source: source.to_owned(),
            ast,
        })
    }

    /// Runs a policy on `ctx`.
    pub fn run(&self, policy: &Policy, ctx: &Arc<Signals>) -> Result<PolicyOutput, PolicyError> {
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
        let result: Dynamic = self
            .engine
            .call_fn_with_options(
                options,
                &mut Scope::new(),
                &policy.ast,
                ENTRY_POINT,
                (Arc::clone(ctx),),
            )
            .map_err(|e| PolicyError::Runtime {
                name: policy.name().to_owned(),
                message: e.to_string(),
            })?;
        PolicyOutput::from_dynamic(result).map_err(|message| PolicyError::BadResult {
            name: policy.name().to_owned(),
            message,
        })
    }
}

/// `sha256:<hex>` of a policy's source.
fn source_version(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `cidr_match(ip, "10.0.0.0/8")`: is the IP inside the network? False for malformed input.
fn cidr_match(ip: &str, cidr: &str) -> bool {
    match (ip.parse::<std::net::IpAddr>(), cidr.parse::<ipnet::IpNet>()) {
        (Ok(ip), Ok(net)) => net.contains(&ip.to_canonical()),
        _ => false,
    }
}

/// A compiled policy.
pub struct Policy {
    reference: Arc<PolicyRef>,
    /// Where the script came from, for error messages.
    origin: String,
    /// The script, to compile copies for other threads.
    source: String,
    ast: AST,
}

impl Policy {
    /// Name and `sha256:` version, shared by every verdict of this policy.
    pub fn reference(&self) -> Arc<PolicyRef> {
        Arc::clone(&self.reference)
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.reference.name
    }
}

/// What a policy returned, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOutput {
    /// The decision.
    pub decision: Decision,
    /// The score.
    pub score: f64,
    /// The reasons.
    pub reasons: Vec<String>,
    /// Lock duration, for `lock`.
    pub lock_seconds: Option<u64>,
}

impl PolicyOutput {
    fn from_dynamic(value: Dynamic) -> Result<Self, String> {
        let type_name = value.type_name();
        let mut map: Map = value
            .try_cast()
            .ok_or_else(|| format!("expected a map, got {type_name}"))?;
        let decision_value = map
            .remove("decision")
            .ok_or("missing `decision`")?
            .into_immutable_string()
            .map_err(|t| format!("`decision` must be a string, got {t}"))?;
        let decision = Decision::parse(&decision_value).ok_or_else(|| {
            format!("`decision` must be allow, mfa or lock, got `{decision_value}`")
        })?;
        let score = match map.get("score") {
            None => 0.0,
            Some(s) => s
                .as_float()
                .or_else(|_| s.as_int().map(|i| i as f64))
                .map_err(|t| format!("`score` must be a number, got {t}"))?,
        };
        if !score.is_finite() {
            return Err("`score` must be finite".into());
        }
        let reasons = match map.remove("reasons") {
            None => Vec::new(),
            Some(r) => r
                .into_typed_array::<rhai::ImmutableString>()
                .map_err(|t| format!("`reasons` must be an array of strings, got {t}"))?
                .into_iter()
                .map(Into::into)
                .collect(),
        };
        let lock_seconds = match map.get("lock_seconds") {
            Some(v) if !v.is_unit() => Some(
                v.as_int()
                    .ok()
                    .and_then(|i| u64::try_from(i).ok())
                    .filter(|&s| s <= MAX_LOCK_SECONDS)
                    .ok_or("`lock_seconds` must be an integer from 0 to 31536000 (a year)")?,
            ),
            _ => None,
        };
        Ok(Self {
            decision,
            score,
            reasons,
            lock_seconds,
        })
    }
}

/// Which policy runs where: the default, per-app overrides and an optional shadow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Policy for requests without a mapped app.
    pub default: String,
    /// App name to policy name.
    pub apps: HashMap<String, String>,
    /// Policy run beside the active one, report only.
    pub shadow: Option<String>,
}

/// Every policy of a directory, compiled, with its lists; swapped whole on reload.
pub struct PolicySet {
    policies: BTreeMap<String, Arc<Policy>>,
    selection: Selection,
    lists: Arc<Lists>,
}

impl PolicySet {
    /// Compiles every `*.rhai` in `dir` and loads `dir/lists/`; fails if any script is broken
    /// or a selected policy is missing, so a broken directory never becomes active.
    pub fn load(runtime: &Runtime, dir: &Path, selection: Selection) -> Result<Self, PolicyError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PolicyError::Io { path, source }
        };
        let mut policies = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_none_or(|e| e != "rhai") {
                continue;
            }
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            let source = std::fs::read_to_string(&path).map_err(io(&path))?;
            let policy = runtime.compile(&name, &path.display().to_string(), &source)?;
            policies.insert(name.into_owned(), Arc::new(policy));
        }
        Self::new(policies, selection, Lists::load(&dir.join("lists"))?)
    }

    /// The policy and lists shipped in `policies/`, compiled into the binary, for running
    /// without a policies directory.
    pub fn embedded(runtime: &Runtime, selection: Selection) -> Result<Self, PolicyError> {
        let policy = runtime.compile(DEFAULT_POLICY, "<embedded default.rhai>", EMBEDDED_POLICY)?;
        let policies = BTreeMap::from([(DEFAULT_POLICY.to_owned(), Arc::new(policy))]);
        Self::new(policies, selection, Lists::from_texts(EMBEDDED_LISTS)?)
    }

    /// A set from compiled policies; fails if a selected policy is missing.
    pub fn new(
        policies: BTreeMap<String, Arc<Policy>>,
        selection: Selection,
        lists: Lists,
    ) -> Result<Self, PolicyError> {
        Self::with_lists(policies, selection, Arc::new(lists))
    }

    fn with_lists(
        policies: BTreeMap<String, Arc<Policy>>,
        selection: Selection,
        lists: Arc<Lists>,
    ) -> Result<Self, PolicyError> {
        let wanted = std::iter::once(&selection.default)
            .chain(selection.apps.values())
            .chain(selection.shadow.iter());
        for name in wanted {
            if !policies.contains_key(name) {
                return Err(PolicyError::Unknown(name.clone()));
            }
        }
        Ok(Self {
            policies,
            selection,
            lists,
        })
    }

    /// The same policies compiled again by `runtime`, sharing the lists: a copy for another
    /// thread. Compiled scripts hold reference-counted values that every call touches, so
    /// threads sharing one copy contend on them.
    pub fn compiled_by(&self, runtime: &Runtime) -> Result<Self, PolicyError> {
        let policies = self
            .policies
            .iter()
            .map(|(name, p)| {
                let copy = runtime.compile(p.name(), &p.origin, &p.source)?;
                Ok((name.clone(), Arc::new(copy)))
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(Self {
            policies,
            selection: self.selection.clone(),
            lists: Arc::clone(&self.lists),
        })
    }

    /// Adds (or replaces) a policy, e.g. one given as a file on the command line.
    pub fn insert(&mut self, policy: Policy) {
        self.policies
            .insert(policy.name().to_owned(), Arc::new(policy));
    }

    /// Changes which policy runs where; fails if a selected policy is missing.
    pub fn select(self, selection: Selection) -> Result<Self, PolicyError> {
        Self::with_lists(self.policies, selection, self.lists)
    }

    /// The policy for an app (the default when the app is not mapped).
    pub fn active(&self, app: Option<&str>) -> &Arc<Policy> {
        let name = app
            .and_then(|a| self.selection.apps.get(a))
            .unwrap_or(&self.selection.default);
        &self.policies[name]
    }

    /// The shadow policy, if configured.
    pub fn shadow(&self) -> Option<&Arc<Policy>> {
        self.selection.shadow.as_ref().map(|n| &self.policies[n])
    }

    /// The named lists.
    pub fn lists(&self) -> &Lists {
        &self.lists
    }

    /// All policies by name.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.policies.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_policy_is_the_shipped_one_and_compiles() {
        let runtime = Runtime::new(Limits::default());
        let selection = Selection {
            default: DEFAULT_POLICY.into(),
            ..Selection::default()
        };
        let embedded = PolicySet::embedded(&runtime, selection.clone()).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let shipped = PolicySet::load(&runtime, &dir, selection).unwrap();
        assert_eq!(
            embedded.active(None).reference(),
            shipped.active(None).reference()
        );
        assert_eq!(embedded.lists().names(), shipped.lists().names());
    }

    #[test]
    fn top_level_constants_reach_functions_and_bad_results_are_rejected() {
        let runtime = Runtime::new(Limits::default());
        let policy = runtime
            .compile(
                "t",
                "t.rhai",
                "const LIMIT = 3; fn evaluate(ctx) { #{decision: if 4 > LIMIT { \"mfa\" } else { \"allow\" }, score: 1} }",
            )
            .unwrap();
        let out = runtime.run(&policy, &Arc::default()).unwrap();
        assert_eq!((out.decision, out.score), (Decision::Mfa, 1.0));
        for (source, why) in [
            ("fn evaluate(ctx) { 42 }", "expected a map"),
            (
                "fn evaluate(ctx) { #{decision: \"maybe\"} }",
                "allow, mfa or lock",
            ),
            (
                "fn evaluate(ctx) { #{decision: \"lock\", lock_seconds: -5} }",
                "a year",
            ),
            (
                "fn evaluate(ctx) { #{decision: \"lock\", lock_seconds: 10000000000000000} }",
                "a year",
            ),
            (
                "fn evaluate(ctx) { let a = [3, 1, 2]; a.sort(|x, y| x - y); #{decision: \"allow\"} }",
                "comparator",
            ),
            (
                "fn evaluate(ctx) { #{decision: \"allow\", reasons: [1]} }",
                "array of strings",
            ),
            (
                "fn evaluate(ctx) { ctx.user.no_such_signal }",
                "no_such_signal",
            ),
            (
                "fn evaluate(ctx) { let t = timestamp(); #{decision: \"allow\"} }",
                "ctx.time",
            ),
        ] {
            let policy = runtime.compile("t", "t.rhai", source).unwrap();
            let err = runtime
                .run(&policy, &Arc::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{source}: {err}");
        }
    }
}
