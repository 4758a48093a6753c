//! The Lua windows against the Rust ones they mirror, on a real `redis-server`: the same
//! random events (out of order, equal times, floods beyond the cap) must give the same counts
//! at every window edge; and a what-if's reads leave Redis exactly as it was.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed run"
)]

#[path = "../../../tests/common/redis.rs"]
#[allow(
    dead_code,
    reason = "the integration tests' harness; the unit tests use a part of it"
)]
pub(super) mod server;

use redis::Script;

use super::scripts::prelude;
use crate::state::{DistinctWindow, EventWindow};

/// A xorshift generator: the same events on every run.
struct Events(u64);

impl Events {
    fn below(&mut self, n: u64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        i64::try_from(self.0 % n).unwrap()
    }
}

#[test]
fn lua_windows_count_exactly_as_the_rust_windows() {
    let redis = server::RedisServer::start();
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let prelude = prelude();
    let script = |body: &str| Script::new(&format!("{prelude}{body}"));
    let push = script(
        "push(KEYS[1], KEYS[2], dropped_of(KEYS[2]), tonumber(ARGV[1]), ARGV[2], \
         tonumber(ARGV[3]), tonumber(ARGV[4])) return 1",
    );
    let count =
        script("return count(KEYS[1], dropped_of(KEYS[2]), tonumber(ARGV[1]), tonumber(ARGV[2]))");
    let see =
        script("see(KEYS[1], {ARGV[1]}, tonumber(ARGV[2]), tonumber(ARGV[3]), 864000000) return 1");
    let distinct = script("return count_distinct(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))");
    let distinct_with = script(
        "return count_distinct_with(KEYS[1], tonumber(ARGV[1]), {tonumber(ARGV[2])}, ARGV[3])[1]",
    );
    let counts = script(
        "return counts({}, KEYS[1], dropped_of(KEYS[2]), tonumber(ARGV[1]), \
         {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])})",
    );
    // Minutes, so no key expires while the test runs.
    let unit: i64 = 60_000;
    let mut events = Events(0x9E37_79B9_7F4A_7C15);
    for round in 0..100 {
        let (key, dropped, users) = (
            format!("{{w{round}}}:f"),
            format!("{{w{round}}}:fd"),
            format!("{{w{round}}}:u"),
        );
        let horizon = (1 + events.below(30)) * unit;
        let cap = usize::try_from(1 + events.below(8)).unwrap();
        let (mut window, mut distinct_window) = (EventWindow::default(), DistinctWindow::default());
        let mut newest = 1_700_000_000_000;
        for event in 0..40 {
            let at = match events.below(4) {
                0 => newest,
                1 => newest - events.below(40) * unit,
                _ => {
                    newest += events.below(5) * unit;
                    newest
                }
            };
            window.push(at, horizon, cap);
            let _: i64 = push
                .key(&key)
                .key(&dropped)
                .arg(at)
                .arg(event)
                .arg(horizon)
                .arg(cap)
                .invoke(&mut connection)
                .unwrap();
            let id = events.below(6);
            distinct_window.push(u64::try_from(id).unwrap(), at, cap);
            let _: i64 = see
                .key(&users)
                .arg(id)
                .arg(at)
                .arg(cap)
                .invoke(&mut connection)
                .unwrap();
            let span = (1 + events.below(40)) * unit;
            let lua: i64 = distinct_with
                .key(&users)
                .arg(at)
                .arg(span)
                .arg(id)
                .invoke(&mut connection)
                .unwrap();
            let own = u64::try_from(id).unwrap();
            assert_eq!(
                lua,
                distinct_window.count_including(own, at, span),
                "round {round}, a late attempt by {id} at {at}: {distinct_window:?}"
            );
            for _ in 0..4 {
                let now = newest + events.below(50) * unit - 25 * unit + events.below(3) - 1;
                let span = (1 + events.below(40)) * unit;
                let lua: i64 = count
                    .key(&key)
                    .key(&dropped)
                    .arg(now)
                    .arg(span)
                    .invoke(&mut connection)
                    .unwrap();
                assert_eq!(
                    lua,
                    window.count(now, span),
                    "round {round}, now {now}, span {span}: {window:?}"
                );
                let mut spans = [span, (1 + events.below(40)) * unit, events.below(3)];
                spans.sort_unstable();
                let lua: Vec<i64> = counts
                    .key(&key)
                    .key(&dropped)
                    .arg(now)
                    .arg(&spans[..])
                    .invoke(&mut connection)
                    .unwrap();
                assert_eq!(
                    lua,
                    spans.map(|span| window.count(now, span)),
                    "round {round}, now {now}, spans {spans:?}: {window:?}"
                );
                let lua: i64 = distinct
                    .key(&users)
                    .arg(now)
                    .arg(span)
                    .invoke(&mut connection)
                    .unwrap();
                assert_eq!(
                    lua,
                    distinct_window.count(now, span),
                    "round {round}: {distinct_window:?}"
                );
            }
        }
    }
}

