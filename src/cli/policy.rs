//! `riskgate policy check` and `riskgate policy test`.

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use riskgate::config::Config;
use riskgate::policy::testing::{self, CaseOutcome, CaseReport, Failure, Report, Status};
use riskgate::policy::{Limits, Runtime};

/// Exit code when a policy is invalid.
pub(crate) const EXIT_INVALID: u8 = 1;
/// Exit code when a policy test case fails.
const EXIT_FAILED: u8 = 1;
/// Exit code when policy test cases could not run.
const EXIT_BROKEN: u8 = 2;

/// Compiles a policy file: exit 0 when valid, [`EXIT_INVALID`] when not.
pub(crate) fn check(file: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let name = file.file_stem().unwrap_or_default().to_string_lossy();
    let runtime = Runtime::new(Limits::default());
    match runtime.compile(&name, &file.display().to_string(), &source) {
        Ok(policy) => {
            let r = policy.reference();
            println!("{}: ok ({} {})", file.display(), r.name, r.version);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// Runs the test cases of `dir` (the configured policies directory when `None`) and prints
/// the report: exit 0 when every case passes, [`EXIT_FAILED`] when one fails, and
/// [`EXIT_BROKEN`] when the cases could not run (configuration, policies, case files).
pub(crate) fn test(
    config: Result<Config, Box<dyn std::error::Error>>,
    dir: Option<&Path>,
) -> ExitCode {
    let report = config.and_then(|config| Ok(testing::run(&config, dir)?));
    match report {
        Ok(report) => {
            print!("{}", Rendered(&report));
            ExitCode::from(match report.status() {
                Status::Passed => 0,
                Status::Failed => EXIT_FAILED,
                Status::Broken => EXIT_BROKEN,
            })
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BROKEN)
        }
    }
}

/// A report as people read it: a line per file, a block per case that did not pass, and
/// the totals.
struct Rendered<'a>(&'a Report);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut totals = Tally::default();
        let mut unreadable = 0;
        for file in &self.0.files {
            let path = file.path.display();
            let cases = match &file.cases {
                Ok(cases) => cases,
                Err(error) => {
                    unreadable += 1;
                    let line = error.line.map(|l| format!(":{l}")).unwrap_or_default();
                    writeln!(f, "ERROR {path}{line}: {}", error.message)?;
                    continue;
                }
            };
            let mut counts = Tally::default();
            for case in cases {
                counts.add(case.status());
            }
            writeln!(f, "{path}: {counts}")?;
            for case in cases {
                match &case.outcome {
                    CaseOutcome::Passed => {}
                    CaseOutcome::Failed(failure) => {
                        writeln!(f)?;
                        write_failure(f, &path.to_string(), case, failure)?;
                    }
                    CaseOutcome::Broken(message) => {
                        writeln!(
                            f,
                            "ERROR {path}:{}: case `{}`: {message}",
                            case.line, case.name
                        )?;
                    }
                }
            }
            totals.merge(counts);
        }
        writeln!(f)?;
        write!(f, "{} cases: {totals}", totals.cases())?;
        if unreadable > 0 {
            write!(f, "; {unreadable} case files could not be read")?;
        }
        writeln!(f)
    }
}

/// Cases counted by how they went.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    passed: usize,
    failed: usize,
    broken: usize,
}

impl Tally {
    fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Broken => self.broken += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.broken += other.broken;
    }

    fn cases(&self) -> usize {
        self.passed + self.failed + self.broken
    }
}

/// `3 passed, 1 failed, 1 could not run`, leaving out the zeros after the first.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed", self.passed)?;
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        if self.broken > 0 {
            write!(f, ", {} could not run", self.broken)?;
        }
        Ok(())
    }
}

/// The block for a case that got another answer: expected, got, what differs, and the
/// `ctx` fields the policy read.
fn write_failure(
    f: &mut fmt::Formatter<'_>,
    path: &str,
    case: &CaseReport,
    failure: &Failure,
) -> fmt::Result {
    writeln!(
        f,
        "FAIL {path}:{}: case `{}` (policy `{}`)",
        case.line, case.name, case.policy
    )?;
    writeln!(f, "  expected: {}", failure.expected)?;
    writeln!(f, "  got:      {}", failure.got)?;
    let differs: Vec<String> = failure.differs.iter().map(ToString::to_string).collect();
    writeln!(f, "  differs:  {}", differs.join(", "))?;
    if let Some(error) = &failure.got.error {
        writeln!(f, "  the policy failed (the fail-safe answered): {error}")?;
    }
    if failure.reads.is_empty() {
        return writeln!(f, "  ctx read: nothing");
    }
    writeln!(f, "  ctx read:")?;
    for read in &failure.reads {
        writeln!(f, "    {} = {}", read.field, read.value)?;
    }
    Ok(())
}
