//! The store conformance suite: the behaviour every [`Store`] must share, written once.
//!
//! Each scenario is an `async fn` taking a fresh store, driven by a [`ManualClock`] that starts
//! at a window boundary (2026-01-01T00:00:00Z). [`conformance_suite!`](crate::conformance_suite)
//! expands them into one `#[test]` each for a store factory:
//!
//! ```ignore
//! use ratethrottle::store::MemoryStore;
//! ratethrottle::conformance_suite!(|| async { MemoryStore::new() });
//! ```
//!
//! A store that trusts its own clock (Redis by default) must be configured to use the caller's
//! `now` for the suite.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::ManualClock;
use crate::store::{ListKind, Store};
use crate::{Error, Limiter, Rule, Strategy, Verdict};

#[doc(hidden)]
pub use tokio;

/// Runs `scenario` on a store made by `factory`, on a multi-threaded tokio runtime.
pub fn run<S, F, Fut, Sc, ScFut>(factory: F, scenario: Sc)
where
    S: Store,
    F: FnOnce() -> Fut,
    Fut: Future<Output = S>,
    Sc: FnOnce(S) -> ScFut,
    ScFut: Future<Output = ()>,
{
    runtime().block_on(async move { scenario(factory().await).await });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance suite")
}

/// [`run`] for a store that may be unavailable here: a factory answering `None` skips the
/// scenario (it should say why, once), e.g. when a server the store needs is not installed.
pub fn run_optional<S, F, Fut, Sc, ScFut>(factory: F, scenario: Sc)
where
    S: Store,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Option<S>>,
    Sc: FnOnce(S) -> ScFut,
    ScFut: Future<Output = ()>,
{
    runtime().block_on(async move {
        if let Some(store) = factory().await {
            scenario(store).await;
        }
    });
}

/// Expands the whole suite into `#[test]` functions for a store factory: an expression
/// evaluating to `FnOnce() -> impl Future<Output = impl Store>`, evaluated once per test.
/// `conformance_suite!(optional factory)` takes a factory answering `Option<impl Store>`, where
/// `None` skips (see [`run_optional`](crate::conformance::run_optional)).
#[macro_export]
macro_rules! conformance_suite {
    (optional $factory:expr) => {
        $crate::conformance_suite!(@names run_optional, $factory);
    };
    ($factory:expr) => {
        $crate::conformance_suite!(@names run, $factory);
    };
    (@names $runner:ident, $factory:expr) => {
        $crate::conformance_suite!(@each $runner, $factory;
            every_strategy_admits_exactly_its_limit,
            token_bucket_refills_at_its_rate,
            leaky_bucket_drains_at_its_rate,
            gcra_spaces_requests_by_the_emission_interval,
            fixed_window_resets_at_the_window_boundary,
            sliding_window_forgets_each_admission_one_window_later,
            sliding_counter_weights_the_previous_window,
            retry_after_is_exact_for_every_strategy,
            reset_after_returns_the_full_allowance,
            check_n_consumes_its_cost,
            a_denied_large_cost_leaves_room_for_smaller_requests,
            a_cost_above_capacity_or_zero_is_an_error,
            costs_at_the_integer_edges_never_saturate_into_admission,
            peek_consumes_nothing,
            peek_reports_the_allowance_before_the_request,
            peek_records_no_violation_and_starts_no_block,
            reset_forgets_the_state,
            reset_lifts_a_block,
            unknown_rules_are_errors_naming_the_known_rules,
            a_violation_blocks_for_the_block_duration,
            a_zero_block_duration_never_blocks,
            blocks_are_per_rule_and_identifier,
            whitelisted_identifiers_bypass_every_rule_uncounted,
            the_whitelist_applies_even_to_unknown_rules,
            blacklisted_identifiers_are_denied_as_blocked,
            blacklist_entries_expire,
            the_whitelist_wins_over_the_blacklist,
            list_entries_and_removal,
            identifiers_are_independent_including_empty_and_huge_ones,
            idle_keys_behave_like_fresh_ones,
            replacing_a_rule_carries_its_state_unless_strategy_or_window_change,
            a_new_limit_applies_to_what_was_already_consumed,
            a_removed_rule_is_unknown,
            violations_are_recorded_with_their_details,
            callbacks_run_and_their_panics_are_contained,
            metrics_count_every_decision,
            concurrent_tasks_admit_exactly_the_limit,
            a_per_call_limit_is_enforced_by_every_strategy,
            a_per_call_limit_out_of_range_is_an_error,
            concurrent_tasks_admit_exactly_a_per_call_limit,
            a_refund_gives_back_what_was_taken,
            a_refund_counts_nothing_and_lifts_no_block,
            concurrent_charges_and_refunds_stay_exact,
        );
    };
    (@each $runner:ident, $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::$runner($factory, $crate::conformance::scenarios::$name);
            }
        )*
    };
}

/// A limiter over `store` driven by a fresh [`ManualClock`].
fn setup<S: Store>(store: S) -> (Limiter<S>, ManualClock) {
    let clock = ManualClock::new();
    let limiter = Limiter::builder().store(store).clock(clock.clone()).build();
    (limiter, clock)
}

