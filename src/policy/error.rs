//! What can go wrong compiling, loading or running a policy.

use std::path::{Path, PathBuf};

use super::ListError;
use super::runtime::ENTRY_POINT;

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

impl PolicyError {
    /// The file at fault, when there is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PolicyError::Syntax { path, .. } | PolicyError::NoEntryPoint { path } => {
                Some(Path::new(path))
            }
            PolicyError::Io { path, .. }
            | PolicyError::List(ListError::Io { path, .. } | ListError::Entry { path, .. }) => {
                Some(path)
            }
            _ => None,
        }
    }
}
