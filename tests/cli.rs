//! The `riskgate` binary: policy check, geoip lookup, and serve without GeoIP data.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failed run"
)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use common::*;
use mmdb_writer::{IpVersion, Value, Writer};

fn riskgate() -> Command {
    let mut cmd = Command::new(cargo_bin("riskgate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn policy_check_accepts_the_shipped_policy_and_reports_syntax_errors_with_position() {
    let ok = riskgate()
        .args(["policy", "check"])
        .arg(shipped_policies().join("default.rhai"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("sha256:"));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.rhai");
    std::fs::write(&broken, "fn evaluate(ctx) {\n    let x = ;\n}\n").unwrap();
    let out = riskgate()
        .args(["policy", "check"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.rhai:2:13"),
        "line and column: {stderr}"
    );

    let no_entry = dir.path().join("no_entry.rhai");
    std::fs::write(&no_entry, "fn decide(ctx) { 1 }").unwrap();
    let out = riskgate()
        .args(["policy", "check"])
        .arg(&no_entry)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fn evaluate(ctx)"));
}

/// An ip-location-db style database: flat records, f32 coordinates, one file per IP version.
fn write_flat_dbs(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let record = |country: &str, city: &str, lat: f32, lon: f32| {
        Value::map([
            ("country_code", Value::from(country)),
            ("city", Value::from(city)),
            ("state1", Value::from("")),
            ("latitude", Value::Float(lat)),
            ("longitude", Value::Float(lon)),
        ])
    };
    let mut v4 = Writer::builder("ip-location-db-city")
        .ip_version(IpVersion::V4)
        .build();
    v4.insert_value(
        "81.2.69.0/24".parse::<ipnet::IpNet>().unwrap(),
        record("GB", "London", 51.5, -0.12),
    )
    .unwrap();
    let mut v6 = Writer::new("ip-location-db-city");
    v6.insert_value(
        "2a02:8100::/32".parse::<ipnet::IpNet>().unwrap(),
        record("DE", "Berlin", 52.52, 13.4),
    )
    .unwrap();
    let (p4, p6) = (dir.join("city-ipv4.mmdb"), dir.join("city-ipv6.mmdb"));
    std::fs::write(&p4, v4.to_bytes().unwrap()).unwrap();
    std::fs::write(&p6, v6.to_bytes().unwrap()).unwrap();
    (p4, p6)
}

fn lookup(env: &[(&str, String)], ip: &str) -> serde_json::Value {
    let out = riskgate()
        .envs(env.iter().cloned())
        .args(["geoip", "lookup", ip])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn geoip_lookup_reads_the_geoip2_and_the_flat_schema_and_asn_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (city, asn) = write_geoip(dir.path());
    let env = [
        ("RISKGATE_GEOIP_CITY", city.display().to_string()),
        ("RISKGATE_GEOIP_ASN", asn.display().to_string()),
    ];
    let geo = lookup(&env, LONDON);
    assert_eq!(geo["country"], "GB");
    assert_eq!(geo["city"], "London");
    assert_eq!(geo["asn"], 20712);
    assert_eq!(geo["as_org"], "Andrews & Arnold Ltd");
    assert_eq!(geo["accuracy_km"], 20.0);
    let private = lookup(&env, "192.168.1.20");
    assert_eq!(private["private_ip"], true);
    assert!(private["country"].is_null());
    assert!(
        lookup(&env, "8.8.8.8")["country"].is_null(),
        "missing from the DB: empty"
    );

    let (v4, v6) = write_flat_dbs(dir.path());
    let csv = dir.path().join("asn-ipv4.csv");
    std::fs::write(
        &csv,
        "81.2.69.0,81.2.69.255,20712,\"Andrews & Arnold, Ltd\"\n",
    )
    .unwrap();
    let env = [
        (
            "RISKGATE_GEOIP_CITY",
            format!("{},{}", v4.display(), v6.display()),
        ),
        ("RISKGATE_GEOIP_ASN", csv.display().to_string()),
    ];
    let geo = lookup(&env, LONDON);
    assert_eq!(geo["country"], "GB");
    assert_eq!(geo["city"], "London");
    assert!(
        (geo["lat"].as_f64().unwrap() - 51.5).abs() < 1e-4,
        "f32 coordinates: {geo}"
    );
    assert_eq!(geo["as_org"], "Andrews & Arnold, Ltd");
    let berlin = lookup(&env, "2a02:8100::1");
    assert_eq!(berlin["city"], "Berlin", "IPv6 from the second file");
}

#[test]
fn serve_starts_without_geoip_warns_once_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = riskgate()
        .current_dir(dir.path())
        .env("RISKGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RISKGATE_POLICIES_DIR", shipped_policies())
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    let geoip: Vec<&&str> = warnings.iter().filter(|l| l.contains("GeoIP")).collect();
    assert_eq!(geoip.len(), 1, "{stderr}");
    assert!(geoip[0].contains("RISKGATE_GEOIP_CITY") && geoip[0].contains("RISKGATE_GEOIP_ASN"));
    // Without API keys, the operator is told what loopback-only trust means.
    assert!(
        warnings.iter().any(|l| l.contains("RISKGATE_API_KEYS")),
        "{stderr}"
    );
    assert_eq!(warnings.len(), 2, "{stderr}");
}

#[test]
fn serve_refuses_a_reachable_address_without_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = riskgate()
        .current_dir(dir.path())
        .env("RISKGATE_LISTEN", "0.0.0.0:0")
        .env("RISKGATE_POLICIES_DIR", shipped_policies())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RISKGATE_API_KEYS") && stderr.contains("RISKGATE_ALLOW_NO_KEYS"),
        "{stderr}"
    );
}

#[test]
fn replay_scores_with_the_policy_file_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("logins.csv");
    let out = riskgate()
        .args(["gen", "--rows", "2000", "--users", "100", "--out"])
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let strict = dir.path().join("strict.rhai");
    std::fs::write(
        &strict,
        "fn evaluate(ctx) { #{ decision: \"mfa\", score: 1.0, reasons: [\"strict\"] } }",
    )
    .unwrap();
    let out = riskgate()
        .args(["replay", "--input"])
        .arg(&corpus)
        .arg("--policy")
        .arg(&strict)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("policy `strict`"), "{stdout}");
    assert!(stdout.contains("allow           0"), "{stdout}");
}

