//! Unit tests of the engine's state machine: `evaluate` and `record` with explicit event times
//! on the in-memory store, under a test policy whose decision the attempt itself chooses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::*;
use crate::enrich::{DeviceParser, GeoIp};
use crate::model::{Assessment, Attempt, Decision, Outcome, OutcomeKind, Recorded};
use crate::policy::{Limits, Lists, PolicySet, Runtime, Selection};
use crate::signals::{EventTime, Signals};
use crate::state::bounded::Placement;
use crate::state::memory::{Capacity, MemoryStore};
use crate::state::{
    AttemptKeys, LoginFacts, Observation, Pending, Snapshot, Store, StoreError, StoreFuture,
    UserActivity, UserProfile, finish,
};
use crate::{DAY, MINUTE, Millis, SECOND};

/// Decides what `attributes.decide` says (`allow` by default; `error` makes the policy fail)
/// and locks for `attributes.lock_seconds` (the engine's default when absent).
const POLICY: &str = r#"
fn evaluate(ctx) {
    let a = ctx.request.attributes;
    let decision = a.decide ?? "allow";
    if decision == "error" { throw "the attempt asked the policy to fail"; }
    #{ decision: decision, score: 0.0, reasons: [], lock_seconds: a.lock_seconds }
}
"#;

fn engine_with(policy_source: &str, settings: EngineSettings) -> Engine {
    let store = Arc::new(MemoryStore::new(Capacity::default(), Placement::random()));
    engine_over(policy_source, settings, store)
}

fn engine_over(policy_source: &str, settings: EngineSettings, store: Arc<dyn Store>) -> Engine {
    let runtime = Runtime::new(Limits::default());
    let policy = runtime
        .compile("default", "test.rhai", policy_source)
        .unwrap();
    let policies = PolicySet::new(
        BTreeMap::from([("default".into(), Arc::new(policy))]),
        Selection {
            default: "default".into(),
            ..Default::default()
        },
        Lists::default(),
    )
    .unwrap();
    Engine::new(
        GeoIp::default(),
        DeviceParser::new(100),
        store,
        runtime,
        policies,
        settings,
    )
}

fn engine(policy_source: &str) -> Engine {
    engine_with(policy_source, EngineSettings::default())
}

/// 2026-05-28T20:26:40Z, any fixed instant: tests give times as offsets from it.
const T0: Millis = 1_780_000_000_000;
const IP: &str = "192.0.2.1";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// The instant `offset` ms after [`T0`].
fn time(offset: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(T0 + offset).unwrap()
}

/// An attempt by `user` from [`IP`] on device `laptop`, on which the policy decides `decide`.
fn attempt(user: &str, decide: &str, password_ok: Option<bool>) -> Attempt {
    let mut a = Attempt::new(user, IP.parse().unwrap());
    a.device_id = Some("laptop".into());
    a.password_ok = password_ok;
    a.attributes.insert("decide".into(), decide.into());
    a
}

/// Evaluates at `offset` (the attempt carries no timestamp, so `now` is its time).
fn eval(engine: &Engine, attempt: &Attempt, offset: Millis) -> Assessment {
    finish(engine.evaluate(attempt, time(offset))).unwrap()
}

/// An event tied to an attempt by its request id.
fn event(kind: OutcomeKind, user: &str, request_id: &str) -> Outcome {
    Outcome {
        kind,
        user_id: user.into(),
        ip: None,
        device_id: None,
        user_agent: None,
        request_id: Some(request_id.into()),
        timestamp: None,
    }
}

/// An event without a request id, from `ip` on device `laptop`.
fn standalone(kind: OutcomeKind, user: &str, ip: &str) -> Outcome {
    Outcome {
        kind,
        user_id: user.into(),
        ip: Some(ip.parse().unwrap()),
        device_id: Some("laptop".into()),
        user_agent: None,
        request_id: None,
        timestamp: None,
    }
}

fn record(engine: &Engine, outcome: &Outcome, offset: Millis) -> Recorded {
    finish(engine.record(outcome, time(offset))).unwrap()
}

/// The signals of `attempt` at `offset`, observed without side effects on the user: the
/// decision is a lock of 0 s, which neither locks, learns, parks nor counts a failure (the IP
/// still counts the attempt).
fn probe_attempt(engine: &Engine, mut attempt: Attempt, offset: Millis) -> Arc<Signals> {
    attempt.password_ok = Some(true);
    attempt.attributes.insert("decide".into(), "lock".into());
    attempt.attributes.insert("lock_seconds".into(), 0.into());
    let assessment = eval(engine, &attempt, offset);
    assert_eq!(assessment.verdict.lock_seconds, Some(0));
    assessment.signals
}

