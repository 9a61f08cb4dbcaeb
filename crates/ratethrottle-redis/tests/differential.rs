//! The Redis store against the in-memory store on random rules and random traffic (checks,
//! peeks and refunds): every answer must be identical (same clock, same requests), including
//! rules whose numbers need
//! more than the 53 bits a Lua double holds exactly.

use std::time::Duration;

use ratethrottle::clock::{Clock, ManualClock};
use ratethrottle::store::MemoryStore;
use ratethrottle::{Limiter, Rule, Strategy};

use crate::server;

/// xorshift64*: a small deterministic generator, so a failure replays exactly.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn random_rule(random: &mut Random, strategy: Strategy) -> Rule {
    let windows = [
        Duration::from_millis(1),
        Duration::from_millis(250),
        Duration::from_secs(1),
        Duration::from_secs(7),
        Duration::from_secs(60),
        Duration::from_secs(86_400),
        Duration::from_nanos(1_234_567_891),
    ];
    let limits = [
        1,
        2,
        3,
        7,
        10,
        100,
        1_000,
        999_983,
        1_000_000_000,
        u64::from(u32::MAX) * 3,
    ];
    let limit = if strategy == Strategy::SlidingWindow {
        1 + random.below(50)
    } else {
        random.pick(&limits)
    };
    let burst = if strategy.uses_burst() && random.below(2) == 0 {
        limit.saturating_add(random.below(limit.min(1_000) + 1))
    } else {
        limit
    };
    let blocks = [
        Duration::ZERO,
        Duration::from_millis(500),
        Duration::from_secs(30),
    ];
    Rule::new(strategy.as_str(), limit, random.pick(&windows))
        .strategy(strategy)
        .burst(burst)
        .block_duration(random.pick(&blocks))
}

#[test]
fn redis_answers_exactly_like_memory() {
    crate::runtime().block_on(async {
        let Some(store) = server::caller_clock_store().await else {
            return;
        };
        let clock = ManualClock::new();
        let redis = Limiter::builder().store(store).clock(clock.clone()).build();
        let memory = Limiter::builder()
            .store(MemoryStore::new())
            .clock(clock.clone())
            .build();
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for round in 0..12 {
            for strategy in Strategy::ALL {
                let rule = random_rule(&mut random, strategy);
                let capacity = rule.capacity();
                let window = rule.window;
                redis.add_rule(rule.clone()).unwrap();
                memory.add_rule(rule.clone()).unwrap();
                let id = format!("client-{round}");
                for step in 0..60 {
                    let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
                    let advance = match random.below(4) {
                        0 => 0,
                        1 => random.below(1_000),
                        2 => random.below(nanos / 3 + 1),
                        _ => random.below(nanos.saturating_mul(2).min(u64::MAX / 4) + 1),
                    };
                    clock.advance(Duration::from_nanos(advance));
                    let cost = 1 + random.below(capacity.min(5));
                    let op = random.below(6);
                    let (a, b) = if op == 0 {
                        (
                            redis.peek(&id, strategy.as_str()).await.unwrap(),
                            memory.peek(&id, strategy.as_str()).await.unwrap(),
                        )
                    } else if op == 1 {
                        (
                            redis.refund(&id, strategy.as_str(), cost).await.unwrap(),
                            memory.refund(&id, strategy.as_str(), cost).await.unwrap(),
                        )
                    } else {
                        (
                            redis.check_n(&id, strategy.as_str(), cost).await.unwrap(),
                            memory.check_n(&id, strategy.as_str(), cost).await.unwrap(),
                        )
                    };
                    assert_eq!(
                        a,
                        b,
                        "{rule:?}, round {round}, step {step}, cost {cost}, at {}",
                        clock.now()
                    );
                }
            }
        }
    });
}

#[test]
fn expiring_list_entries_apply_on_every_script_path() {
    crate::runtime().block_on(async {
        let Some(store) = server::caller_clock_store().await else {
            return;
        };
        let clock = ManualClock::new();
        let limiter = Limiter::builder().store(store).clock(clock.clone()).build();
        // Small bucket rules take the double-precision path, huge ones the big-integer path.
        let rules = Strategy::ALL
            .into_iter()
            .map(|strategy| {
                Rule::new(strategy.as_str(), 10, Duration::from_secs(60)).strategy(strategy)
            })
            .chain([Rule::new("huge", 1, Duration::from_secs(1))
                .strategy(Strategy::Gcra)
                .burst(1_000_000_000)]);
        for rule in rules {
            let name = rule.name.clone();
            limiter.add_rule(rule).unwrap();
            let id = format!("temp-{name}");
            limiter
                .blacklist_add(&id, Some(Duration::from_secs(30)))
                .await
                .unwrap();
            limiter.whitelist_add(&format!("vip-{name}")).await.unwrap();
            assert!(!limiter.check(&id, &name).await.unwrap().allowed, "{name}");
            assert!(
                limiter
                    .check(&format!("vip-{name}"), &name)
                    .await
                    .unwrap()
                    .allowed,
                "{name}"
            );
            clock.advance(Duration::from_secs(30));
            assert!(
                limiter.check(&id, &name).await.unwrap().allowed,
                "{name}: the entry expired"
            );
        }
    });
}
