//! The set of compiled policies the engine runs: which one answers for which app, the
//! shadow, and the named lists; swapped whole on reload.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Lists, Policy, PolicyError, Runtime};

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

/// The largest policy script loaded (a policy is read whole at every reload).
const MAX_SCRIPT_BYTES: u64 = 1 << 20;

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
#[derive(Debug)]
pub struct PolicySet {
    policies: BTreeMap<String, Arc<Policy>>,
    selection: Selection,
    lists: Arc<Lists>,
}

impl PolicySet {
    /// Compiles every `*.rhai` in `dir` and loads `dir/lists/`; fails if any script is broken
    /// or a selected policy is missing, so a broken directory never becomes active.
    pub(crate) fn load(
        runtime: &Runtime,
        dir: &Path,
        selection: Selection,
    ) -> Result<Self, PolicyError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PolicyError::Io { path, source }
        };
        let mut policies = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_none_or(|e| e != "rhai") || !super::loadable(&path) {
                continue;
            }
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            let size = std::fs::metadata(&path).map_err(io(&path))?.len();
            if size > MAX_SCRIPT_BYTES {
                let too_big = std::io::Error::other(format!(
                    "{size} bytes; a policy has at most {MAX_SCRIPT_BYTES}"
                ));
                return Err(io(&path)(too_big));
            }
            let source = std::fs::read_to_string(&path).map_err(io(&path))?;
            let policy = runtime.compile(&name, &path.display().to_string(), &source)?;
            policies.insert(name.into_owned(), Arc::new(policy));
        }
        Self::new(policies, selection, Lists::load(&dir.join("lists"))?)
    }

    /// The policy and lists shipped in `policies/`, compiled into the binary, for running
    /// without a policies directory.
    pub(crate) fn embedded(runtime: &Runtime, selection: Selection) -> Result<Self, PolicyError> {
        let policy = runtime.compile(DEFAULT_POLICY, "<embedded default.rhai>", EMBEDDED_POLICY)?;
        let policies = BTreeMap::from([(DEFAULT_POLICY.to_owned(), Arc::new(policy))]);
        Self::new(policies, selection, Lists::from_texts(EMBEDDED_LISTS)?)
    }

    /// A set from compiled policies; fails if a selected policy is missing.
    pub(crate) fn new(
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
    pub(crate) fn compiled_by(&self, runtime: &Runtime) -> Result<Self, PolicyError> {
        let policies = self
            .policies
            .iter()
            .map(|(name, p)| {
                let copy = runtime.recompile(p)?;
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
    pub(crate) fn insert(&mut self, policy: Policy) {
        self.policies
            .insert(policy.name().to_owned(), Arc::new(policy));
    }

    /// Changes which policy runs where; fails if a selected policy is missing.
    pub(crate) fn select(self, selection: Selection) -> Result<Self, PolicyError> {
        Self::with_lists(self.policies, selection, self.lists)
    }

    /// The policy for an app (the default when the app is not mapped).
    #[expect(
        clippy::indexing_slicing,
        reason = "INVARIANT: `with_lists` checked that every selected policy is in the set"
    )]
    pub fn active(&self, app: Option<&str>) -> &Arc<Policy> {
        let name = app
            .and_then(|a| self.selection.apps.get(a))
            .unwrap_or(&self.selection.default);
        &self.policies[name]
    }

    /// The shadow policy, if configured.
    #[expect(
        clippy::indexing_slicing,
        reason = "INVARIANT: `with_lists` checked that every selected policy is in the set"
    )]
    pub fn shadow(&self) -> Option<&Arc<Policy>> {
        self.selection.shadow.as_ref().map(|n| &self.policies[n])
    }

    /// The named lists.
    pub(crate) fn lists(&self) -> &Lists {
        &self.lists
    }

    /// All policies by name.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.policies.values()
    }

    /// The policy named `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get(name)
    }

    /// The same policies and lists with only `name` in force, for every app and without a
    /// shadow (a policy test's engine); fails if the set has no such policy.
    pub(crate) fn only(&self, name: &str) -> Result<Self, PolicyError> {
        let selection = Selection {
            default: name.to_owned(),
            ..Selection::default()
        };
        Self::with_lists(self.policies.clone(), selection, Arc::clone(&self.lists))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::Limits;

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
}
