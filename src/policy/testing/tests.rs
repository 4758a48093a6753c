//! The runner on a small policy and hand-written case files: what passes, what fails and
//! shows what the policy read, and what cannot run, with its line.

use std::path::Path;

use super::*;
use crate::model::Decision;
use crate::policy::Selection;

/// Locks from three failures; throws when it is not told the failures.
const POLICY: &str = r#"
const LIMIT = 3;
fn evaluate(ctx) {
    let failures = ctx.user.failures_15m;
    if failures == () { throw "no failures given"; }
    if failures >= LIMIT {
        return #{ decision: "lock", score: 1.0, reasons: ["many"], lock_seconds: 60 };
    }
    #{ decision: "allow", score: 0.1 * failures, reasons: ["few", ctx.geo.country ?? "nowhere"] }
}
"#;

const CASES: &str = r#"
[ctx.geo]
country = "GB"

[[case]]
name = "three lock"
ctx.user.failures_15m = 3
expect = { decision = "lock", reasons = ["many"], reasons_exact = true, score = 1, lock_seconds = 60 }

[[case]]
name = "two do not"
ctx.user.failures_15m = 2
expect = { decision = "lock" }

[[case]]
name = "without failures the fail-safe answers"
ctx = {}
expect = { decision = "mfa", reasons = ["policy_error"] }

[[case]]
name = "the fail-safe fails a case about something else"
ctx = {}
expect = { decision = "mfa" }

[[case]]
name = "three wrong passwords lock"
expect = { decision = "lock", lock_seconds = 60, score = [0.9, 1.0] }
history = [
  { evaluate = { user_id = "bob", ip = "192.0.2.1", password_ok = false, timestamp = 2026-11-02T09:00:00Z }, repeat = 3, every_seconds = 1 },
]

[[case]]
name = "an attempt the engine cannot take"
expect = { decision = "allow" }
history = [
  { evaluate = { user_id = "", ip = "192.0.2.1", timestamp = "2026-11-02T09:00:00Z" } },
]
"#;

fn run_files(files: &[(&str, &str)]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.rhai"), POLICY).unwrap();
    let cases = dir.path().join(CASES_DIR);
    std::fs::create_dir(&cases).unwrap();
    for (name, text) in files {
        std::fs::write(cases.join(name), text).unwrap();
    }
    let runtime = Runtime::new(Limits::default());
    let selection = Selection {
        default: "t".into(),
        ..Selection::default()
    };
    let policies = PolicySet::load(&runtime, dir.path(), selection).unwrap();
    run_cases(
        &policies,
        &cases,
        Limits::default(),
        EngineSettings::default(),
    )
    .unwrap()
}

fn outcomes(file: &FileReport) -> Vec<(&str, &CaseOutcome)> {
    let cases = file.cases.as_ref().unwrap();
    cases
        .iter()
        .map(|c| (c.name.as_str(), &c.outcome))
        .collect()
}

#[test]
fn cases_pass_fail_with_what_the_policy_read_or_cannot_run() {
    let report = run_files(&[("t.toml", CASES)]);
    assert_eq!(report.status(), Status::Broken);
    let [file] = report.files.as_slice() else {
        panic!("one file: {report:?}");
    };
    let cases = outcomes(file);
    assert!(matches!(cases[0], ("three lock", CaseOutcome::Passed)));

    let CaseOutcome::Failed(failure) = cases[1].1 else {
        panic!("{cases:?}");
    };
    assert_eq!(failure.differs, [Aspect::Decision]);
    assert_eq!(failure.got.decision, Decision::Allow);
    assert_eq!(failure.got.reasons, ["few", "GB"]);
    let reads: Vec<String> = failure
        .reads
        .iter()
        .map(|r| format!("{} = {}", r.field, r.value))
        .collect();
    assert_eq!(reads, ["user.failures_15m = 2", "geo.country = \"GB\""]);

    assert!(matches!(cases[2].1, CaseOutcome::Passed), "{cases:?}");
    let CaseOutcome::Failed(failure) = cases[3].1 else {
        panic!("{cases:?}");
    };
    assert_eq!(failure.differs, [Aspect::PolicyFailed]);
    assert!(
        failure
            .got
            .error
            .as_ref()
            .is_some_and(|e| e.contains("no failures given"))
    );

    assert!(matches!(cases[4].1, CaseOutcome::Passed), "{cases:?}");
    let CaseOutcome::Broken(why) = cases[5].1 else {
        panic!("{cases:?}");
    };
    assert!(why.contains("user_id"), "{why}");
    assert_eq!(file.cases.as_ref().unwrap()[5].line, 32);
}

#[test]
fn a_file_that_cannot_be_read_as_cases_names_its_line_and_the_others_still_run() {
    let passing =
        "[[case]]\nname = \"x\"\nctx.user.failures_15m = 3\nexpect = { decision = \"lock\" }\n";
    let report = run_files(&[
        ("t.toml", passing),
        (
            "typo.toml",
            "policy = \"t\"\n[[case]]\nname = \"x\"\nexpct = 1\n",
        ),
        ("unknown.toml", passing),
        (
            "field.toml",
            &format!("policy = \"t\"\n{}", passing.replace("15m", "15min")),
        ),
        (
            "history.toml",
            "policy = \"t\"\n[[case]]\nname = \"x\"\nexpect = { decision = \"allow\" }\n\
             [[case.history]]\nevent = { type = \"login_failed\", user_id = \"x\" }\n",
        ),
        ("empty.toml", "policy = \"t\"\n"),
    ]);
    assert_eq!(report.status(), Status::Broken);
    let errors: Vec<(String, Option<usize>, String)> = report
        .files
        .iter()
        .map(|f| {
            let name = f.path.file_name().unwrap().to_string_lossy().into_owned();
            match &f.cases {
                Ok(_) => (name, None, "ok".into()),
                Err(e) => (name, e.line, e.message.clone()),
            }
        })
        .collect();
    let expect = [
        ("empty.toml", None, "no cases"),
        (
            "field.toml",
            Some(4),
            "`ctx.user` has no field `failures_15min`",
        ),
        ("history.toml", Some(2), "must end with an `evaluate` step"),
        ("t.toml", None, "ok"),
        ("typo.toml", Some(4), "unknown field `expct`"),
        ("unknown.toml", Some(1), "no policy `unknown`"),
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:?}");
    for ((name, line, message), (want_name, want_line, want)) in errors.iter().zip(expect) {
        assert_eq!((name.as_str(), *line), (want_name, want_line), "{message}");
        assert!(message.contains(want), "{name}: {message}");
    }
}

#[test]
fn a_directory_without_case_files_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(Limits::default());
    let selection = Selection {
        default: crate::policy::DEFAULT_POLICY.into(),
        ..Selection::default()
    };
    let policies = PolicySet::embedded(&runtime, selection).unwrap();
    let run = |cases: &Path| {
        run_cases(
            &policies,
            cases,
            Limits::default(),
            EngineSettings::default(),
        )
    };
    assert!(matches!(
        run(&dir.path().join("missing")),
        Err(TestError::Cases { .. })
    ));
    assert!(matches!(run(dir.path()), Err(TestError::NoCases(_))));
}

#[test]
fn histories_play_on_a_blocking_thread_of_an_async_runtime() {
    // A reload checks a new set from the server's runtime, on a blocking thread.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime
        .block_on(async { tokio::task::spawn_blocking(|| run_files(&[("t.toml", CASES)])).await })
        .unwrap();
    assert!(matches!(
        outcomes(&report.files[0])[4],
        (_, CaseOutcome::Passed)
    ));
}