fn rule(strategy: Strategy, limit: u64, window_secs: u64) -> Rule {
    Rule::new(strategy.as_str(), limit, Duration::from_secs(window_secs))
        .strategy(strategy)
        .block_duration(Duration::ZERO)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Checks `n` times; returns how many were admitted.
async fn admitted<S: Store>(limiter: &Limiter<S>, id: &str, rule: &str, n: u64) -> u64 {
    let mut admitted = 0;
    for _ in 0..n {
        if limiter.check(id, rule).await.expect("check").allowed {
            admitted += 1;
        }
    }
    admitted
}

/// The scenarios; each takes a fresh store.
#[allow(missing_docs)]
pub mod scenarios {
    use super::*;

    pub async fn every_strategy_admits_exactly_its_limit<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 5, 60)).unwrap();
            for expected in (0..5).rev() {
                let status = limiter.check("client", strategy.as_str()).await.unwrap();
                assert!(status.allowed, "{strategy}");
                assert_eq!(status.remaining, expected, "{strategy}");
                assert_eq!(status.limit, 5);
                assert_eq!(status.verdict, Verdict::Allowed);
            }
            let denied = limiter.check("client", strategy.as_str()).await.unwrap();
            assert!(!denied.allowed, "{strategy}");
            assert_eq!(denied.verdict, Verdict::Limited);
            assert!(!denied.blocked);
            assert!(denied.retry_after.is_some_and(|r| r > Duration::ZERO));
        }
    }

    pub async fn token_bucket_refills_at_its_rate<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        // 100 per minute, bucket of 150: the documentation's table.
        limiter
            .add_rule(rule(Strategy::TokenBucket, 100, 60).burst(150))
            .unwrap();
        let id = "tb";
        let name = "token_bucket";
        assert_eq!(limiter.check_n(id, name, 50).await.unwrap().remaining, 100);
        clock.advance(secs(1));
        assert_eq!(limiter.check_n(id, name, 50).await.unwrap().remaining, 51);
        clock.advance(secs(1));
        let denied = limiter.check_n(id, name, 60).await.unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Some(secs(4)));
        clock.advance(secs(28));
        assert_eq!(limiter.check_n(id, name, 100).await.unwrap().remaining, 0);
        clock.advance(secs(30));
        assert!(limiter.check_n(id, name, 50).await.unwrap().allowed);
    }

    pub async fn leaky_bucket_drains_at_its_rate<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        limiter
            .add_rule(rule(Strategy::LeakyBucket, 100, 60))
            .unwrap();
        let (id, name) = ("lb", "leaky_bucket");
        assert!(limiter.check_n(id, name, 10).await.unwrap().allowed);
        clock.advance(secs(1));
        assert_eq!(limiter.check_n(id, name, 10).await.unwrap().remaining, 81);
        clock.advance(secs(4));
        assert!(!limiter.check_n(id, name, 95).await.unwrap().allowed);
        clock.advance(secs(5));
        assert_eq!(limiter.check_n(id, name, 50).await.unwrap().remaining, 46);
        clock.advance(secs(50));
        assert_eq!(limiter.check_n(id, name, 10).await.unwrap().remaining, 90);
    }

    pub async fn gcra_spaces_requests_by_the_emission_interval<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        // 10 per second with a burst of 10; after the burst, one every 100 ms.
        limiter.add_rule(rule(Strategy::Gcra, 10, 1)).unwrap();
        assert_eq!(admitted(&limiter, "g", "gcra", 12).await, 10);
        let denied = limiter.check("g", "gcra").await.unwrap();
        assert_eq!(denied.retry_after, Some(millis(100)));
        clock.advance(millis(100));
        assert_eq!(admitted(&limiter, "g", "gcra", 2).await, 1);
        clock.advance(millis(350));
        assert_eq!(admitted(&limiter, "g", "gcra", 5).await, 3);
    }

    pub async fn fixed_window_resets_at_the_window_boundary<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        limiter
            .add_rule(rule(Strategy::FixedWindow, 100, 60))
            .unwrap();
        let (id, name) = ("fw", "fixed_window");
        assert_eq!(limiter.check_n(id, name, 60).await.unwrap().remaining, 40);
        clock.advance(secs(30));
        assert_eq!(limiter.check_n(id, name, 40).await.unwrap().remaining, 0);
        clock.advance(secs(15));
        let denied = limiter.check_n(id, name, 10).await.unwrap();
        assert_eq!(denied.retry_after, Some(secs(15)));
        clock.advance(secs(15));
        assert_eq!(limiter.check_n(id, name, 60).await.unwrap().remaining, 40);
        clock.advance(secs(1));
        assert!(!limiter.check_n(id, name, 60).await.unwrap().allowed);
    }

    pub async fn sliding_window_forgets_each_admission_one_window_later<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        limiter
            .add_rule(rule(Strategy::SlidingWindow, 100, 60))
            .unwrap();
        let (id, name) = ("sw", "sliding_window");
        clock.advance(secs(5));
        limiter.check_n(id, name, 20).await.unwrap();
        clock.advance(secs(25));
        limiter.check_n(id, name, 40).await.unwrap();
        clock.advance(secs(25));
        limiter.check_n(id, name, 30).await.unwrap();
        clock.advance(secs(5));
        assert_eq!(limiter.check(id, name).await.unwrap().remaining, 9);
        clock.advance(secs(30) - Duration::from_nanos(1));
        assert_eq!(limiter.peek(id, name).await.unwrap().remaining, 29);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(limiter.peek(id, name).await.unwrap().remaining, 69);
        assert!(limiter.check_n(id, name, 69).await.unwrap().allowed);
        let denied = limiter.check_n(id, name, 30).await.unwrap();
        assert_eq!(denied.retry_after, Some(secs(25)));
    }

    pub async fn sliding_counter_weights_the_previous_window<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        limiter
            .add_rule(rule(Strategy::SlidingCounter, 100, 60))
            .unwrap();
        let (id, name) = ("sc", "sliding_counter");
        clock.advance(secs(10));
        assert!(limiter.check_n(id, name, 80).await.unwrap().allowed);
        clock.advance(secs(65));
        // 80 × 0.75 + 40 = 100: exactly full.
        assert_eq!(limiter.check_n(id, name, 40).await.unwrap().remaining, 0);
        clock.advance(secs(15));
        assert_eq!(limiter.peek(id, name).await.unwrap().remaining, 20);
        clock.advance(secs(15));
        assert_eq!(limiter.peek(id, name).await.unwrap().remaining, 40);
    }

    pub async fn retry_after_is_exact_for_every_strategy<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 3, 7)).unwrap();
            clock.advance(millis(1234));
            let name = strategy.as_str();
            assert_eq!(admitted(&limiter, "r", name, 3).await, 3, "{strategy}");
            let denied = limiter.check("r", name).await.unwrap();
            let retry = denied.retry_after.expect("denied has a retry time");
            clock.advance(retry - millis(1));
            assert!(
                !limiter.peek("r", name).await.unwrap().allowed,
                "{strategy}"
            );
            clock.advance(millis(1));
            assert!(
                limiter.check("r", name).await.unwrap().allowed,
                "{strategy}"
            );
        }
    }

    pub async fn reset_after_returns_the_full_allowance<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 4, 10)).unwrap();
            let name = strategy.as_str();
            clock.advance(millis(2500));
            limiter.check_n("z", name, 3).await.unwrap();
            let status = limiter.check("z", name).await.unwrap();
            assert!(status.reset_after > Duration::ZERO, "{strategy}");
            clock.advance(status.reset_after);
            assert_eq!(
                limiter.peek("z", name).await.unwrap().remaining,
                4,
                "{strategy}"
            );
        }
    }

    pub async fn check_n_consumes_its_cost<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 10, 60)).unwrap();
            let name = strategy.as_str();
            assert_eq!(limiter.check_n("n", name, 4).await.unwrap().remaining, 6);
            assert_eq!(limiter.check_n("n", name, 6).await.unwrap().remaining, 0);
            assert!(!limiter.check_n("n", name, 1).await.unwrap().allowed);
        }
    }

    pub async fn a_denied_large_cost_leaves_room_for_smaller_requests<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 10, 60)).unwrap();
            let name = strategy.as_str();
            limiter.check_n("c", name, 7).await.unwrap();
            let denied = limiter.check_n("c", name, 5).await.unwrap();
            assert!(!denied.allowed);
            assert_eq!(denied.remaining, 3, "{strategy}");
            assert!(
                limiter.check_n("c", name, 3).await.unwrap().allowed,
                "{strategy}"
            );
        }
    }

    pub async fn a_cost_above_capacity_or_zero_is_an_error<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::TokenBucket, 10, 60).burst(15))
            .unwrap();
        assert!(
            limiter
                .check_n("x", "token_bucket", 15)
                .await
                .unwrap()
                .allowed
        );
        let err = limiter.check_n("x", "token_bucket", 16).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidCost { capacity: 15, .. }),
            "{err}"
        );
        let err = limiter.check_n("x", "token_bucket", 0).await.unwrap_err();
        assert!(err.to_string().contains("between 1 and"), "{err}");
    }

    pub async fn peek_consumes_nothing<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 2, 60)).unwrap();
            let name = strategy.as_str();
            for _ in 0..5 {
                assert!(limiter.peek("p", name).await.unwrap().allowed);
            }
            assert_eq!(admitted(&limiter, "p", name, 3).await, 2, "{strategy}");
        }
        assert_eq!(limiter.metrics().total_requests, 18);
    }

    pub async fn peek_reports_the_allowance_before_the_request<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 5, 60)).unwrap();
            let name = strategy.as_str();
            assert_eq!(limiter.peek("q", name).await.unwrap().remaining, 5);
            let checked = limiter.check_n("q", name, 2).await.unwrap();
            assert_eq!(limiter.peek("q", name).await.unwrap().remaining, 3);
            assert_eq!(checked.remaining, 3);
        }
    }

    pub async fn peek_records_no_violation_and_starts_no_block<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::FixedWindow, 1, 60).block_duration(secs(300)))
            .unwrap();
        limiter.check("b", "fixed_window").await.unwrap();
        let peeked = limiter.peek("b", "fixed_window").await.unwrap();
        assert!(!peeked.allowed && !peeked.blocked);
        assert_eq!(peeked.retry_after, Some(secs(60)));
        assert_eq!(limiter.metrics().violations, 0);
        let checked = limiter.check("b", "fixed_window").await.unwrap();
        assert_eq!(checked.verdict, Verdict::Limited);
        assert_eq!(limiter.metrics().violations, 1);
    }

    pub async fn reset_forgets_the_state<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 2, 3600)).unwrap();
            let name = strategy.as_str();
            assert_eq!(admitted(&limiter, "r", name, 3).await, 2);
            assert_eq!(admitted(&limiter, "other", name, 1).await, 1);
            limiter.reset("r", name).await.unwrap();
            assert_eq!(admitted(&limiter, "r", name, 3).await, 2, "{strategy}");
            assert_eq!(limiter.peek("other", name).await.unwrap().remaining, 1);
        }
    }

    pub async fn reset_lifts_a_block<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::Gcra, 1, 60).block_duration(secs(600)))
            .unwrap();
        limiter.check("b", "gcra").await.unwrap();
        limiter.check("b", "gcra").await.unwrap();
        assert!(limiter.check("b", "gcra").await.unwrap().blocked);
        limiter.reset("b", "gcra").await.unwrap();
        assert!(limiter.check("b", "gcra").await.unwrap().allowed);
    }

    pub async fn unknown_rules_are_errors_naming_the_known_rules<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        let err = limiter.check("x", "api").await.unwrap_err();
        assert!(err.to_string().contains("no rules are defined"), "{err}");
        limiter.add_rule(Rule::new("login", 5, secs(60))).unwrap();
        limiter.add_rule(Rule::new("api", 5, secs(60))).unwrap();
        let err = limiter.check("x", "apii").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown rule \"apii\"; known rules: api, login"
        );
        assert!(matches!(
            limiter.reset("x", "apii").await,
            Err(Error::UnknownRule { .. })
        ));
        assert!(matches!(
            limiter.peek("x", "nope").await,
            Err(Error::UnknownRule { .. })
        ));
    }

    pub async fn a_violation_blocks_for_the_block_duration<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        for strategy in Strategy::ALL {
            limiter
                .add_rule(rule(strategy, 2, 10).block_duration(secs(300)))
                .unwrap();
            let name = strategy.as_str();
            assert_eq!(admitted(&limiter, "v", name, 2).await, 2);
            let violation = limiter.check("v", name).await.unwrap();
            assert_eq!(violation.verdict, Verdict::Limited);
            assert_eq!(violation.retry_after, Some(secs(300)), "{strategy}");
            // The reset is never earlier than the retry time of a denial.
            assert_eq!(violation.reset_after, secs(300), "{strategy}");
            clock.advance(secs(100));
            let blocked = limiter.check("v", name).await.unwrap();
            assert!(blocked.blocked && !blocked.allowed, "{strategy}");
            assert_eq!(blocked.verdict, Verdict::Blocked);
            assert_eq!(blocked.retry_after, Some(secs(200)));
            clock.advance(secs(200) - millis(1));
            assert!(limiter.check("v", name).await.unwrap().blocked);
            clock.advance(millis(1));
            assert!(
                limiter.check("v", name).await.unwrap().allowed,
                "{strategy}"
            );
        }
    }

    pub async fn a_zero_block_duration_never_blocks<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        limiter.add_rule(rule(Strategy::TokenBucket, 1, 1)).unwrap();
        for _ in 0..3 {
            assert!(limiter.check("z", "token_bucket").await.unwrap().allowed);
            let denied = limiter.check("z", "token_bucket").await.unwrap();
            assert!(!denied.allowed && !denied.blocked);
            assert_eq!(denied.retry_after, Some(secs(1)));
            clock.advance(secs(1));
        }
    }

    pub async fn blocks_are_per_rule_and_identifier<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(Rule::new("a", 1, secs(60)).block_duration(secs(60)))
            .unwrap();
        limiter
            .add_rule(Rule::new("b", 1, secs(60)).block_duration(secs(60)))
            .unwrap();
        limiter.check("x", "a").await.unwrap();
        limiter.check("x", "a").await.unwrap();
        assert!(limiter.check("x", "a").await.unwrap().blocked);
        assert!(limiter.check("y", "a").await.unwrap().allowed);
        assert!(limiter.check("x", "b").await.unwrap().allowed);
    }

    pub async fn whitelisted_identifiers_bypass_every_rule_uncounted<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::FixedWindow, 1, 60))
            .unwrap();
        limiter.whitelist_add("vip").await.unwrap();
        assert!(limiter.is_whitelisted("vip").await.unwrap());
        for _ in 0..10 {
            let status = limiter.check("vip", "fixed_window").await.unwrap();
            assert!(status.allowed);
            assert_eq!(status.rule, "whitelist");
            assert_eq!(status.verdict, Verdict::Whitelisted);
        }
        assert!(limiter.whitelist_remove("vip").await.unwrap());
        assert!(
            limiter.check("vip", "fixed_window").await.unwrap().allowed,
            "nothing was counted while whitelisted"
        );
        assert!(!limiter.check("vip", "fixed_window").await.unwrap().allowed);
    }

    pub async fn the_whitelist_applies_even_to_unknown_rules<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter.whitelist_add("vip").await.unwrap();
        assert!(limiter.check("vip", "no-such-rule").await.unwrap().allowed);
        limiter.blacklist_add("bad", None).await.unwrap();
        let status = limiter.check("bad", "no-such-rule").await.unwrap();
        assert!(!status.allowed && status.blocked);
        assert!(limiter.check("nobody", "no-such-rule").await.is_err());
    }

    pub async fn blacklisted_identifiers_are_denied_as_blocked<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter.add_rule(Rule::new("api", 100, secs(60))).unwrap();
        limiter.blacklist_add("bad", None).await.unwrap();
        assert!(limiter.is_blacklisted("bad").await.unwrap());
        let status = limiter.check("bad", "api").await.unwrap();
        assert!(!status.allowed && status.blocked);
        assert_eq!(status.verdict, Verdict::Blacklisted);
        assert_eq!(status.rule, "blacklist");
        assert_eq!(status.retry_after, None);
        assert_eq!(limiter.metrics().violations, 0);
        assert!(limiter.check("good", "api").await.unwrap().allowed);
    }

    pub async fn blacklist_entries_expire<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        limiter.add_rule(Rule::new("api", 100, secs(60))).unwrap();
        limiter.blacklist_add("temp", Some(secs(30))).await.unwrap();
        let status = limiter.check("temp", "api").await.unwrap();
        assert_eq!(status.retry_after, Some(secs(30)));
        clock.advance(secs(29));
        assert!(limiter.is_blacklisted("temp").await.unwrap());
        clock.advance(secs(1));
        assert!(!limiter.is_blacklisted("temp").await.unwrap());
        assert!(limiter.check("temp", "api").await.unwrap().allowed);
        assert_eq!(limiter.metrics().blacklisted, 0);
    }

    pub async fn the_whitelist_wins_over_the_blacklist<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter.add_rule(Rule::new("api", 1, secs(60))).unwrap();
        limiter.blacklist_add("both", None).await.unwrap();
        limiter.whitelist_add("both").await.unwrap();
        assert!(limiter.check("both", "api").await.unwrap().allowed);
    }

    pub async fn list_entries_and_removal<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        limiter.blacklist_add("b2", Some(secs(10))).await.unwrap();
        limiter.blacklist_add("b1", None).await.unwrap();
        limiter.whitelist_add("w1").await.unwrap();
        let entries = limiter.list_entries(ListKind::Blacklist).await.unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e.identifier.as_str()).collect();
        assert_eq!(ids, ["b1", "b2"]);
        assert_eq!(entries[0].expires_at, None);
        assert_eq!(
            entries[1].expires_at,
            Some(ManualClock::START.saturating_add(secs(10)))
        );
        let metrics = limiter.metrics();
        assert_eq!((metrics.whitelisted, metrics.blacklisted), (1, 2));
        clock.advance(secs(10));
        let entries = limiter.list_entries(ListKind::Blacklist).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert!(limiter.blacklist_remove("b1").await.unwrap());
        assert!(!limiter.blacklist_remove("b1").await.unwrap());
        assert!(!limiter.whitelist_remove("nobody").await.unwrap());
        assert!(
            limiter
                .list_entries(ListKind::Blacklist)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn identifiers_are_independent_including_empty_and_huge_ones<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::SlidingCounter, 2, 60))
            .unwrap();
        let huge_a = "a".repeat(100_000);
        let mut huge_b = huge_a.clone();
        huge_b.push('b');
        let name = "sliding_counter";
        for id in ["", "1.2.3.4", "1.2.3.5", "ünïcødé ✓", &huge_a, &huge_b] {
            assert_eq!(admitted(&limiter, id, name, 3).await, 2, "{:.20}", id);
        }
        limiter.blacklist_add(&huge_a, None).await.unwrap();
        assert!(limiter.is_blacklisted(&huge_a).await.unwrap());
        assert!(!limiter.is_blacklisted(&huge_b).await.unwrap());
    }

    pub async fn idle_keys_behave_like_fresh_ones<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 3, 5)).unwrap();
            assert_eq!(admitted(&limiter, "i", strategy.as_str(), 4).await, 3);
        }
        clock.advance(Duration::from_secs(24 * 3600));
        for strategy in Strategy::ALL {
            assert_eq!(admitted(&limiter, "i", strategy.as_str(), 4).await, 3);
        }
    }

    pub async fn costs_at_the_integer_edges_never_saturate_into_admission<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        let cost = (1 << 63) + 1;
        for strategy in [
            Strategy::FixedWindow,
            Strategy::SlidingCounter,
            Strategy::TokenBucket,
        ] {
            limiter.add_rule(rule(strategy, u64::MAX, 60)).unwrap();
            let mut allowed = Vec::new();
            for _ in 0..4 {
                let status = limiter.check_n("edge", strategy.as_str(), cost).await;
                allowed.push(status.unwrap().allowed);
            }
            assert_eq!(allowed, [true, false, false, false], "{strategy}");
        }
    }

    pub async fn replacing_a_rule_carries_its_state_unless_strategy_or_window_change<S: Store>(
        store: S,
    ) {
        let (limiter, _) = setup(store);
        let original = rule(Strategy::FixedWindow, 2, 60);
        limiter.add_rule(original.clone()).unwrap();
        assert_eq!(admitted(&limiter, "k", "fixed_window", 3).await, 2);
        limiter.add_rule(original.clone()).unwrap();
        assert_eq!(admitted(&limiter, "k", "fixed_window", 1).await, 0);
        limiter.set_rules([original.clone()]).unwrap();
        assert_eq!(admitted(&limiter, "k", "fixed_window", 1).await, 0);
        limiter
            .add_rule(original.clone().strategy(Strategy::SlidingWindow))
            .unwrap();
        assert_eq!(admitted(&limiter, "k", "fixed_window", 3).await, 2);
        assert_eq!(limiter.rule("fixed_window").unwrap().limit, 2);
        assert!(limiter.add_rule(Rule::new("bad", 0, secs(1))).is_err());
        assert!(
            limiter
                .set_rules([original, Rule::new("", 1, secs(1))])
                .is_err()
        );
        assert_eq!(
            limiter.rules()[0].strategy,
            Strategy::SlidingWindow,
            "a failed set_rules changes nothing"
        );
    }

    pub async fn a_new_limit_applies_to_what_was_already_consumed<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        for strategy in Strategy::ALL {
            let name = strategy.as_str();
            limiter.add_rule(rule(strategy, 10, 60)).unwrap();
            assert_eq!(admitted(&limiter, "k", name, 6).await, 6, "{strategy}");
            // Lowered below what was used (a reload during an attack): nothing fresh.
            limiter.add_rule(rule(strategy, 3, 60)).unwrap();
            assert_eq!(admitted(&limiter, "k", name, 3).await, 0, "{strategy}");
            assert_eq!(limiter.peek("k", name).await.unwrap().remaining, 0);
            // Raised: what was used still counts.
            limiter.add_rule(rule(strategy, 20, 60)).unwrap();
            assert_eq!(admitted(&limiter, "k", name, 20).await, 14, "{strategy}");
            // Another window starts fresh (old state would mean something else).
            limiter.add_rule(rule(strategy, 20, 30)).unwrap();
            assert_eq!(admitted(&limiter, "k", name, 21).await, 20, "{strategy}");
            clock.advance(secs(3600));
        }
        // Large numbers (Redis decides these in arbitrary precision) carry over the same way.
        let big = |limit| rule(Strategy::TokenBucket, limit, 60);
        limiter.add_rule(big(200_000)).unwrap();
        let name = "token_bucket";
        assert!(limiter.check_n("big", name, 120_000).await.unwrap().allowed);
        limiter.add_rule(big(60_000)).unwrap();
        assert!(!limiter.check("big", name).await.unwrap().allowed);
        limiter.add_rule(big(400_000)).unwrap();
        assert!(limiter.check_n("big", name, 280_000).await.unwrap().allowed);
        assert!(!limiter.check("big", name).await.unwrap().allowed);
    }

    pub async fn a_removed_rule_is_unknown<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter.add_rule(Rule::new("gone", 5, secs(60))).unwrap();
        limiter.check("x", "gone").await.unwrap();
        assert!(limiter.remove_rule("gone"));
        assert!(!limiter.remove_rule("gone"));
        assert!(limiter.rule("gone").is_none());
        assert!(limiter.check("x", "gone").await.is_err());
        assert_eq!(
            limiter.metrics().total_requests,
            1,
            "totals keep its counts"
        );
    }

    pub async fn violations_are_recorded_with_their_details<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(
                Rule::new("login", 1, secs(60))
                    .scope(crate::Scope::User)
                    .block_duration(secs(120)),
            )
            .unwrap();
        limiter.check("alice", "login").await.unwrap();
        limiter.check_n("alice", "login", 1).await.unwrap();
        limiter.check("alice", "login").await.unwrap(); // blocked: not a new violation
        let violations = limiter.violations();
        assert_eq!(violations.len(), 1);
        let v = &violations[0];
        assert_eq!(v.identifier.to_string(), "alice");
        assert_eq!(v.rule.to_string(), "login");
        assert_eq!((v.limit, v.cost, v.scope), (1, 1, crate::Scope::User));
        assert_eq!(v.retry_after, secs(120));
        assert_eq!(v.at, ManualClock::START.to_system_time());
        assert_eq!(
            v.blocked_until,
            Some(
                ManualClock::START
                    .saturating_add(secs(120))
                    .to_system_time()
            )
        );
        assert_eq!(limiter.metrics().recent_violations, violations);
    }

    pub async fn callbacks_run_and_their_panics_are_contained<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::FixedWindow, 1, 60))
            .unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        limiter.on_violation(|_| panic!("a buggy callback"));
        let counter = Arc::clone(&seen);
        limiter.on_violation(move |v| {
            assert_eq!(v.rule, "fixed_window");
            counter.fetch_add(1, Ordering::SeqCst);
        });
        limiter.check("p", "fixed_window").await.unwrap();
        for _ in 0..3 {
            let status = limiter.check("p", "fixed_window").await.unwrap();
            assert!(!status.allowed);
        }
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        let metrics = limiter.metrics();
        assert_eq!((metrics.callback_panics, metrics.violations), (3, 3));
        assert!(
            limiter
                .check("other", "fixed_window")
                .await
                .unwrap()
                .allowed
        );
    }

    pub async fn metrics_count_every_decision<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter.add_rule(Rule::new("a", 2, secs(60))).unwrap();
        limiter.add_rule(Rule::new("b", 1, secs(60))).unwrap();
        limiter.whitelist_add("w").await.unwrap();
        limiter.blacklist_add("x", None).await.unwrap();
        admitted(&limiter, "1", "a", 4).await; // 2 allowed, 1 violation, 1 blocked
        admitted(&limiter, "1", "b", 1).await;
        admitted(&limiter, "w", "a", 2).await;
        admitted(&limiter, "x", "b", 1).await;
        let m = limiter.metrics();
        assert_eq!(m.total_requests, 8);
        assert_eq!(m.allowed_requests, 5);
        assert_eq!(m.blocked_requests, 3);
        assert!((m.block_rate - 37.5).abs() < 1e-9);
        assert_eq!(m.violations, 1);
        assert_eq!(m.active_rules, 2);
        assert_eq!((m.whitelisted, m.blacklisted), (1, 1));
        assert_eq!(m.rules[0].rule, "a");
        assert_eq!((m.rules[0].allowed, m.rules[0].denied), (4, 2));
        limiter.reset_metrics();
        let m = limiter.metrics();
        assert_eq!((m.total_requests, m.violations), (0, 0));
        assert!(m.recent_violations.is_empty());
    }

    pub async fn concurrent_tasks_admit_exactly_the_limit<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter
                .add_rule(rule(strategy, 1000, 3600).block_duration(Duration::ZERO))
                .unwrap();
        }
        for strategy in Strategy::ALL {
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let limiter = limiter.clone();
                    tokio::spawn(
                        async move { admitted(&limiter, "hot", strategy.as_str(), 40).await },
                    )
                })
                .collect();
            let mut total = 0;
            for task in tasks {
                total += task.await.expect("task");
            }
            assert_eq!(total, 1000, "{strategy}: 32 tasks × 40 checks");
        }
    }

    pub async fn a_refund_gives_back_what_was_taken<S: Store>(store: S) {
        let (limiter, clock) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 10, 60)).unwrap();
            let name = strategy.as_str();
            assert_eq!(limiter.check_n("r", name, 7).await.unwrap().remaining, 3);
            let refunded = limiter.refund("r", name, 5).await.unwrap();
            assert!(refunded.allowed, "{strategy}");
            assert_eq!(refunded.remaining, 8, "{strategy}: 7 taken, 5 given back");
            assert_eq!(limiter.peek("r", name).await.unwrap().remaining, 8);
            assert!(
                limiter.check_n("r", name, 8).await.unwrap().allowed,
                "{strategy}"
            );
            assert!(
                !limiter.check("r", name).await.unwrap().allowed,
                "{strategy}"
            );
            // More than was taken gives a fresh key, never more.
            let refunded = limiter.refund("r", name, 1000).await.unwrap();
            assert_eq!(refunded.remaining, 10, "{strategy}");
            assert_eq!(admitted(&limiter, "r", name, 12).await, 10, "{strategy}");
            // A refund of nothing is a look; of a fresh key, a fresh key.
            assert_eq!(limiter.refund("r", name, 0).await.unwrap().remaining, 0);
            assert_eq!(
                limiter.refund("fresh", name, 3).await.unwrap().remaining,
                10
            );
            assert_eq!(
                admitted(&limiter, "fresh", name, 11).await,
                10,
                "{strategy}"
            );
        }
        // Later in the window (and for the buckets, partly refilled), a refund still gives
        // back exactly its amount.
        limiter
            .add_rule(rule(Strategy::TokenBucket, 60, 60).burst(60))
            .unwrap();
        limiter.check_n("later", "token_bucket", 60).await.unwrap();
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            limiter
                .peek("later", "token_bucket")
                .await
                .unwrap()
                .remaining,
            10
        );
        let refunded = limiter.refund("later", "token_bucket", 25).await.unwrap();
        assert_eq!(refunded.remaining, 35);
    }

    pub async fn a_refund_counts_nothing_and_lifts_no_block<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::FixedWindow, 3, 60).block_duration(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(admitted(&limiter, "b", "fixed_window", 4).await, 3);
        let before = limiter.metrics();
        let refunded = limiter.refund("b", "fixed_window", 3).await.unwrap();
        assert!(refunded.blocked && !refunded.allowed, "the block stands");
        assert!(!limiter.check("b", "fixed_window").await.unwrap().allowed);
        let after = limiter.metrics();
        assert_eq!(
            after.total_requests,
            before.total_requests + 1,
            "only the check counts"
        );
        assert_eq!(after.violations, before.violations);
        let err = limiter.refund("b", "nope", 1).await.unwrap_err();
        assert!(matches!(err, Error::UnknownRule { .. }), "{err}");
    }

    pub async fn concurrent_charges_and_refunds_stay_exact<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 200, 3600)).unwrap();
        }
        for strategy in Strategy::ALL {
            // 32 tasks × 10 times: take 5, give 4 back; a charge that is refused gives nothing
            // back. What is left is exactly the limit less one per admitted charge.
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let limiter = limiter.clone();
                    tokio::spawn(async move {
                        let name = strategy.as_str();
                        let mut kept = 0;
                        for _ in 0..10 {
                            if limiter.check_n("pool", name, 5).await.unwrap().allowed {
                                limiter.refund("pool", name, 4).await.unwrap();
                                kept += 1;
                            }
                        }
                        kept
                    })
                })
                .collect();
            let mut kept = 0;
            for task in tasks {
                kept += task.await.expect("task");
            }
            let left = limiter
                .peek("pool", strategy.as_str())
                .await
                .unwrap()
                .remaining;
            assert!(kept > 0, "{strategy}");
            assert_eq!(
                left,
                200 - kept,
                "{strategy}: {kept} charges kept one unit each"
            );
        }
    }

    pub async fn a_per_call_limit_is_enforced_by_every_strategy<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            let name = strategy.as_str();
            limiter.add_rule(rule(strategy, 100, 60)).unwrap();
            let at = |limit| limiter.check_at_limit("k", name, limit);
            for expected in (0..7).rev() {
                let status = at(7).await.unwrap();
                assert!(status.allowed, "{strategy}");
                assert_eq!(
                    (status.limit, status.remaining),
                    (7, expected),
                    "{strategy}"
                );
            }
            let denied = at(7).await.unwrap();
            assert!(!denied.allowed && denied.limit == 7, "{strategy}");
            // Lowered: what was used still counts, nothing fresh; raised: only the difference.
            assert!(!at(3).await.unwrap().allowed, "{strategy}");
            let peek = limiter.peek_at_limit("k", name, 12).await.unwrap();
            assert_eq!((peek.limit, peek.remaining), (12, 5), "{strategy}");
            let mut admitted = 0;
            for _ in 0..8 {
                admitted += u64::from(at(12).await.unwrap().allowed);
            }
            assert_eq!(admitted, 5, "{strategy}");
            // The rule's own limit, for the same key: 100 minus the 12 used.
            assert_eq!(limiter.peek("k", name).await.unwrap().remaining, 88);
            let violation = limiter.violations().pop().expect("a violation");
            assert_eq!(violation.limit, 12, "{strategy}");
        }
        // A burst keeps its ratio to the limit: 150 of 100 is 15 of 10.
        limiter
            .add_rule(rule(Strategy::TokenBucket, 100, 60).burst(150))
            .unwrap();
        let name = "token_bucket";
        assert_eq!(
            limiter
                .check_n_at_limit("b", name, 15, 10)
                .await
                .unwrap()
                .remaining,
            0
        );
        assert!(!limiter.check_at_limit("b", name, 10).await.unwrap().allowed);
        // Numbers beyond exact doubles (Redis decides these in arbitrary precision).
        let big = 1u64 << 52;
        let status = limiter
            .check_n_at_limit("big", name, big, big)
            .await
            .unwrap();
        assert!(status.allowed && status.remaining == big / 2, "{status:?}");
        assert!(
            limiter
                .check_n_at_limit("big", name, big / 2, big)
                .await
                .unwrap()
                .allowed
        );
        assert!(
            !limiter
                .check_at_limit("big", name, big)
                .await
                .unwrap()
                .allowed
        );
    }

    pub async fn a_per_call_limit_out_of_range_is_an_error<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        limiter
            .add_rule(rule(Strategy::SlidingWindow, 10, 60))
            .unwrap();
        limiter
            .add_rule(rule(Strategy::FixedWindow, 10, 60))
            .unwrap();
        let error = limiter
            .check_at_limit("k", "fixed_window", 0)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidLimit { limit: 0, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("at least 1"), "{error}");
        let error = limiter
            .check_at_limit("k", "sliding_window", 200_000)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("at most 100000"), "{error}");
        let error = limiter
            .check_n_at_limit("k", "fixed_window", 6, 5)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidCost { capacity: 5, .. }),
            "{error}"
        );
        assert_eq!(limiter.metrics().total_requests, 0, "errors count nothing");
        assert!(limiter.check_at_limit("k", "nope", 5).await.is_err());
    }

    pub async fn concurrent_tasks_admit_exactly_a_per_call_limit<S: Store>(store: S) {
        let (limiter, _) = setup(store);
        for strategy in Strategy::ALL {
            limiter.add_rule(rule(strategy, 100, 3600)).unwrap();
        }
        for strategy in Strategy::ALL {
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let limiter = limiter.clone();
                    tokio::spawn(async move {
                        let mut admitted = 0;
                        for _ in 0..40 {
                            let status = limiter.check_at_limit("hot", strategy.as_str(), 500);
                            admitted += u64::from(status.await.expect("check").allowed);
                        }
                        admitted
                    })
                })
                .collect();
            let mut total = 0;
            for task in tasks {
                total += task.await.expect("task");
            }
            assert_eq!(
                total, 500,
                "{strategy}: 32 tasks × 40 checks at a limit of 500"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The names between `start` and `end` in this file that follow `before` and end at
    /// `until`.
    fn names(start: &str, end: &str, before: &str, until: char) -> Vec<String> {
        let source = include_str!("conformance.rs");
        let from = source.find(start).expect("the start marker") + start.len();
        let to = from + source[from..].find(end).expect("the end marker");
        let mut names: Vec<String> = source[from..to]
            .split(before)
            .skip(1)
            .filter_map(|rest| rest.split(until).next())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_scenario_is_in_the_suite_and_every_listed_one_exists() {
        let defined = names(
            "pub mod scenarios {",
            "\n#[cfg(test)]",
            "pub async fn ",
            '<',
        );
        let listed = names("@each $runner, $factory;", ");", "\n", ',');
        assert!(defined.len() >= 35, "{defined:?}");
        assert_eq!(
            defined, listed,
            "a scenario in `scenarios` is missing from conformance_suite!'s list, or the other way"
        );
    }
}
