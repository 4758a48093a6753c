//! The sandboxed Rhai runtime: compiles policies once and runs them per attempt.

use std::sync::Arc;

use rhai::{AST, CallFnOptions, Dynamic, Engine, OptimizationLevel, Scope};
use sha2::{Digest, Sha256};

use super::{Limits, PolicyError, PolicyOutput, context};
use crate::model::PolicyRef;
use crate::signals::Signals;

/// The function every policy defines.
pub const ENTRY_POINT: &str = "evaluate";

/// The sandboxed Rhai engine every policy runs in.
pub struct Runtime {
    engine: Engine,
    limits: Limits,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
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
        // Decisions depend on event time (`ctx.time`), never the wall clock, so replays match.
        engine.register_fn(
            "timestamp",
            || -> Result<rhai::Dynamic, Box<rhai::EvalAltResult>> {
                Err("`timestamp()` is not available in policies; use `ctx.time`".into())
            },
        );
        // Comparator calls inside `sort` are not counted against the operation budget, so a
        // policy could spin for seconds: only the plain, bounded sorts are available.
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

    /// The script engine, to register more types (policy tests' recording `ctx`).
    pub(super) fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
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

    /// Compiles `policy` again in this runtime: a copy for another thread.
    pub(crate) fn recompile(&self, policy: &Policy) -> Result<Policy, PolicyError> {
        self.compile(policy.name(), &policy.origin, &policy.source)
    }

    /// Runs a policy on `ctx`.
    pub fn run(&self, policy: &Policy, ctx: &Arc<Signals>) -> Result<PolicyOutput, PolicyError> {
        self.call(policy, (Arc::clone(ctx),))
    }

    /// Runs a policy on any `ctx` this runtime has registered, given as `(ctx,)` (policy
    /// tests run one that records what is read).
    pub(super) fn call(
        &self,
        policy: &Policy,
        ctx: impl rhai::FuncArgs,
    ) -> Result<PolicyOutput, PolicyError> {
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
        let result: Dynamic = self
            .engine
            .call_fn_with_options(options, &mut Scope::new(), &policy.ast, ENTRY_POINT, ctx)
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

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("reference", &self.reference)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;

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