/// [`probe_attempt`] for `user` on device `laptop` from `ip`.
fn probe(engine: &Engine, user: &str, ip: &str, offset: Millis) -> Arc<Signals> {
    let mut a = attempt(user, "lock", None);
    a.ip = ip.parse().unwrap();
    probe_attempt(engine, a, offset)
}

/// A lock decision for `user` at `offset`, for `seconds`.
fn lock(engine: &Engine, user: &str, seconds: i64, offset: Millis) -> Assessment {
    let mut a = attempt(user, "lock", Some(true));
    a.attributes.insert("lock_seconds".into(), seconds.into());
    eval(engine, &a, offset)
}

// --- Attempts with the password result -----------------------------------------------------

#[test]
fn allow_with_the_right_password_learns_at_once() {
    let e = engine(POLICY);
    let first = eval(&e, &attempt("alice", "allow", Some(true)), 0);
    assert!(first.signals.user.first_login);
    assert!(!first.signals.device.known);

    let next = probe(&e, "alice", IP, MINUTE);
    assert!(!next.user.first_login);
    assert!(next.device.known);
    assert_eq!(next.user.successes, 1);
    assert_eq!(next.user.last_login_at, Some(EventTime(T0)));
}

#[test]
fn a_wrong_password_counts_against_user_and_ip_and_teaches_nothing() {
    let e = engine(POLICY);
    let failed = eval(&e, &attempt("alice", "allow", Some(false)), 0);
    // Counters include the attempt being judged.
    assert_eq!(failed.signals.user.failures_15m, 1);
    assert_eq!(failed.signals.ip.failures_10m, 1);

    // The attempt's outcome is already counted: later events for it change nothing.
    for kind in [OutcomeKind::LoginFailed, OutcomeKind::MfaPassed] {
        let later = event(kind, "alice", &failed.request_id);
        assert_eq!(record(&e, &later, SECOND), Recorded::Ignored, "{kind:?}");
    }

    let next = probe(&e, "alice", IP, MINUTE);
    assert_eq!(next.user.failures_15m, 1);
    assert_eq!(next.ip.failures_10m, 1);
    assert!(next.user.first_login);
    assert!(!next.device.known);
}

#[test]
fn mfa_with_the_right_password_waits_and_mfa_passed_learns() {
    let e = engine(POLICY);
    let parked = eval(&e, &attempt("alice", "mfa", Some(true)), 0);
    assert!(
        probe(&e, "alice", IP, SECOND).user.first_login,
        "nothing learned yet"
    );

    let passed = event(OutcomeKind::MfaPassed, "alice", &parked.request_id);
    assert_eq!(record(&e, &passed, 2 * SECOND), Recorded::Learned);
    let next = probe(&e, "alice", IP, MINUTE);
    assert!(next.device.known);
    assert_eq!(next.user.successes, 1);
    // The login is learned at the time the step-up passed.
    assert_eq!(next.user.last_login_at, Some(EventTime(T0 + 2 * SECOND)));
}

#[test]
fn mfa_failed_counts_against_the_user_only_and_teaches_nothing() {
    let e = engine(POLICY);
    let parked = eval(&e, &attempt("alice", "mfa", Some(true)), 0);
    let failed = event(OutcomeKind::MfaFailed, "alice", &parked.request_id);
    assert_eq!(record(&e, &failed, SECOND), Recorded::FailureCounted);

    let next = probe(&e, "alice", IP, MINUTE);
    assert_eq!(next.user.failures_15m, 1);
    assert_eq!(
        next.ip.failures_10m, 0,
        "a failed step-up is the user's alone"
    );
    assert!(next.user.first_login);
    assert!(!next.device.known);
}

#[test]
fn an_outcome_counts_once() {
    let e = engine(POLICY);
    let parked = eval(&e, &attempt("alice", "mfa", Some(true)), 0);
    let id = &parked.request_id;
    let failed = event(OutcomeKind::MfaFailed, "alice", id);
    assert_eq!(record(&e, &failed, SECOND), Recorded::FailureCounted);
    assert_eq!(record(&e, &failed, SECOND), Recorded::Ignored);
    let passed = event(OutcomeKind::MfaPassed, "alice", id);
    assert_eq!(record(&e, &passed, SECOND), Recorded::Ignored);

    let next = probe(&e, "alice", IP, MINUTE);
    assert_eq!(next.user.failures_15m, 1);
    assert!(!next.device.known);
}

