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

/// Whether `path` is an editor's scratch file: Emacs's `.#name` lock, Vim's `.name.swp`, a
/// `name~` backup. Its changes are no reason to reload (while Kubernetes's `..data` swap of
/// a mounted ConfigMap is).
pub(crate) fn editor_scratch(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| {
            name.starts_with(".#")
                || name.ends_with('~')
                || (name.starts_with('.') && (name.ends_with(".swp") || name.ends_with(".swx")))
        })
}

/// Whether `path` is a file to load as a policy or list: a regular file (through symlinks),
/// not hidden, not a backup. A named pipe or a device would hold or flood the reading.
pub(crate) fn loadable(path: &std::path::Path) -> bool {
    let visible = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| !name.starts_with('.') && !name.ends_with('~'));
    visible && path.is_file()
}
