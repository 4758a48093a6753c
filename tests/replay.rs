//! Replay: the public RBA dataset's first rows, generated corpora, hand-computed metrics,
//! A/B comparisons and the server's own decision log.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

mod common;

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::cargo_bin;
use common::*;
use riskgate::config::Settings;
use riskgate::corpus::{CorpusSpec, generate};
use riskgate::replay::summary::DecisionCounts;
use riskgate::replay::{self, AttackKind, ColumnMap, ReplaySpec, Summary};
use serde_json::json;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn args(input: &Path) -> ReplaySpec {
    let mut spec = ReplaySpec::new(input);
    spec.options.reorder_window = 1000;
    spec.options.samples = 10;
    spec
}

fn settings() -> Settings {
    Settings {
        policies_dir: Some(shipped_policies()),
        geoip_city: Some(String::new()),
        geoip_asn: Some(String::new()),
        ..Settings::default()
    }
}

fn run(spec: ReplaySpec) -> Summary {
    replay::run(&spec, &settings().resolve().unwrap(), &|_| {}).unwrap()
}

fn counts(allow: u64, mfa: u64, lock: u64) -> DecisionCounts {
    DecisionCounts { allow, mfa, lock }
}

#[test]
fn the_first_rows_of_the_rba_dataset_parse_and_replay_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("decisions.jsonl");
    let report = dir.path().join("report");
    let output = Command::new(cargo_bin("riskgate"))
        .env("RISKGATE_POLICIES_DIR", shipped_policies())
        .args(["replay", "--format", "rba", "--input"])
        .arg(fixture("rba-dataset-head.csv"))
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rows 19"), "{stdout}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 19);
    assert_eq!(lines[0]["row"], 1);
    assert_eq!(lines[0]["user_id"], "-4324475583306591935");
    assert_eq!(lines[0]["timestamp"], "2020-02-03T12:43:30.772Z");
    assert!(
        lines
            .iter()
            .all(|l| l["policy_version"].as_str().unwrap().starts_with("sha256:"))
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows"], 19);
    assert_eq!(summary["skipped"], 0);
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Decision mix over time"));
    assert!(
        !html.contains("http://") || html.contains("http://www.w3.org"),
        "self-contained"
    );
}

#[test]
fn a_generated_corpus_replays_identically_twice_and_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus-rba.csv.gz");
    let spec = CorpusSpec {
        users: 400,
        rows: 12_000,
        seed: 7,
        ..CorpusSpec::default()
    };
    let file = std::fs::File::create(&corpus).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let stats = generate(&spec, &mut gz).unwrap();
    gz.finish().unwrap();

    let run = |threads: usize| {
        let mut a = args(&corpus);
        a.options.threads = threads;
        let out = dir.path().join(format!("out-{threads}.jsonl"));
        a.out = Some(out.clone());
        (run(a).metrics, std::fs::read_to_string(out).unwrap())
    };
    let (first, first_rows) = run(2);
    assert!(
        run(2) == (first.clone(), first_rows.clone()),
        "same input, same result"
    );
    for threads in [1, 3, 4] {
        let (metrics, rows) = run(threads);
        assert_eq!(metrics, first, "{threads} threads change the summary");
        assert!(
            rows == first_rows,
            "{threads} threads change per-row decisions"
        );
    }
    assert_eq!(first.rows, stats.rows);
    assert_eq!(first.skipped, 0);
    let quality = first.active.quality.expect("the corpus is labelled");
    assert!(quality.detection_rate > 0.5, "{quality:?}");
    assert!(quality.friction_mfa < 0.2, "{quality:?}");
}