// --- Pre-auth attempts (password result not known yet) ------------------------------------

#[test]
fn pre_auth_allow_learns_on_login_succeeded() {
    let e = engine(POLICY);
    let parked = eval(&e, &attempt("alice", "allow", None), 0);
    assert!(probe(&e, "alice", IP, SECOND).user.first_login);

    let ok = event(OutcomeKind::LoginSucceeded, "alice", &parked.request_id);
    assert_eq!(record(&e, &ok, 2 * SECOND), Recorded::Learned);
    assert!(probe(&e, "alice", IP, MINUTE).device.known);
}

#[test]
fn pre_auth_mfa_learns_only_after_both_the_password_and_the_step_up() {
    let e = engine(POLICY);
    let parked = eval(&e, &attempt("alice", "mfa", None), 0);
    let id = &parked.request_id;

    let ok = event(OutcomeKind::LoginSucceeded, "alice", id);
    assert_eq!(record(&e, &ok, SECOND), Recorded::AwaitingMfa);
    assert!(!probe(&e, "alice", IP, 2 * SECOND).device.known);

    let passed = event(OutcomeKind::MfaPassed, "alice", id);
    assert_eq!(record(&e, &passed, 3 * SECOND), Recorded::Learned);
    assert!(probe(&e, "alice", IP, MINUTE).device.known);
}

#[test]
fn pre_auth_mfa_passed_first_awaits_the_password_and_a_wrong_one_teaches_nothing() {
    let e = engine(POLICY);
    let parked = eval(&e, &attempt("alice", "mfa", None), 0);
    let id = &parked.request_id;

    let passed = event(OutcomeKind::MfaPassed, "alice", id);
    assert_eq!(record(&e, &passed, SECOND), Recorded::AwaitingPassword);
    assert!(!probe(&e, "alice", IP, 2 * SECOND).device.known);

    let wrong = event(OutcomeKind::LoginFailed, "alice", id);
    assert_eq!(record(&e, &wrong, 3 * SECOND), Recorded::FailureCounted);
    let next = probe(&e, "alice", IP, MINUTE);
    assert!(!next.device.known);
    assert!(next.user.first_login);
    assert_eq!(next.user.failures_15m, 1);
    assert_eq!(
        next.ip.failures_10m, 1,
        "a wrong password counts against the IP"
    );
}

// --- Request ids ---------------------------------------------------------------------------

#[test]
fn another_users_event_is_ignored_and_leaves_the_attempt_parked_for_its_user() {
    let e = engine(POLICY);
    let parked = eval(&e, &attempt("alice", "mfa", Some(true)), 0);
    let id = &parked.request_id;

    let mallory = event(OutcomeKind::MfaFailed, "mallory", id);
    assert_eq!(record(&e, &mallory, SECOND), Recorded::Ignored);
    assert_eq!(probe(&e, "mallory", IP, 2 * SECOND).user.failures_15m, 0);
    let mallory = event(OutcomeKind::MfaPassed, "mallory", id);
    assert_eq!(record(&e, &mallory, SECOND), Recorded::Ignored);
    assert!(probe(&e, "mallory", IP, 2 * SECOND).user.first_login);

    let alice = event(OutcomeKind::MfaPassed, "alice", id);
    assert_eq!(record(&e, &alice, 3 * SECOND), Recorded::Learned);
    assert!(probe(&e, "alice", IP, MINUTE).device.known);
}

#[test]
fn an_unknown_request_id_is_ignored() {
    let e = engine(POLICY);
    for kind in [
        OutcomeKind::LoginFailed,
        OutcomeKind::LoginSucceeded,
        OutcomeKind::MfaPassed,
        OutcomeKind::MfaFailed,
    ] {
        let unknown = event(kind, "alice", "no-such-request");
        assert_eq!(record(&e, &unknown, 0), Recorded::Ignored, "{kind:?}");
    }
    let next = probe(&e, "alice", IP, MINUTE);
    assert_eq!(next.user.failures_15m, 0);
    assert!(next.user.first_login);
}

// --- Events without a request id -----------------------------------------------------------

#[test]
fn standalone_login_failed_counts_against_user_and_ip() {
    let e = engine(POLICY);
    let failed = standalone(OutcomeKind::LoginFailed, "alice", IP);
    assert_eq!(record(&e, &failed, 0), Recorded::FailureCounted);
    let next = probe(&e, "alice", IP, MINUTE);
    assert_eq!(next.user.failures_15m, 1);
    assert_eq!(next.ip.failures_10m, 1);
    assert!(next.user.first_login);
}

