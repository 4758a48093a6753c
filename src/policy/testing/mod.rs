//! Policy tests: cases with the answers expected of a policy, kept beside the scripts in
//! `policies/tests/*.toml` (the format is in `policies/README.md`).
//!
//! A case names a policy and gives what it sees, either a partial `ctx` (fields not given
//! read as `()`) or a history of attempts and events played through a fresh engine, and the
//! answer expected: a decision and optionally reasons, a score range and a lock duration.
//! [`run`] runs the cases of a policies directory (`riskgate policy test`); [`run_cases`]
//! runs cases against policies already compiled (what a reload can check a new set with).
//! Neither prints nor exits: the [`Report`] says what passed, failed or could not run, and
//! for each failure which `ctx` fields the policy read.

mod cases;
mod expect;
mod runner;

use std::path::{Path, PathBuf};

pub use expect::{Aspect, Expect, Got, ScoreRange};

use super::{Limits, PolicyError, PolicySet, Read, Runtime};
use crate::config::Config;
use crate::engine::EngineSettings;

/// The subdirectory of a policies directory that holds its cases.
pub const CASES_DIR: &str = "tests";

/// Engine calls all the cases' histories may make together (a few seconds' work): a reload
/// runs them before activating a set, so a case file must not hold it for minutes.
pub const MAX_HISTORY_RUNS: u64 = 100_000;

/// Why cases could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The policies do not load (a directory missing, a script that does not compile).
    #[error(transparent)]
    Policies(#[from] PolicyError),
    /// The cases directory cannot be read.
    #[error("cannot read the cases directory `{path}`: {source}")]
    Cases {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cases directory has no case file.
    #[error("no case files (`*.toml`) in `{0}`")]
    NoCases(PathBuf),
    /// The runtime histories are played on cannot start.
    #[error("cannot start the runtime histories are played on: {0}")]
    Runtime(#[source] std::io::Error),
}

/// How a run, a file or a case ended; the worse of two is the greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Every case got the answer it expects.
    Passed,
    /// A case got another answer.
    Failed,
    /// A case file or a case could not run.
    Broken,
}

/// What running the cases of a directory found, file by file in name order.
#[derive(Debug)]
pub struct Report {
    /// Each case file.
    pub files: Vec<FileReport>,
}

impl Report {
    /// Broken when anything could not run, else failed when a case failed, else passed.
    pub fn status(&self) -> Status {
        self.files
            .iter()
            .map(FileReport::status)
            .max()
            .unwrap_or(Status::Passed)
    }
}

impl Report {
    /// The first thing that did not pass, in one line: the case file, and the case with what
    /// it expected and got (or why it could not run).
    pub fn first_problem(&self) -> Option<(&Path, String)> {
        self.files.iter().find_map(|file| {
            let path = &file.path;
            let cases = match &file.cases {
                Ok(cases) => cases,
                Err(error) => {
                    let line = error.line.map(|l| format!(":{l}")).unwrap_or_default();
                    let problem = format!("{}{line}: {}", path.display(), error.message);
                    return Some((path.as_path(), problem));
                }
            };
            cases.iter().find_map(|case| {
                let at = format!("{}:{}: case `{}`", path.display(), case.line, case.name);
                let problem = match &case.outcome {
                    CaseOutcome::Passed => return None,
                    CaseOutcome::Failed(failure) => format!(
                        "{at} (policy `{}`) expected {}, got {}",
                        case.policy, failure.expected, failure.got
                    ),
                    CaseOutcome::Broken(message) => format!("{at} could not run: {message}"),
                };
                Some((path.as_path(), problem))
            })
        })
    }
}

/// One case file's cases, or why they could not run.
#[derive(Debug)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Each case, in file order; an error when the file could not be read as cases.
    pub cases: Result<Vec<CaseReport>, FileError>,
}

