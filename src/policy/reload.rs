//! Activating a changed policies directory safely: the new set must compile (scripts and
//! `lists/`) and pass its own cases (`tests/`), or the set in force goes on answering and the
//! rejection is kept for `GET /v1/policies`. Reloads come from `POST /v1/policies/reload`
//! and from [`watch`]ing the directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc;

use super::testing::{self, CASES_DIR, Status, TestError};
use super::{Limits, PolicySet, Selection, editor_scratch};
use crate::engine::{Engine, EngineSettings};
use crate::metrics::{Metrics, ReloadResult};

/// How long the directory must stay quiet after a change before it is reloaded: an editor's
/// save (a temporary file, a rename, a second write) comes as a burst of events.
const SETTLE: Duration = Duration::from_millis(250);

/// A reload that was refused; the set in force kept answering.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Rejection {
    /// When.
    pub at: DateTime<Utc>,
    /// The file at fault (a script, a list or a case file), when one is.
    pub file: Option<String>,
    /// What was wrong: the compiler's `file:line:column: message`, or the case that failed.
    pub error: String,
}

/// When the set in force was loaded, and the last reload refused since the start.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ReloadStatus {
    /// When the policies answering now were loaded.
    pub loaded_at: DateTime<Utc>,
    /// The latest refused reload, if any (it may be older than `loaded_at`).
    pub last_rejected: Option<Rejection>,
}

/// Reloads the policies directory into the engine, one reload at a time.
pub(crate) struct Reloader {
    engine: Arc<Engine>,
    dir: PathBuf,
    selection: Selection,
    limits: Limits,
    settings: EngineSettings,
    metrics: Arc<Metrics>,
    one_at_a_time: tokio::sync::Mutex<()>,
    status: parking_lot::Mutex<ReloadStatus>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").field("dir", &self.dir).finish()
    }
}

impl Reloader {
    /// A reloader of `dir` into `engine`, whose policies were loaded just now.
    pub(crate) fn new(
        engine: Arc<Engine>,
        dir: PathBuf,
        selection: Selection,
        limits: Limits,
        settings: EngineSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            engine,
            dir,
            selection,
            limits,
            settings,
            metrics,
            one_at_a_time: tokio::sync::Mutex::default(),
            status: parking_lot::Mutex::new(ReloadStatus {
                loaded_at: Utc::now(),
                last_rejected: None,
            }),
        }
    }

    /// When the set in force was loaded, and the last refusal.
    pub(crate) fn status(&self) -> ReloadStatus {
        self.status.lock().clone()
    }

    /// The directory reloaded.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compiles the directory and runs its cases (on a blocking thread); activates the new
    /// set only when both pass, else keeps the old one and remembers why.
    pub(crate) async fn reload(&self) -> Result<Arc<PolicySet>, Rejection> {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let engine = Arc::clone(&self.engine);
        let (dir, selection) = (self.dir.clone(), self.selection.clone());
        let (limits, settings) = (self.limits, self.settings);
        let checked = tokio::task::spawn_blocking(move || {
            candidate(&engine, &dir, selection, limits, settings)
        })
        .await
        .unwrap_or_else(|e| Err((None, format!("the reload task failed: {e}"))));
        let now = Utc::now();
        match checked {
            Ok(set) => {
                self.engine.set_policies(set);
                self.status.lock().loaded_at = now;
                self.metrics.reload(ReloadResult::Accepted);
                let active = self.engine.policies();
                let policy = active.active(None).reference();
                tracing::info!(policy = %policy.name, version = %policy.version, "policies reloaded");
                Ok(active)
            }
            Err((file, error)) => {
                let rejection = Rejection {
                    at: now,
                    file,
                    error,
                };
                tracing::error!(error = %rejection.error, "policy reload refused; the policies in force keep answering");
                self.status.lock().last_rejected = Some(rejection.clone());
                self.metrics.reload(ReloadResult::Rejected);
                Err(rejection)
            }
        }
    }
}

/// The set in `dir` if it compiles and its cases (if it has any) pass; else the file at
/// fault and what is wrong.
fn candidate(
    engine: &Engine,
    dir: &Path,
    selection: Selection,
    limits: Limits,
    settings: EngineSettings,
) -> Result<PolicySet, (Option<String>, String)> {
    let set = PolicySet::load(engine.runtime(), dir, selection)
        .map_err(|e| (e.file().map(|f| f.display().to_string()), e.to_string()))?;
    let cases = dir.join(CASES_DIR);
    if !cases.is_dir() {
        return Ok(set);
    }
    let in_cases = || Some(cases.display().to_string());
    match testing::run_cases(&set, &cases, limits, settings) {
        Err(TestError::NoCases(_)) => Ok(set),
        Err(error) => Err((in_cases(), error.to_string())),
        Ok(report) if report.status() == Status::Passed => Ok(set),
        Ok(report) => Err(report
            .first_problem()
            .map(|(file, problem)| (Some(file.display().to_string()), problem))
            .unwrap_or_else(|| (in_cases(), "a case did not pass".into()))),
    }
}

/// Watches the reloader's directory (scripts, `lists/`, `tests/`) and reloads it once each
/// burst of changes has settled. Runs until the task is aborted; a directory that cannot be
/// watched is logged, and reloads stay available on demand.
pub(crate) async fn watch(reloader: Arc<Reloader>) {
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(|p| !editor_scratch(p))) {
            // A full channel already holds a change to reload for.
            let _ = changed.try_send(());
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(reloader.dir(), RecursiveMode::Recursive)?;
        Ok(watcher)
    });
    let _watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(%error, dir = %reloader.dir().display(), "cannot watch the policies directory; reload with POST /v1/policies/reload");
            return;
        }
    };
    tracing::info!(dir = %reloader.dir().display(), "watching the policies directory");
    while changes.recv().await.is_some() {
        while tokio::time::timeout(SETTLE, changes.recv()).await.is_ok() {}
        // A refusal is logged and kept for GET /v1/policies.
        let _ = reloader.reload().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_scratch_files_are_not_changes() {
        for scratch in [".default.rhai.swp", "default.rhai~", ".#default.rhai"] {
            assert!(editor_scratch(Path::new(scratch)), "{scratch}");
        }
        // A ConfigMap volume swaps its `..data` link to update every file at once.
        let real = [
            "default.rhai",
            "lists/blocklist.txt",
            "tests/default.toml",
            "..data",
        ];
        for real in real {
            assert!(!editor_scratch(Path::new(real)), "{real}");
        }
    }
}