#[test]
fn standalone_mfa_failed_counts_against_the_user_only() {
    let e = engine(POLICY);
    let failed = standalone(OutcomeKind::MfaFailed, "alice", IP);
    assert_eq!(record(&e, &failed, 0), Recorded::FailureCounted);
    let next = probe(&e, "alice", IP, MINUTE);
    assert_eq!(next.user.failures_15m, 1);
    assert_eq!(next.ip.failures_10m, 0);
}

#[test]
fn standalone_successes_teach_nothing() {
    // Anyone holding a client key could send them: only a scored attempt's outcome teaches.
    let e = engine(POLICY);
    for kind in [OutcomeKind::LoginSucceeded, OutcomeKind::MfaPassed] {
        let ok = standalone(kind, "alice", IP);
        assert_eq!(record(&e, &ok, 0), Recorded::Ignored, "{kind:?}");
    }
    let next = probe(&e, "alice", IP, MINUTE);
    assert!(next.user.first_login);
    assert!(!next.device.known);
}

// --- Trusted devices -----------------------------------------------------------------------

fn trust(user: &str, device_id: Option<&str>, user_agent: Option<&str>) -> Outcome {
    Outcome {
        kind: OutcomeKind::DeviceTrusted,
        user_id: user.into(),
        ip: None,
        device_id: device_id.map(Into::into),
        user_agent: user_agent.map(Into::into),
        request_id: None,
        timestamp: None,
    }
}

#[test]
fn trusting_an_unknown_device_is_ignored_and_does_not_make_it_known() {
    let e = engine(POLICY);
    // No profile at all, then a profile that knows only `laptop`.
    assert_eq!(
        record(&e, &trust("alice", Some("evil"), None), 0),
        Recorded::Ignored
    );
    eval(&e, &attempt("alice", "allow", Some(true)), SECOND);
    assert_eq!(
        record(&e, &trust("alice", Some("evil"), None), 2 * SECOND),
        Recorded::Ignored
    );
    let mut evil = attempt("alice", "lock", None);
    evil.device_id = Some("evil".into());
    let next = probe_attempt(&e, evil, MINUTE);
    assert!(!next.device.known);
    assert!(!next.device.trusted);
}

#[test]
fn trusting_a_known_device_marks_it_trusted() {
    let e = engine(POLICY);
    eval(&e, &attempt("alice", "allow", Some(true)), 0);
    assert!(!probe(&e, "alice", IP, SECOND).device.trusted);
    assert_eq!(
        record(&e, &trust("alice", Some("laptop"), None), 2 * SECOND),
        Recorded::DeviceTrusted
    );
    let next = probe(&e, "alice", IP, MINUTE);
    assert!(next.device.known);
    assert!(next.device.trusted);
    // Trust belongs to the user who logged in with the device.
    assert_eq!(
        record(&e, &trust("bob", Some("laptop"), None), 2 * SECOND),
        Recorded::Ignored
    );
}

#[test]
fn without_a_device_id_the_user_agent_is_the_device_to_trust() {
    let e = engine(POLICY);
    let mut browser = attempt("alice", "allow", Some(true));
    browser.device_id = None;
    browser.user_agent = Some(CHROME.into());
    eval(&e, &browser, 0);

    let other_agent = format!("{CHROME} Edg/120.0.0.0");
    assert_eq!(
        record(&e, &trust("alice", None, Some(&other_agent)), SECOND),
        Recorded::Ignored
    );
    assert_eq!(
        record(&e, &trust("alice", None, Some(CHROME)), SECOND),
        Recorded::DeviceTrusted
    );
    let next = probe_attempt(&e, browser, MINUTE);
    assert!(next.device.known);
    assert!(next.device.trusted);
}