impl FileReport {
    /// The worst status of its cases.
    pub fn status(&self) -> Status {
        match &self.cases {
            Ok(cases) => cases
                .iter()
                .map(CaseReport::status)
                .max()
                .unwrap_or(Status::Passed),
            Err(_) => Status::Broken,
        }
    }
}

/// Why a case file could not be read as cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The line at fault, when one is.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// One case and how it went.
#[derive(Debug)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// The line of its `[[case]]`.
    pub line: usize,
    /// The policy it ran.
    pub policy: String,
    /// How it went.
    pub outcome: CaseOutcome,
}

impl CaseReport {
    /// Its status.
    pub fn status(&self) -> Status {
        match self.outcome {
            CaseOutcome::Passed => Status::Passed,
            CaseOutcome::Failed(_) => Status::Failed,
            CaseOutcome::Broken(_) => Status::Broken,
        }
    }
}

/// How a case went.
#[derive(Debug)]
pub enum CaseOutcome {
    /// The answer was the one expected.
    Passed,
    /// Another answer came.
    Failed(Box<Failure>),
    /// The case could not run (a history step the engine refused).
    Broken(String),
}

/// A case that got another answer than the one expected.
#[derive(Debug)]
pub struct Failure {
    /// What the case expects.
    pub expected: Expect,
    /// What it got.
    pub got: Got,
    /// Which parts differ.
    pub differs: Vec<Aspect>,
    /// The `ctx` fields the policy read, in the order first read.
    pub reads: Vec<Read>,
}

/// Runs the cases in `<dir>/tests/` against the policies of `dir` (the configured policies
/// directory when `None`), with the configured sandbox limits, engine settings and policy
/// selection (which must name policies `dir` has).
///
/// Blocks while histories play: from async code, call it on a blocking thread.
pub fn run(config: &Config, dir: Option<&Path>) -> Result<Report, TestError> {
    let dir = dir.unwrap_or(&config.policies_dir);
    let runtime = Runtime::new(config.limits);
    let policies = PolicySet::load(&runtime, dir, config.selection.clone())?;
    run_cases(
        &policies,
        &dir.join(CASES_DIR),
        config.limits,
        config.engine,
    )
}

/// Runs every case file (`*.toml`) of `cases_dir` against `policies`: ctx cases under
/// `limits`, histories on a fresh in-memory engine each, with `settings` (the fail-safe
/// answers for a failing policy in both). A file that cannot be read as cases is reported
/// as such and the others still run.
///
/// Blocks while histories play: from async code, call it on a blocking thread.
pub(crate) fn run_cases(
    policies: &PolicySet,
    cases_dir: &Path,
    limits: Limits,
    settings: EngineSettings,
) -> Result<Report, TestError> {
    let io = |source| TestError::Cases {
        path: cases_dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(cases_dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(TestError::NoCases(cases_dir.to_owned()));
    }
    paths.sort();
    let runner = runner::Runner::new(policies, limits, settings).map_err(TestError::Runtime)?;
    let mut runs_left = MAX_HISTORY_RUNS;
    let files = paths
        .into_iter()
        .map(|path| {
            let cases = std::fs::read_to_string(&path)
                .map_err(|e| FileError {
                    line: None,
                    message: format!("cannot read: {e}"),
                })
                .and_then(|text| cases::parse(&path, &text, policies))
                .and_then(|cases| {
                    let runs: u64 = cases.iter().map(cases::Case::runs).sum();
                    runs_left = runs_left.checked_sub(runs).ok_or_else(|| FileError {
                        line: None,
                        message: format!(
                            "the histories of the cases run more than {MAX_HISTORY_RUNS} \
                             engine calls together; a reload runs them all"
                        ),
                    })?;
                    Ok(cases)
                })
                .map(|cases| cases.iter().map(|case| runner.run(case)).collect());
            FileReport { path, cases }
        })
        .collect();
    Ok(Report { files })
}

#[cfg(test)]
mod tests;