#[test]
fn a_generated_corpus_is_counted_per_attacker_kind() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("kinds.csv");
    let spec = CorpusSpec {
        users: 300,
        rows: 8_000,
        seed: 11,
        ..CorpusSpec::default()
    };
    let stats = generate(&spec, std::fs::File::create(&corpus).unwrap()).unwrap();
    let summary = run(args(&corpus));
    let m = &summary.metrics;
    let kinds = &m.active.labelled.as_ref().unwrap().kinds;
    let written: Vec<_> = stats.by_kind.iter().map(|(k, n)| (*k, *n)).collect();
    let counted: Vec<_> = kinds.iter().map(|(k, c)| (*k, c.rows.total())).collect();
    assert_eq!(counted, written);
    assert_eq!(counted.iter().map(|(_, n)| n).sum::<u64>(), m.rows);
    let takeovers: u64 = kinds.values().map(|c| c.takeover.total()).sum();
    assert_eq!(takeovers, stats.takeovers);
    let quality = m.active.quality.as_ref().unwrap();
    let attackers: Vec<_> = quality.kinds.keys().copied().collect();
    assert_eq!(attackers, AttackKind::ALL[1..]);
    let text = summary.render();
    for kind in AttackKind::ALL {
        assert!(text.contains(kind.name()), "{text}");
    }
}

/// A policy whose decisions follow the user name, so metrics can be computed by hand.
const BY_NAME: &str = r#"
fn evaluate(ctx) {
    let u = ctx.request.user_id;
    if u.starts_with("lock") { return #{ decision: "lock", score: 0.9, reasons: ["by_name"], lock_seconds: 0 }; }
    if u.starts_with("mfa") { return #{ decision: "mfa", score: 0.6, reasons: ["by_name"] }; }
    #{ decision: "allow", score: 0.1, reasons: [] }
}
"#;

/// Like BY_NAME, but steps up everything it would allow.
const STRICTER: &str = r#"
fn evaluate(ctx) {
    let u = ctx.request.user_id;
    if u.starts_with("lock") { return #{ decision: "lock", score: 0.9, reasons: ["by_name"], lock_seconds: 0 }; }
    #{ decision: "mfa", score: 0.6, reasons: ["strict"] }
}
"#;

#[test]
fn a_hand_computed_log_gives_the_exact_confusion_matrix_and_ab_shift() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("by_name.rhai"), BY_NAME).unwrap();
    std::fs::write(dir.path().join("stricter.rhai"), STRICTER).unwrap();
    // user, success, attack, takeover
    let rows = [
        ("alice", true, false, false),     // legit ok: allow
        ("bob", true, false, false),       // legit ok: allow
        ("mfa-carol", true, false, false), // legit ok: mfa (friction)
        ("mfa-dave", false, false, false), // legit failed: mfa
        ("lock-erin", true, false, false), // legit ok: lock (friction)
        ("eve", false, true, false),       // attack: allow (missed)
        ("mfa-frank", false, true, false), // attack: mfa
        ("lock-gina", false, true, false), // attack: lock
        ("mfa-hank", true, true, true),    // takeover: mfa
        ("ivan", true, true, true),        // takeover: allow (missed)
    ];
    let mut csv = String::from("user,address,time,ok,attack,ato\n");
    for (i, (user, ok, attack, ato)) in rows.iter().enumerate() {
        csv += &format!("{user},81.2.69.{i},2026-01-01 10:00:{i:02}.000,{ok},{attack},{ato}\n");
    }
    let input = dir.path().join("log.csv");
    std::fs::write(&input, csv).unwrap();
    let mut a = args(&input);
    a.map = Some(
        ColumnMap::parse(
            "user_id=user,ip=address,timestamp=time,success=ok,attack=attack,takeover=ato",
        )
        .unwrap(),
    );
    a.policy = Some(dir.path().join("by_name.rhai").display().to_string());
    a.compare = Some(dir.path().join("stricter.rhai").display().to_string());
    let m = run(a).metrics;

    assert_eq!(m.rows, 10);
    let l = m.active.labelled.as_ref().unwrap();
    assert_eq!(l.attack, counts(2, 2, 1));
    assert_eq!(l.takeover, counts(1, 1, 0));
    assert_eq!(l.legitimate, counts(2, 2, 1));
    assert_eq!(l.legitimate_success, counts(2, 1, 1));
    let q = m.active.quality.as_ref().unwrap();
    assert_eq!(q.detection_rate, 3.0 / 5.0);
    assert_eq!(q.takeover_detection_rate, 1.0 / 2.0);
    assert_eq!(q.friction_mfa, 1.0 / 4.0);
    assert_eq!(q.friction_lock, 1.0 / 4.0);
    let at_half = q.sweep.iter().find(|p| p.threshold == 0.5).unwrap();
    assert_eq!(
        (at_half.detection_rate, at_half.friction),
        (3.0 / 5.0, 2.0 / 4.0)
    );
    assert_eq!(m.active.reasons["by_name"], 6);

    // The stricter policy turns every allow into mfa and changes nothing else.
    let c = m.compare.as_ref().unwrap();
    assert_eq!(c.matrix, [[0, 4, 0], [0, 4, 0], [0, 0, 2]]);
    assert_eq!(c.samples.len(), 4);
    assert!(c.samples.iter().all(|s| s.compare.reasons == ["strict"]));
    let cq = c.side.quality.as_ref().unwrap();
    assert_eq!(cq.detection_rate, 1.0);
    assert_eq!(cq.friction_mfa, 3.0 / 4.0);
}

#[test]
fn a_policy_compared_with_itself_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("small-rba.csv");
    let spec = CorpusSpec {
        users: 100,
        rows: 3_000,
        ..CorpusSpec::default()
    };
    generate(&spec, std::fs::File::create(&corpus).unwrap()).unwrap();
    let mut a = args(&corpus);
    a.compare = Some("default".into());
    let m = run(a).metrics;
    let c = m.compare.unwrap();
    let off_diagonal: u64 = (0..3)
        .flat_map(|i| (0..3).map(move |j| (i, j)))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| c.matrix[i][j])
        .sum();
    assert_eq!(off_diagonal, 0);
    assert!(c.samples.is_empty());
    assert_eq!(c.side.decisions, m.active.decisions);
}