#[test]
fn a_browser_update_is_the_same_device_and_a_downgrade_another_os_or_browser_is_not() {
    let e = engine(POLICY);
    let chrome = |version: u32, platform: &str| {
        format!(
            "Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/{version}.0.0.0 Safari/537.36"
        )
    };
    let windows = "Windows NT 10.0; Win64; x64";
    let on = |agent: String| {
        let mut a = attempt("alice", "allow", Some(true));
        a.device_id = None;
        a.user_agent = Some(agent);
        a
    };
    eval(&e, &on(chrome(120, windows)), 0);
    let device = |agent: String, offset| probe_attempt(&e, on(agent), offset).device.clone();

    let updated = device(chrome(122, windows), MINUTE);
    assert!(updated.known && updated.updated, "{updated:?}");
    let same = device(chrome(120, windows), 2 * MINUTE);
    assert!(same.known && !same.updated, "{same:?}");
    let four_weeks = 28 * DAY;
    let later = device(chrome(124, windows), 2 * four_weeks);
    assert!(
        later.known && later.updated,
        "two releases later: {later:?}"
    );
    let firefox =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
    for (agent, at, what) in [
        (chrome(119, windows), MINUTE, "a downgrade"),
        (chrome(123, windows), MINUTE, "three versions within a day"),
        (
            chrome(125, windows),
            2 * four_weeks,
            "five versions in eight weeks",
        ),
        (chrome(140, windows), 52 * 7 * DAY, "a leap of 20 versions"),
        (chrome(121, "X11; Linux x86_64"), MINUTE, "another OS"),
        (firefox.to_owned(), MINUTE, "another browser"),
    ] {
        let other = device(agent, at);
        assert!(!other.known, "{what} is another device: {other:?}");
    }

    // Once the update logs in fully, the newer version is the one remembered.
    eval(&e, &on(chrome(122, windows)), 4 * MINUTE);
    let older = device(chrome(121, windows), 5 * MINUTE);
    assert!(
        !older.known,
        "back below the newest version seen: {older:?}"
    );
}

#[test]
fn a_new_ip_prefix_is_one_no_successful_login_came_from() {
    let e = engine(POLICY);
    eval(&e, &attempt("alice", "allow", Some(true)), 0);
    let nearby = probe(&e, "alice", "192.0.2.77", MINUTE);
    assert!(!nearby.user.new_ip_prefix, "the same /24");
    let elsewhere = probe(&e, "alice", "198.51.100.7", 2 * MINUTE);
    assert!(elsewhere.user.new_ip_prefix);
}

// --- Locks ---------------------------------------------------------------------------------

#[test]
fn a_lock_decision_locks_until_its_time_plus_lock_seconds() {
    let e = engine(POLICY);
    let locking = lock(&e, "alice", 60, 0);
    assert_eq!(locking.verdict.decision, Decision::Lock);
    assert_eq!(locking.verdict.lock_seconds, Some(60));
    assert!(!locking.signals.user.locked, "judged before its own lock");

    let next = probe(&e, "alice", IP, 10 * SECOND);
    assert!(next.user.locked);
    assert_eq!(next.user.locked_until, Some(EventTime(T0 + 60 * SECOND)));
    assert_eq!(next.user.lock_remaining_s, 50);
    assert!(!probe(&e, "bob", IP, 10 * SECOND).user.locked);
}

#[test]
fn a_lock_without_lock_seconds_lasts_the_default_lock_seconds() {
    let e = engine(POLICY);
    let locking = eval(&e, &attempt("alice", "lock", Some(true)), 0);
    let default = EngineSettings::default().default_lock_seconds;
    assert_eq!(locking.verdict.lock_seconds, Some(default));
    let next = probe(&e, "alice", IP, SECOND);
    assert_eq!(
        next.user.locked_until,
        Some(EventTime(T0 + default as Millis * SECOND))
    );
}

#[test]
fn a_shorter_lock_never_shortens_a_longer_one() {
    let e = engine(POLICY);
    lock(&e, "alice", 3600, 0);
    lock(&e, "alice", 60, MINUTE);
    let next = probe(&e, "alice", IP, 2 * MINUTE);
    assert_eq!(next.user.locked_until, Some(EventTime(T0 + 3600 * SECOND)));
    // A later lock ending after the current one extends it.
    lock(&e, "alice", 3600, 10 * MINUTE);
    let next = probe(&e, "alice", IP, 11 * MINUTE);
    assert_eq!(
        next.user.locked_until,
        Some(EventTime(T0 + 10 * MINUTE + 3600 * SECOND))
    );
}

#[test]
fn lock_seconds_zero_refuses_without_locking() {
    let e = engine(POLICY);
    let refused = lock(&e, "alice", 0, 0);
    assert_eq!(refused.verdict.decision, Decision::Lock);
    assert_eq!(refused.verdict.lock_seconds, Some(0));
    let next = probe(&e, "alice", IP, 1);
    assert!(!next.user.locked);
    assert_eq!(next.user.locked_until, None);
    assert_eq!(
        finish(e.store.activity("alice")).unwrap().locked_until,
        None
    );
}