/// Every key under the test prefix: its serialized value, and its time to live.
async fn keyspace(
    connection: &mut redis::aio::MultiplexedConnection,
) -> std::collections::BTreeMap<String, (Vec<u8>, i64)> {
    let names: Vec<String> = redis::cmd("KEYS")
        .arg("t:*")
        .query_async(connection)
        .await
        .unwrap();
    let mut keys = std::collections::BTreeMap::new();
    for name in names {
        let (value, ttl): (Vec<u8>, i64) = redis::pipe()
            .cmd("DUMP")
            .arg(&name)
            .cmd("PTTL")
            .arg(&name)
            .query_async(connection)
            .await
            .unwrap();
        keys.insert(name, (value, ttl));
    }
    keys
}

#[tokio::test]
async fn a_peek_creates_no_key_touches_no_expiry_and_counts_as_observe_would() {
    use crate::state::{AttemptKeys, LoginFacts, NetworkKeys, Store};

    let redis = server::RedisServer::start();
    let settings = super::RedisSettings {
        url: redis.url(),
        prefix: "t:".into(),
        timeout: std::time::Duration::from_secs(5),
        global_sync: super::SyncTimes::every(std::time::Duration::from_secs(3600)),
    };
    let store = super::open(&settings, crate::DAY, 100).await.unwrap();
    let keys = |user_id, failed| AttemptKeys {
        user_id,
        network: Some(NetworkKeys {
            ip: "192.0.2.1".parse().unwrap(),
            device_id: Some("laptop"),
        }),
        failed,
    };
    let now = chrono::Utc::now().timestamp_millis();
    store.learn("alice", LoginFacts::default()).await.unwrap();
    store.observe(&keys("alice", true), now).await.unwrap();
    store.observe(&keys("bob", true), now + 1).await.unwrap();
    store.lock("alice", now + 60_000).await.unwrap();
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let before = keyspace(&mut connection).await;
    for user in ["alice", "bob", "carol"] {
        for failed in [false, true] {
            store.peek(&keys(user, failed)).await.unwrap();
        }
    }
    let after = keyspace(&mut connection).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (key, (value, ttl)) in &before {
        let (value_after, ttl_after) = &after[key];
        assert_eq!(value, value_after, "{key} changed");
        assert!(
            ttl_after <= ttl,
            "{key} lives longer: {ttl} -> {ttl_after} ms"
        );
    }
    for (at, failed) in [(now + 10, false), (now + 20, true)] {
        let attempt = keys("alice", failed);
        let peeked = store.peek(&attempt).await.unwrap().counted(&attempt, at);
        let observed = store.observe(&attempt, at).await.unwrap();
        assert_eq!(peeked.counts, observed.counts, "failed: {failed}");
        assert_eq!(peeked.locked_until, observed.locked_until);
        assert_eq!(peeked.profile, observed.profile);
    }
}