#[tokio::test]
async fn the_servers_decision_log_replays_to_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = TestServer::start(Settings {
        decision_log: Some(log.clone()),
        ..Settings::default()
    })
    .await;
    let mut expected = 0;
    for day in 1..=3 {
        let at = format!("2026-11-0{day}T09:00:00Z");
        server
            .evaluate(
                Login {
                    user: "kim",
                    ip: LONDON,
                    device: "kim-laptop",
                    at: &at,
                    ..Login::default()
                }
                .body(),
            )
            .await;
        expected += 1;
    }
    let away = server
        .evaluate(
            Login {
                user: "kim",
                ip: SEATTLE,
                device: "kim-phone",
                ua: FIREFOX_LINUX,
                at: "2026-11-04T09:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(away["decision"], "mfa");
    server
        .event(
            json!({"type": "mfa_passed", "user_id": "kim", "timestamp": "2026-11-04T09:01:00Z",
                      "request_id": away["request_id"]}),
        )
        .await;
    let back = server
        .evaluate(
            Login {
                user: "kim",
                ip: SEATTLE,
                device: "kim-phone",
                ua: FIREFOX_LINUX,
                at: "2026-11-04T10:00:00Z",
                ..Login::default()
            }
            .body(),
        )
        .await;
    assert_eq!(
        back["decision"], "allow",
        "learned through the logged mfa_passed: {back}"
    );
    for i in 0..12 {
        let at = format!("2026-11-05T10:00:{i:02}Z");
        server
            .evaluate(
                Login {
                    user: "kim",
                    ip: CHINA,
                    device: "bot",
                    ua: FIREFOX_LINUX,
                    at: &at,
                    password_ok: Some(false),
                }
                .body(),
            )
            .await;
    }
    expected += 2 + 12;

    let mut server = server;
    server.stop().await;
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(
        lines,
        expected + 1,
        "every evaluation and the event are on disk"
    );

    let config = server.settings.clone().resolve().unwrap();
    let m =
        tokio::task::spawn_blocking(move || replay::run(&args(&log), &config, &|_| {}).unwrap())
            .await
            .unwrap()
            .metrics;
    assert_eq!(m.rows, expected as u64);
    assert_eq!(m.events, 1);
    let agreement = m.logged_agreement.unwrap();
    assert_eq!((agreement.same, agreement.different), (expected as u64, 0));
    assert!(m.active.decisions.lock >= 1 && m.active.decisions.mfa >= 1);
}