#[test]
fn a_lock_ends_exactly_at_its_end() {
    let e = engine(POLICY);
    lock(&e, "alice", 60, 0);
    let end = 60 * SECOND;
    let before = probe(&e, "alice", IP, end - 1);
    assert!(before.user.locked);
    assert_eq!(
        before.user.lock_remaining_s, 1,
        "a partial second rounds up"
    );
    let at_end = probe(&e, "alice", IP, end);
    assert!(!at_end.user.locked);
    assert_eq!(at_end.user.lock_remaining_s, 0);
    assert_eq!(at_end.user.locked_until, None);
}

// --- Event time ----------------------------------------------------------------------------

#[test]
fn failures_15m_counts_failures_after_now_minus_15m_up_to_now() {
    let e = engine(POLICY);
    eval(&e, &attempt("alice", "allow", Some(false)), 0);
    let count = |offset| probe(&e, "alice", IP, offset).user.clone();
    assert_eq!(
        count(-1).failures_15m,
        0,
        "a failure after now does not count"
    );
    assert_eq!(count(0).failures_15m, 1, "a failure at now counts");
    assert_eq!(count(15 * MINUTE - 1).failures_15m, 1);
    let at_edge = count(15 * MINUTE);
    assert_eq!(at_edge.failures_15m, 0, "the window's start is excluded");
    assert_eq!(at_edge.failures_1h, 1);
}

#[test]
fn event_time_is_the_attempts_or_events_own_timestamp_else_now() {
    let e = engine(POLICY);
    // No timestamp: the failure happens at `now` (0).
    eval(&e, &attempt("alice", "allow", Some(false)), 0);
    // A timestamp wins over `now`: 15 min after the failure, it is out of the window.
    let mut later = attempt("alice", "lock", None);
    later.timestamp = Some(time(15 * MINUTE));
    let assessment = finish(e.evaluate(&later, time(MINUTE))).unwrap();
    assert_eq!(
        assessment.signals.time.timestamp,
        EventTime(T0 + 15 * MINUTE)
    );
    assert_eq!(assessment.signals.user.failures_15m, 0);
    assert_eq!(probe(&e, "alice", IP, MINUTE).user.failures_15m, 1);

    // Same for events: this failure happened at 0, though reported at 20 min.
    let mut failed = standalone(OutcomeKind::LoginFailed, "bob", IP);
    failed.timestamp = Some(time(0));
    assert_eq!(record(&e, &failed, 20 * MINUTE), Recorded::FailureCounted);
    assert_eq!(probe(&e, "bob", IP, MINUTE).user.failures_15m, 1);
}

// --- Policy failures -----------------------------------------------------------------------

#[test]
fn a_failing_policy_yields_the_fail_safe_decision_marked_fallback() {
    let e = engine(POLICY);
    let failed = eval(&e, &attempt("alice", "error", Some(true)), 0);
    let verdict = failed.verdict;
    assert_eq!(verdict.decision, EngineSettings::default().fail_safe);
    assert_eq!(verdict.reasons, [POLICY_ERROR_REASON]);
    assert_eq!(POLICY_ERROR_REASON, "policy_error");
    assert!(verdict.fallback);
    assert_eq!(verdict.lock_seconds, None);
    assert_eq!(verdict.policy.name, "default");

    let fine = eval(&e, &attempt("alice", "allow", Some(true)), SECOND);
    assert!(!fine.verdict.fallback);
}

// --- What-if ----------------------------------------------------------------------------

/// A what-if of `attempt` at `offset`, under the policy in force or `policy`.
fn simulate(
    engine: &Engine,
    attempt: &Attempt,
    offset: Millis,
    policy: Option<Arc<Policy>>,
) -> Assessment {
    finish(engine.simulate(attempt, time(offset), policy)).unwrap()
}

#[test]
fn a_what_if_sees_what_evaluate_would_and_changes_nothing() {
    let e = engine(POLICY);
    eval(&e, &attempt("alice", "allow", Some(true)), 0);
    eval(&e, &attempt("alice", "mfa", Some(false)), SECOND);
    let wrong = attempt("alice", "lock", Some(false));
    let what_ifs: Vec<Assessment> = (0..20)
        .map(|_| simulate(&e, &wrong, MINUTE, None))
        .collect();
    let real = eval(&e, &wrong, MINUTE);
    for what_if in &what_ifs {
        assert_eq!(
            serde_json::to_value(&what_if.signals).unwrap(),
            serde_json::to_value(&real.signals).unwrap(),
            "the same signals, this attempt counted once"
        );
        assert_eq!(what_if.verdict, real.verdict);
    }
    assert_eq!(real.signals.user.failures_15m, 2);
    assert_eq!(real.signals.ip.failures_10m, 2);

    // A new device allowed in a what-if is not learned, nor parked for a step-up.
    let mut phone = attempt("bob", "allow", Some(true));
    phone.device_id = Some("phone".into());
    simulate(&e, &phone, MINUTE, None);
    let stepped_up = simulate(&e, &attempt("bob", "mfa", Some(true)), MINUTE, None);
    let passed = event(OutcomeKind::MfaPassed, "bob", &stepped_up.request_id);
    assert_eq!(record(&e, &passed, 2 * MINUTE), Recorded::Ignored);
    assert!(probe(&e, "bob", IP, 3 * MINUTE).user.first_login);
}

