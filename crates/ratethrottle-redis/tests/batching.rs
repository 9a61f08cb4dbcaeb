//! Concurrent checks share script calls and stay exact; the process's copy of the lists follows
//! other processes' changes within its TTL; state keys expire.

use std::time::Duration;

use ratethrottle::clock::ManualClock;
use ratethrottle::store::RuleSpec;
use ratethrottle::{Limiter, Rule, Strategy};
use ratethrottle_redis::{RedisConfig, RedisStore, TimeSource};

use crate::errors::command_counts;
use crate::runtime;
use crate::server::{RedisServer, redis_cli};

/// A key prefix no other test (or run) uses.
fn prefix(what: &str) -> String {
    format!("{what}-{}:", std::process::id())
}

/// A limiter over `url` under `prefix`, on `clock` (the store trusts it).
async fn limiter(url: &str, prefix: &str, clock: &ManualClock) -> Limiter<RedisStore> {
    let config = RedisConfig::new(url)
        .key_prefix(prefix)
        .time(TimeSource::Caller)
        .timeout(Duration::from_secs(2));
    let store = RedisStore::with_config(config).await.unwrap();
    Limiter::builder().store(store).clock(clock.clone()).build()
}

#[test]
fn concurrent_checks_share_calls_and_admit_exactly_the_limit() {
    let Some(shared) = RedisServer::shared() else {
        return;
    };
    let server = RedisServer::dedicated()
        .unwrap_or_else(|| unreachable!("redis-server ran for {}", shared.url()));
    runtime().block_on(async {
        let clock = ManualClock::new();
        let limiter = limiter(&server.url(), "batch:", &clock).await;
        let strategies = [
            Strategy::TokenBucket,
            Strategy::FixedWindow,
            Strategy::SlidingCounter,
        ];
        for strategy in strategies {
            let rule = Rule::new(strategy.as_str(), 50, Duration::from_secs(60))
                .strategy(strategy)
                .burst(50);
            limiter.add_rule(rule).unwrap();
            limiter.check("warm-up", strategy.as_str()).await.unwrap();
        }
        let before = command_counts(&server.url()).await;
        // 4 keys × 3 rules, 100 checks each, all at once: 1,200 checks for 600 admissions.
        let checks: Vec<_> = (0..1200)
            .map(|i| {
                let limiter = limiter.clone();
                let rule = strategies[i % 3].as_str();
                let id = format!("key-{}", i % 4);
                tokio::spawn(async move { (rule, limiter.check(&id, rule).await) })
            })
            .collect();
        let mut admitted = std::collections::HashMap::new();
        for check in checks {
            let (rule, status) = check.await.unwrap();
            *admitted.entry(rule).or_insert(0) += u64::from(status.unwrap().allowed);
        }
        for strategy in strategies {
            assert_eq!(admitted[strategy.as_str()], 4 * 50, "{strategy}");
        }
        let after = command_counts(&server.url()).await;
        let calls = after["evalsha"] - before.get("evalsha").copied().unwrap_or(0);
        assert!(
            calls < 1200,
            "{calls} script calls for 1,200 concurrent checks"
        );
    });
}

#[test]
fn checks_abandoned_half_way_do_not_hold_up_the_others() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let prefix = prefix("abandon");
        let limiter = limiter(&server.url(), &prefix, &clock).await;
        limiter
            .add_rule(Rule::new("api", 1_000_000, Duration::from_secs(60)))
            .unwrap();
        // Many checks dropped at once, mid-flight or while queued.
        let abandoned: Vec<_> = (0..200)
            .map(|i| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let id = format!("a-{i}");
                    let check = limiter.check(&id, "api");
                    let _ = tokio::time::timeout(Duration::from_micros(50), check).await;
                })
            })
            .collect();
        for task in abandoned {
            task.await.unwrap();
        }
        let checks: Vec<_> = (0..200)
            .map(|i| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.check(&format!("b-{i}"), "api").await })
            })
            .collect();
        for check in checks {
            assert!(check.await.unwrap().unwrap().allowed);
        }
    });
}

#[test]
fn another_process_list_change_takes_effect_within_the_cache_ttl() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let prefix = prefix("lists");
        let here = limiter(&server.url(), &prefix, &clock).await;
        let there = limiter(&server.url(), &prefix, &clock).await;
        for limiter in [&here, &there] {
            limiter
                .add_rule(Rule::new("api", 100, Duration::from_secs(60)))
                .unwrap();
        }
        assert!(here.check("mallory", "api").await.unwrap().allowed);
        there.blacklist_add("mallory", None).await.unwrap();
        assert!(
            !there.check("mallory", "api").await.unwrap().allowed,
            "at once where it was made"
        );
        // Here the old copy may still screen for up to the TTL (1 s); after it, Redis decides.
        clock.advance(Duration::from_secs(1));
        let status = here.check("mallory", "api").await.unwrap();
        assert!(!status.allowed, "blacklisted everywhere after the TTL");
        there.blacklist_remove("mallory").await.unwrap();
        clock.advance(Duration::from_secs(1));
        assert!(here.check("mallory", "api").await.unwrap().allowed);
    });
}

#[test]
fn state_keys_expire_once_idle_and_denials_do_not_extend_them() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let prefix = prefix("ttl");
        let limiter = limiter(&server.url(), &prefix, &clock).await;
        let rule = Rule::new("api", 2, Duration::from_secs(60))
            .strategy(Strategy::FixedWindow)
            .block_duration(Duration::ZERO);
        limiter.add_rule(rule.clone()).unwrap();
        let key = format!(
            "{prefix}{{i:ttl}}:{:016x}",
            RuleSpec::new(&rule).fingerprint
        );
        let ttl = || {
            redis_cli(server.port, &["PTTL", &key])
                .trim()
                .parse::<i64>()
                .unwrap()
        };
        for _ in 0..2 {
            assert!(limiter.check("ttl", "api").await.unwrap().allowed);
        }
        let after_admission = ttl();
        // The window (60 s) plus the 1 s margin, at most.
        assert!(
            after_admission > 50_000 && after_admission <= 61_000,
            "{after_admission}"
        );
        for _ in 0..3 {
            assert!(!limiter.check("ttl", "api").await.unwrap().allowed);
        }
        assert!(ttl() <= after_admission, "a denial extended the key's life");
    });
}

#[test]
fn a_stray_value_under_a_state_key_counts_as_a_fresh_key() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        let prefix = prefix("stray");
        let limiter = limiter(&server.url(), &prefix, &clock).await;
        let rule = Rule::new("api", 2, Duration::from_secs(60)).strategy(Strategy::Gcra);
        limiter.add_rule(rule.clone()).unwrap();
        let fingerprint = RuleSpec::new(&rule).fingerprint;
        let key = |id: &str| format!("{prefix}{{i:{id}}}:{fingerprint:016x}");
        redis_cli(server.port, &["SET", &key("garbage"), "not a state"]);
        redis_cli(server.port, &["HSET", &key("hash"), "b", "0"]);
        let checks: Vec<_> = ["garbage", "hash", "fine"]
            .into_iter()
            .flat_map(|id| std::iter::repeat_n(id, 3))
            .map(|id| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.check(id, "api").await })
            })
            .collect();
        let mut admitted = 0;
        for check in checks {
            admitted += u64::from(check.await.unwrap().unwrap().allowed);
        }
        assert_eq!(admitted, 3 * 2, "each key admits its limit of 2");
    });
}
