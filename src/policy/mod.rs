//! Rhai policies: a sandboxed runtime, compiled policies and the set the engine runs.
//!
//! A policy is a script defining `fn evaluate(ctx)` that returns
//! `#{decision: "allow"|"mfa"|"lock", score: <number>, reasons: [..], lock_seconds: <int>}`.
//! Scripts are compiled once into an AST; each call runs under operation, depth and size
//! limits with no file or network access.
//!
//! - `limits`: the sandbox's bounds; `runtime`: compiling and running scripts;
//! - `context`: how scripts read `ctx`; `output`: checking what they return;
//! - `lists`: named IP/ASN lists; `set`: the policies in force; `error`: what can fail;
//! - `recorder`: a `ctx` of plain values that notes what a policy reads;
//! - [`testing`]: policy test cases (`policies/tests/`) and the runner behind
//!   `riskgate policy test`.

mod context;
mod error;
mod limits;
mod lists;
mod output;
mod recorder;
pub(crate) mod reload;
mod runtime;
mod set;
pub mod testing;

pub use error::PolicyError;
pub use limits::Limits;
pub use lists::ListError;
pub(crate) use lists::Lists;
pub use output::{MAX_LOCK_SECONDS, PolicyOutput};
pub use recorder::Read;
pub(crate) use recorder::{CtxValues, Recorder};
pub use runtime::{ENTRY_POINT, Policy, Runtime};
pub use set::{DEFAULT_POLICY, PolicySet, Selection};

/// Whether `path` is an editor's scratch file (a hidden file such as Emacs's `.#name` lock or
/// Vim's `.name.swp`, or a `name~` backup): never a policy, list or case, and no reason to
/// reload.
pub(crate) fn editor_scratch(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| name.starts_with('.') || name.ends_with('~'))
}