#[test]
fn a_what_if_runs_the_policy_it_brings_without_the_shadow() {
    let e = engine(POLICY);
    let strict = e
        .runtime()
        .compile(
            "strict",
            "strict.rhai",
            "fn evaluate(ctx) { #{decision: \"lock\", reasons: [\"what_if\"]} }",
        )
        .unwrap();
    let answer = simulate(
        &e,
        &attempt("alice", "allow", None),
        0,
        Some(Arc::new(strict)),
    );
    assert_eq!(answer.verdict.decision, Decision::Lock);
    assert_eq!(answer.verdict.reasons, ["what_if"]);
    assert_eq!(answer.verdict.policy.name, "strict");
    assert!(answer.shadow.is_none());
    assert!(
        finish(e.export_user("alice", time(0))).unwrap().is_none(),
        "not locked"
    );
}

#[test]
fn a_what_if_writes_nothing_so_a_store_refusing_writes_does_not_change_its_answer() {
    let e = troubled(false, Decision::Mfa);
    for decide in ["allow", "mfa", "lock"] {
        for password_ok in [Some(true), Some(false), None] {
            let answer = simulate(&e, &attempt("alice", decide, password_ok), 0, None);
            assert_eq!(answer.verdict.decision.as_str(), decide);
            assert!(!answer.verdict.fallback, "{password_ok:?}");
        }
    }
    let e = troubled(true, Decision::Mfa);
    let answer = simulate(&e, &attempt("alice", "allow", Some(true)), 0, None);
    assert_eq!(answer.verdict.reasons, [STATE_UNAVAILABLE_REASON]);
}

#[test]
fn a_lock_fail_safe_refuses_the_attempt_without_locking_the_account() {
    let settings = EngineSettings {
        fail_safe: Decision::Lock,
        default_lock_seconds: 120,
        ..EngineSettings::default()
    };
    let e = engine_with(POLICY, settings);
    let failed = eval(&e, &attempt("alice", "error", Some(true)), 0);
    assert_eq!(failed.verdict.decision, Decision::Lock);
    assert_eq!(failed.verdict.lock_seconds, Some(0));
    assert_eq!(failed.verdict.reasons, [POLICY_ERROR_REASON]);
    assert!(failed.verdict.fallback);
    // Once the policy answers again, nothing of the fail-safe is left on the account.
    let next = probe(&e, "alice", IP, MINUTE);
    assert!(!next.user.locked, "{:?}", next.user);
}

// --- IP counters ---------------------------------------------------------------------------

#[test]
fn ipv6_addresses_share_ip_counters_within_a_64_only() {
    let e = engine(POLICY);
    let mut failed = attempt("alice", "allow", Some(false));
    failed.ip = "2001:db8:1:2::1".parse().unwrap();
    eval(&e, &failed, 0);

    let same = probe(&e, "bob", "2001:db8:1:2:ffff:ffff:ffff:ffff", SECOND);
    assert_eq!(same.ip.failures_10m, 1);
    assert_eq!(same.ip.distinct_users_1h, 2);
    let other = probe(&e, "carol", "2001:db8:1:3::1", SECOND);
    assert_eq!(other.ip.failures_10m, 0);
    assert_eq!(other.ip.distinct_users_1h, 1);

    let bucket = |ip: &str| counting_bucket(ip.parse::<IpAddr>().unwrap());
    assert_eq!(bucket("2001:db8:1:2:abcd::9"), bucket("2001:db8:1:2::"));
    assert_eq!(
        bucket("::ffff:192.0.2.1"),
        bucket(IP),
        "IPv4-mapped is IPv4"
    );
}

/// A backend in trouble, as an unreachable Redis or a full disk would be: nothing can be
/// written, and with `reads_fail` nothing read either.
struct TroubledStore {
    reads: MemoryStore,
    reads_fail: bool,
}

