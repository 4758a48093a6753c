//! The policies compared, the thresholds each is replayed at, and how a threshold is set.

/// A policy and the constant that is its threshold.
#[derive(Debug)]
pub(crate) struct Policy {
    /// Its name in tables and plots.
    pub(crate) name: &'static str,
    /// The script, relative to the crate.
    pub(crate) file: &'static str,
    /// The constant set to each setting.
    pub(crate) constant: &'static str,
    /// The values replayed; `None`: the rule off.
    pub(crate) settings: &'static [Option<f64>],
    /// The value that turns the rule off: one it never reaches.
    pub(crate) off: f64,
    /// The shipped default policy: the setting its file has is marked as the shipped one.
    pub(crate) shipped: bool,
}

const DEFAULT: &str = "policies/default.rhai";

/// Rules only (the default policy without its statistical rule), the statistical score
/// only, and both: the shipped default. These are plotted.
pub(crate) const POLICIES: [Policy; 3] = [
    Policy {
        name: "rules only",
        file: DEFAULT,
        constant: "RBA_STEP_UP",
        settings: &[None],
        off: 2.0,
        shipped: false,
    },
    Policy {
        name: "score only",
        file: "docs/eval/score_only.rhai",
        constant: "STEP_UP",
        settings: &[
            Some(0.01),
            Some(0.02),
            Some(0.05),
            Some(0.1),
            Some(0.2),
            Some(0.3),
            Some(0.4),
            Some(0.5),
            Some(0.6),
            Some(0.7),
        ],
        off: 2.0,
        shipped: false,
    },
    Policy {
        name: "combined",
        file: DEFAULT,
        constant: "RBA_STEP_UP",
        settings: &[
            Some(0.05),
            Some(0.1),
            Some(0.2),
            Some(0.3),
            Some(0.5),
            Some(0.7),
            Some(0.8),
            Some(0.9),
        ],
        off: 2.0,
        shipped: true,
    },
];

/// The default's rules on wrong passwords before a successful login, at other thresholds.
pub(crate) const RULES: [Policy; 2] = [
    Policy {
        name: "combined, FIRST_LOGIN_FAILURES",
        file: DEFAULT,
        constant: "FIRST_LOGIN_FAILURES",
        settings: &[Some(1.0), Some(2.0), Some(3.0), None],
        off: 1e6,
        shipped: true,
    },
    Policy {
        name: "combined, NEW_BLOCK_FAILURES",
        file: DEFAULT,
        constant: "NEW_BLOCK_FAILURES",
        settings: &[Some(1.0), Some(2.0), Some(3.0), None],
        off: 1e6,
        shipped: true,
    },
];

impl Policy {
    /// A file name for the policy at `setting`.
    pub(crate) fn slug(&self, setting: Option<f64>) -> String {
        let name: String = (self.name.chars())
            .filter(|c| c.is_alphanumeric() || *c == ' ')
            .collect();
        format!("{}-{}", name.replace(' ', "-"), label(setting))
    }

    /// The source of the policy at `setting`.
    pub(crate) fn at(&self, source: &str, setting: Option<f64>) -> Result<String, String> {
        with_constant(source, self.constant, setting.unwrap_or(self.off))
    }
}

/// A setting as tables show it.
pub(crate) fn label(setting: Option<f64>) -> String {
    match setting {
        None => "off".to_owned(),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// `source` with its declaration `const NAME = ...;` giving `value` instead, an integer if
/// it gave one.
pub(crate) fn with_constant(source: &str, name: &str, value: f64) -> Result<String, String> {
    let declaration = format!("const {name} =");
    let mut found = 0;
    let lines: Vec<String> = source
        .lines()
        .map(|line| match line.strip_prefix(&declaration) {
            Some(old) => {
                found += 1;
                if old.contains('.') {
                    format!("{declaration} {value:?};")
                } else {
                    format!("{declaration} {value:.0};")
                }
            }
            None => line.to_owned(),
        })
        .collect();
    if found != 1 {
        return Err(format!(
            "`{declaration}` is declared {found} times, not once"
        ));
    }
    Ok(lines.join("\n") + "\n")
}

/// The value `source` gives `const NAME`.
pub(crate) fn constant(source: &str, name: &str) -> Option<f64> {
    let declaration = format!("const {name} =");
    let line = source.lines().find(|l| l.starts_with(&declaration))?;
    line.get(declaration.len()..)?
        .trim()
        .trim_end_matches(';')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_is_set_where_it_is_declared_once() {
        let source = "// A = 1\nconst A = 0.8;\nconst AB = 1;\nfn f() { A }\n";
        assert_eq!(constant(source, "A"), Some(0.8));
        let set = with_constant(source, "A", 0.25).unwrap();
        assert_eq!(
            set,
            "// A = 1\nconst A = 0.25;\nconst AB = 1;\nfn f() { A }\n"
        );
        assert_eq!(constant(&set, "AB"), Some(1.0));
        assert_eq!(
            with_constant(source, "AB", 3.0).unwrap().lines().nth(2),
            Some("const AB = 3;")
        );
        assert!(with_constant(source, "B", 0.5).is_err());
        assert!(with_constant("const A = 1;\nconst A = 2;\n", "A", 0.5).is_err());
    }

    #[test]
    fn every_policy_declares_the_constant_it_sweeps() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for policy in POLICIES.iter().chain(&RULES) {
            let source = std::fs::read_to_string(root.join(policy.file)).unwrap();
            assert!(constant(&source, policy.constant).is_some(), "{policy:?}");
        }
    }
}