/// Copies a directory tree (files and subdirectories).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Runs `riskgate policy test` with `args`; returns the exit code and stdout + stderr.
fn policy_test(env: &[(&str, &std::path::Path)], args: &[&std::path::Path]) -> (i32, String) {
    let out = riskgate()
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .args(["policy", "test"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

#[test]
fn policy_test_passes_on_the_shipped_cases_and_a_changed_expectation_fails_naming_the_case() {
    let shipped = shipped_policies();
    let (code, out) = policy_test(&[], &[&shipped]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("default.toml: ") && out.contains(" passed"),
        "{out}"
    );
    // Without DIR, the configured policies directory.
    let (code, out) = policy_test(&[("RISKGATE_POLICIES_DIR", &shipped)], &[]);
    assert_eq!(code, 0, "{out}");

    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped, &policies);
    let cases = policies.join("tests/default.toml");
    let text = std::fs::read_to_string(&cases).unwrap();
    let case = "thirty attempts from one IP in a minute step up";
    let expect = "expect = { decision = \"mfa\", reasons = [\"high_velocity\"]";
    let at = text.find(case).unwrap();
    let changed = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen(
            expect,
            "expect = { decision = \"allow\", reasons = [\"high_velocity\"]",
            1
        )
    );
    assert_ne!(changed, text);
    std::fs::write(&cases, changed).unwrap();
    let (code, out) = policy_test(&[], &[&policies]);
    assert_eq!(code, 1, "{out}");
    for shown in [
        &format!("FAIL {}:", cases.display()),
        &format!("case `{case}` (policy `default`)"),
        "expected: decision allow",
        "got:      decision mfa",
        "differs:  decision",
        "ip.attempts_1m = 30",
        "1 failed",
    ] {
        assert!(out.contains(shown), "`{shown}` missing from:\n{out}");
    }
}

#[test]
fn policy_test_exits_2_when_the_cases_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    let broken = policies.join("tests/broken.toml");
    std::fs::write(
        &broken,
        "[[case]]\nname = \"typo\"\nctx.user.failures_15m = 1\nexpct = { decision = \"allow\" }\n",
    )
    .unwrap();
    let (code, out) = policy_test(&[], &[&policies]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "ERROR {}:4: unknown field `expct`",
            broken.display()
        )),
        "{out}"
    );

    std::fs::write(policies.join("default.rhai"), "fn evaluate(ctx) {").unwrap();
    let (code, out) = policy_test(&[], &[&policies]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("default.rhai:"),
        "the script's position: {out}"
    );

    let (code, out) = policy_test(&[], &[&dir.path().join("nowhere")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nowhere"), "{out}");
}