fn down<T: Send + 'static>() -> StoreFuture<'static, T> {
    Box::pin(std::future::ready(Err(StoreError::Backend(
        "the backend is down".into(),
    ))))
}

impl Store for TroubledStore {
    fn observe<'a>(
        &'a self,
        attempt: &'a AttemptKeys<'a>,
        now: Millis,
    ) -> StoreFuture<'a, Observation> {
        if self.reads_fail {
            return down();
        }
        Store::observe(&self.reads, attempt, now)
    }
    fn peek<'a>(&'a self, attempt: &'a AttemptKeys<'a>) -> StoreFuture<'a, Snapshot> {
        if self.reads_fail {
            return down();
        }
        Store::peek(&self.reads, attempt)
    }
    fn count_failure<'a>(&'a self, _: &'a AttemptKeys<'a>, _: Millis) -> StoreFuture<'a, ()> {
        down()
    }
    fn learn<'a>(&'a self, _: &'a str, _: LoginFacts) -> StoreFuture<'a, ()> {
        down()
    }
    fn trust_device<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, bool> {
        down()
    }
    fn lock<'a>(&'a self, _: &'a str, _: Millis) -> StoreFuture<'a, ()> {
        down()
    }
    fn unlock<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
        down()
    }
    fn put_pending<'a>(&'a self, _: &'a str, _: Pending) -> StoreFuture<'a, ()> {
        down()
    }
    fn take_pending<'a>(&'a self, _: &'a str, _: &'a str) -> StoreFuture<'a, Option<Pending>> {
        down()
    }
    fn profile<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Arc<UserProfile>>> {
        down()
    }
    fn activity<'a>(&'a self, _: &'a str) -> StoreFuture<'a, UserActivity> {
        down()
    }
    fn forget<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
        down()
    }
    fn sweep(&self, _: Millis, _: Millis) -> StoreFuture<'_, crate::state::Swept> {
        down()
    }
    fn committed(&self) -> crate::state::Committed {
        down()
    }
    fn healthy(&self) -> bool {
        false
    }

    fn global(&self) -> &crate::state::global::GlobalStats {
        self.reads.global()
    }
}

fn troubled(reads_fail: bool, fail_safe: Decision) -> Engine {
    let settings = EngineSettings {
        fail_safe,
        ..EngineSettings::default()
    };
    let store = TroubledStore {
        reads: MemoryStore::new(Capacity::default(), Placement::random()),
        reads_fail,
    };
    engine_over(POLICY, settings, Arc::new(store))
}

#[test]
fn state_that_cannot_be_read_gives_the_fail_safe_and_never_allow() {
    let ok = Some(true);
    for (fail_safe, expected) in [
        (Decision::Allow, Decision::Mfa),
        (Decision::Mfa, Decision::Mfa),
        (Decision::Lock, Decision::Lock),
    ] {
        let e = troubled(true, fail_safe);
        let answer = eval(&e, &attempt("alice", "allow", ok), 0);
        let verdict = &answer.verdict;
        assert_eq!(verdict.decision, expected, "fail-safe {fail_safe:?}");
        assert_eq!(verdict.reasons, [STATE_UNAVAILABLE_REASON]);
        assert!(verdict.fallback);
        // A `lock` fail-safe refuses the attempt; it does not lock the account.
        assert_eq!(
            verdict.lock_seconds,
            (expected == Decision::Lock).then_some(0)
        );
        // Only what needs no state is reported; nothing pretends to know the user.
        assert_eq!(answer.signals.request.user_id.as_str(), "alice");
        assert!(!answer.signals.user.first_login && !answer.signals.device.known);
        assert!(answer.shadow.is_none());
    }
}

#[test]
fn a_verdict_whose_effects_cannot_be_stored_gives_the_fail_safe() {
    let e = troubled(false, Decision::Mfa);
    let answer = eval(&e, &attempt("alice", "allow", Some(true)), 0);
    assert_eq!(
        answer.verdict.decision,
        Decision::Mfa,
        "the login could not be learned"
    );
    assert_eq!(answer.verdict.reasons, [STATE_UNAVAILABLE_REASON]);
    assert!(answer.verdict.fallback);
    // A lock the store cannot keep still refuses this attempt.
    let mut locking = attempt("alice", "lock", Some(false));
    locking
        .attributes
        .insert("lock_seconds".into(), serde_json::json!(60));
    let answer = eval(&e, &locking, 1);
    assert_eq!(answer.verdict.decision, Decision::Lock);
    assert_eq!(answer.verdict.reasons, [STATE_UNAVAILABLE_REASON]);
}
