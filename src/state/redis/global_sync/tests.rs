//! Replicas sharing their global statistics through a real `redis-server` (and a Redis
//! Cluster): each store syncs only when a test says so.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed run"
)]

use std::time::{Duration, Instant};

use super::{MAX_REPLICAS, SyncTimes, Synced};
use crate::DAY;
use crate::state::global::GlobalStats;
use crate::state::redis::tests::server::{RedisCluster, RedisServer};
use crate::state::redis::{RedisSettings, RedisStore, open};
use crate::state::{Feature, FeatureValue, LoginFacts, Store};

/// How long published counts live in production.
const DAY_TTL: Duration = Duration::from_secs(86_400);

/// A replica on the Redis (or cluster) at `url` whose published counts live `ttl`. Its
/// background sync runs once, at start, then waits an hour: the tests sync by hand.
async fn replica(url: &str, ttl: Duration) -> RedisStore {
    let settings = RedisSettings {
        url: url.to_owned(),
        prefix: "t:".into(),
        timeout: Duration::from_secs(5),
        global_sync: SyncTimes {
            every: Duration::from_secs(3600),
            ttl,
        },
    };
    open(&settings, DAY, 100).await.unwrap()
}

fn from(country: &str) -> LoginFacts {
    let mut facts = LoginFacts::default();
    facts.features[Feature::Country as usize] = Some(FeatureValue::new(Feature::Country, country));
    facts
}

/// `country`'s `p(x)` as `store`'s evaluations see it.
fn p(store: &RedisStore, country: &str) -> f64 {
    store.global().prior(0, &from(country)).p[Feature::Country as usize].unwrap()
}

/// The learned logins `store`'s evaluations see.
fn logins(store: &RedisStore) -> f64 {
    store.global().prior(0, &from("DE")).logins
}

/// Asserts that `store` scores with both replicas' 40 logins (30 from DE, 10 from FR):
/// N = 40, two distinct countries, so M = 3.
fn assert_sees_both_replicas(store: &RedisStore) {
    assert_eq!(logins(store), 40.0);
    let de = p(store, "DE");
    assert!((de - 31.0 / 43.0).abs() < 1e-3, "{de}");
}

/// Learns `count` logins from `country` through `store`, by users from `first` on.
fn learn(store: &RedisStore, first: u64, count: u64, country: &str) {
    for user in first..first + count {
        store.global().learn(user, &from(country));
    }
}

async fn sync(store: &RedisStore) -> Synced {
    store.global.step().await.unwrap()
}

