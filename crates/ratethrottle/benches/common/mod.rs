//! What the benches share: the limiter with every feature on, governor's keyed limiter with
//! the same quota, the 1M keys, and a poll of a memory-store future.

#![allow(dead_code)]

use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ratethrottle::{Limiter, Rule, Strategy};

pub(crate) const MANY_KEYS: usize = 1_000_000;
/// A burst (bucket strategies) or per-window limit (window strategies) large enough that
/// nothing is ever denied during a run.
pub(crate) const LARGE: u32 = 1_000_000_000;

/// Polls a memory-store future, which is always ready at once. Inlined so the harness adds no
/// call or copy of its own.
#[inline(always)]
pub(crate) fn ready_now<F: Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => unreachable!("memory-store futures are ready at once"),
    }
}

pub(crate) fn loaded_limiter() -> Limiter {
    let limiter = Limiter::in_memory();
    for strategy in Strategy::ALL {
        let rule = match strategy {
            Strategy::TokenBucket | Strategy::LeakyBucket | Strategy::Gcra => {
                Rule::new(strategy.as_str(), 1, Duration::from_secs(1)).burst(u64::from(LARGE))
            }
            // The exact log keeps one entry per admission: the largest limit it allows.
            Strategy::SlidingWindow => Rule::new(
                strategy.as_str(),
                ratethrottle::MAX_SLIDING_WINDOW_LIMIT,
                Duration::from_secs(1),
            ),
            _ => Rule::new(
                strategy.as_str(),
                u64::from(LARGE),
                Duration::from_secs(3600),
            ),
        };
        let rule = rule
            .strategy(strategy)
            .block_duration(Duration::from_secs(300));
        limiter.add_rule(rule).expect("valid rule");
    }
    ready_now(limiter.whitelist_add("10.255.255.1")).expect("memory store");
    ready_now(limiter.blacklist_add("10.255.255.2", None)).expect("memory store");
    limiter
}

pub(crate) fn governor() -> DefaultKeyedRateLimiter<String> {
    let burst = NonZeroU32::new(LARGE).expect("non-zero");
    RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN).allow_burst(burst))
}

pub(crate) fn keys() -> Vec<String> {
    (0..MANY_KEYS)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
        .collect()
}
