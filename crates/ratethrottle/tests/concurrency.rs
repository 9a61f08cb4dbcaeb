//! Real OS threads hammering one limiter: a limit of N admits exactly N.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ratethrottle::clock::ManualClock;
use ratethrottle::store::MemoryStore;
use ratethrottle::{Limiter, Rule, Strategy};

use crate::ready_now;

fn limiter(clock: &ManualClock) -> Limiter {
    Limiter::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .build()
}

/// 8 threads × 1,000 checks on one key, limit 1,000 per hour: exactly 1,000 admitted.
#[test]
fn eight_threads_on_one_key_admit_exactly_the_limit_for_every_strategy() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock);
    for strategy in Strategy::ALL {
        let rule = Rule::new(strategy.as_str(), 1000, Duration::from_secs(3600)).strategy(strategy);
        limiter.add_rule(rule).unwrap();
        let admitted = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        let status = ready_now(limiter.check("hot", strategy.as_str())).unwrap();
                        if status.allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 1000, "{strategy}");
        let metrics = limiter.metrics();
        let rule_metrics = metrics
            .rules
            .iter()
            .find(|m| m.rule == strategy.as_str())
            .unwrap();
        assert_eq!((rule_metrics.allowed, rule_metrics.denied), (1000, 7000));
    }
}

/// Threads on many keys at once while the clock moves: every key gets exactly its allowance
/// per fixed window, and no update is lost between threads sharing shards.
#[test]
fn threads_on_many_keys_lose_no_update() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock);
    limiter
        .add_rule(Rule::new("fw", 10, Duration::from_secs(60)).strategy(Strategy::FixedWindow))
        .unwrap();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let (limiter, admitted) = (&limiter, &admitted);
            scope.spawn(move || {
                for i in 0..20_000u64 {
                    let key = format!("k{}", (i * 7 + thread) % 500);
                    if ready_now(limiter.check(&key, "fw")).unwrap().allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 500 * 10);
}

/// Rules replaced while other threads check: checks never fail and never see a half-made table.
#[test]
fn rule_changes_during_checks_are_atomic() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock);
    limiter
        .add_rule(Rule::new("r", 5, Duration::from_secs(60)))
        .unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..2_000u64 {
                let rules = [
                    Rule::new("r", 5 + i % 3, Duration::from_secs(60)),
                    Rule::new(format!("extra{}", i % 10), 1, Duration::from_secs(1)),
                ];
                limiter.set_rules(rules).unwrap();
            }
        });
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..5_000u64 {
                    let status = ready_now(limiter.check(&format!("c{i}"), "r")).unwrap();
                    assert!(status.limit >= 5 && status.limit <= 7);
                }
            });
        }
    });
}