/// Syncs `store` until Redis answers again.
async fn sync_once_redis_answers(store: &RedisStore) -> Synced {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.global.step().await {
            Ok(synced) => return synced,
            Err(error) => assert!(Instant::now() < deadline, "no sync: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn command<T: redis::FromRedisValue>(store: &RedisStore, args: &[&str]) -> T {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(&mut store.link()).await.unwrap()
}

/// Two replicas on the Redis at `url` see each other's logins after a sync, as if one had
/// learned them all.
async fn logins_learned_through_one_replica_count_through_the_other(url: &str) {
    let (a, b) = (replica(url, DAY_TTL).await, replica(url, DAY_TTL).await);
    learn(&a, 0, 30, "DE");
    learn(&b, 30, 10, "FR");
    assert_eq!(logins(&b), 10.0, "each its own before a sync");
    assert!((p(&b, "DE") - 1.0 / 12.0).abs() < 1e-3, "{}", p(&b, "DE"));

    // Whether A's first sync finds B depends on B's background sync at start.
    sync(&a).await;
    assert_eq!(sync(&b).await.replicas, 1);
    assert_eq!(sync(&a).await.replicas, 1);
    for store in [&a, &b] {
        assert_sees_both_replicas(store);
        assert!(
            (p(store, "FR") - 11.0 / 43.0).abs() < 1e-3,
            "{}",
            p(store, "FR")
        );
        let users = store.global().prior(0, &from("DE")).users;
        assert!((users - 40.0).abs() < 0.5, "{users}");
    }

    // Under the prefix, registered, each key expiring a day after its last publish.
    let mut ids: Vec<String> = command(&a, &["ZRANGE", "t:{global}:replicas", "0", "-1"]).await;
    ids.sort();
    let mut expected = vec![a.global.id.clone(), b.global.id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    for store in [&a, &b] {
        let keys: Vec<&String> = store.global.own.all().collect();
        assert_eq!(keys.len(), 1 + GlobalStats::chunks().len());
        for key in keys {
            assert!(key.starts_with("t:{global}:replica:"), "{key}");
            let ttl: i64 = command(&a, &["PTTL", key]).await;
            assert!(ttl > 0 && ttl <= 86_400_000, "{key}: {ttl} ms");
        }
    }

    // Later logins follow at the next syncs.
    learn(&a, 40, 10, "DE");
    sync(&a).await;
    sync(&b).await;
    assert_eq!(logins(&b), 50.0);
    assert!((p(&b, "DE") - 41.0 / 53.0).abs() < 1e-3, "{}", p(&b, "DE"));
}

#[tokio::test]
async fn logins_learned_through_one_replica_count_through_the_other_on_one_redis() {
    let redis = RedisServer::start();
    logins_learned_through_one_replica_count_through_the_other(&redis.url()).await;
}

#[tokio::test]
async fn logins_learned_through_one_replica_count_through_the_other_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    logins_learned_through_one_replica_count_through_the_other(&cluster.urls()).await;
}

#[tokio::test]
async fn a_replica_whose_counts_expired_is_no_longer_counted() {
    let redis = RedisServer::start();
    let ttl = Duration::from_secs(2);
    let (a, b) = (
        replica(&redis.url(), ttl).await,
        replica(&redis.url(), ttl).await,
    );
    learn(&a, 0, 30, "DE");
    learn(&b, 30, 10, "FR");
    sync(&a).await;
    assert_eq!(sync(&b).await.replicas, 1);
    assert_eq!(logins(&b), 40.0);

    // A is gone: it publishes no more, and its keys expire.
    let mut exists = vec!["EXISTS"];
    exists.extend(a.global.own.all().map(String::as_str));
    let deadline = Instant::now() + Duration::from_secs(10);
    while command::<i64>(&b, &exists).await > 0 {
        assert!(Instant::now() < deadline, "A's keys never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sync(&b).await.replicas, 0);
    assert_eq!(logins(&b), 10.0);
    assert!((p(&b, "DE") - 1.0 / 12.0).abs() < 1e-3, "{}", p(&b, "DE"));
    let ids: Vec<String> = command(&b, &["ZRANGE", "t:{global}:replicas", "0", "-1"]).await;
    assert_eq!(
        ids,
        std::slice::from_ref(&b.global.id),
        "A left the registry"
    );
}

#[tokio::test]
async fn a_sync_while_redis_is_down_keeps_the_last_view_and_a_later_one_recovers() {
    let mut redis = RedisServer::start();
    let (a, b) = (
        replica(&redis.url(), DAY_TTL).await,
        replica(&redis.url(), DAY_TTL).await,
    );
    learn(&a, 0, 30, "DE");
    sync(&a).await;
    sync(&b).await;
    assert_eq!(logins(&b), 30.0);

    redis.kill();
    learn(&b, 30, 10, "FR");
    let seen = b.global().prior(0, &from("DE"));
    assert_eq!(seen.logins, 40.0, "logins learned meanwhile count at once");
    assert!(b.global.step().await.is_err());
    assert!(a.global.step().await.is_err());
    assert_eq!(
        b.global().prior(0, &from("DE")),
        seen,
        "the last view stays"
    );

    // Back, empty: A learned nothing since its last publish, and publishes again all the same.
    redis.run();
    sync_once_redis_answers(&a).await;
    assert_eq!(sync_once_redis_answers(&b).await.replicas, 1);
    assert_eq!(sync(&a).await.replicas, 1);
    for store in [&a, &b] {
        assert_sees_both_replicas(store);
    }
}

#[tokio::test]
async fn the_newest_replicas_are_kept_and_values_of_another_layout_left_out() {
    let redis = RedisServer::start();
    let b = replica(&redis.url(), DAY_TTL).await;
    learn(&b, 0, 10, "FR");
    // Strangers registered a while ago, one more than the registry keeps with B, each with a
    // value that is not this layout's.
    let now = chrono::Utc::now().timestamp_millis();
    let strangers: Vec<String> = (0..MAX_REPLICAS)
        .map(|i| format!("stranger{i:02}"))
        .collect();
    for (i, id) in strangers.iter().enumerate() {
        let score = (now - 60_000 + i as i64).to_string();
        let _: i64 = command(&b, &["ZADD", "t:{global}:replicas", &score, id]).await;
        let key = format!("t:{{global}}:replica:{id}");
        let _: () = command(&b, &["SET", &key, "rgs0 another layout"]).await;
        let _: () = command(&b, &["SET", &format!("{key}:0"), "cells"]).await;
    }

    let synced = sync(&b).await;
    assert_eq!(
        synced,
        Synced {
            replicas: 0,
            foreign: MAX_REPLICAS - 1
        }
    );
    assert_eq!(logins(&b), 10.0);
    let count: usize = command(&b, &["ZCARD", "t:{global}:replicas"]).await;
    assert_eq!(count, MAX_REPLICAS);
    for (id, expected) in [(&strangers[0], 0), (&strangers[1], 2)] {
        let header = format!("t:{{global}}:replica:{id}");
        let found: i64 = command(&b, &["EXISTS", &header, &format!("{header}:0")]).await;
        assert_eq!(
            found, expected,
            "{id}: the oldest is dropped with its chunks"
        );
    }
}
