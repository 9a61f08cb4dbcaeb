//! The strategy math against the tables of the original documentation
//! (`user_guide/strategies.rst`) and against property-tested invariants.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::{Config, FileFailurePersistence};

use super::*;
use crate::rule::{Rule, Strategy};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// 2026-01-01T00:00:00Z: a multiple of every window used here.
const T0: u64 = 1_767_225_600 * SEC;

/// One key's state under any strategy.
#[derive(Clone, Debug)]
enum Model {
    Compact(Compact, State),
    Log(SlidingLog),
}

impl Model {
    fn new(strategy: Strategy) -> Self {
        match Compact::of(strategy) {
            Some(kind) => Model::Compact(kind, State::default()),
            None => Model::Log(SlidingLog::new()),
        }
    }

    fn check(&mut self, params: &Params, now: u64, cost: u64) -> Decision {
        match self {
            Model::Compact(kind, state) => {
                let (decision, next) = decide(*kind, params, state, now, cost);
                *state = next;
                decision
            }
            Model::Log(log) => {
                let decision = log.decide(params, now, cost);
                if decision.allowed {
                    log.record(now, cost);
                }
                decision
            }
        }
    }

    /// Gives back `amount` units at `now`.
    fn refund(&mut self, params: &Params, now: u64, amount: u64) {
        match self {
            Model::Compact(kind, state) => *state = refund(*kind, params, state, now, amount),
            Model::Log(log) => log.refund(params, now, amount),
        }
    }

    /// What a check would decide, without taking it: `remaining` is the allowance before.
    fn peek(&self, params: &Params, now: u64, cost: u64) -> Decision {
        let mut copy = self.clone();
        let (decision, idle) = match &mut copy {
            Model::Compact(kind, state) => (
                decide(*kind, params, state, now, cost).0,
                idle_at(*kind, params, state, now),
            ),
            Model::Log(log) => (log.decide(params, now, cost), log.idle_at(params)),
        };
        crate::strategy::peek_view(decision, cost, idle, now)
    }
}

fn params(strategy: Strategy, limit: u64, window_secs: u64, burst: u64) -> Params {
    Params::of(
        &Rule::new("t", limit, Duration::from_secs(window_secs))
            .strategy(strategy)
            .burst(burst),
    )
}

/// Runs `(seconds after T0, cost, expected allowed, expected remaining)` rows.
fn run_table(strategy: Strategy, params: Params, rows: &[(f64, u64, bool, u64)]) {
    let mut model = Model::new(strategy);
    for &(at, cost, allowed, remaining) in rows {
        let now = T0 + (at * SEC as f64).round() as u64;
        let decision = model.check(&params, now, cost);
        assert_eq!(
            (decision.allowed, decision.remaining),
            (allowed, remaining),
            "{strategy} at {at}s cost {cost}: {decision:?}"
        );
    }
}

#[test]
fn token_bucket_table() {
    // limit=100, window=60, burst=150. The documentation's 30 s and 60 s rows carry an
    // arithmetic slip (103.34 tokens); exactly, 51.67 + 29 s × 5/3 per s = 100 tokens.
    let p = params(Strategy::TokenBucket, 100, 60, 150);
    run_table(
        Strategy::TokenBucket,
        p,
        &[
            (0.0, 50, true, 100),
            (1.0, 50, true, 51), // 51.67 tokens left
            (2.0, 60, false, 53),
            (30.0, 100, true, 0),
            (60.0, 50, true, 0),
        ],
    );
    let mut model = Model::new(Strategy::TokenBucket);
    model.check(&p, T0, 50);
    model.check(&p, T0 + SEC, 50);
    // 53.33 tokens at 2 s; 6.67 more take exactly 4 s at 100 per minute.
    let denied = model.check(&p, T0 + 2 * SEC, 60);
    assert_eq!(denied.retry_after, Some(4 * SEC));
}

#[test]
fn leaky_bucket_table() {
    // limit=100, window=60: drains 5/3 per second, holds 100.
    run_table(
        Strategy::LeakyBucket,
        params(Strategy::LeakyBucket, 100, 60, 100),
        &[
            (0.0, 10, true, 90),
            (1.0, 10, true, 81),  // level 18.33
            (5.0, 95, false, 88), // level 11.67 + 95 overflows
            (10.0, 50, true, 46), // level 3.33 + 50
            (60.0, 10, true, 90), // drained
        ],
    );
}

#[test]
fn fixed_window_table() {
    // The documentation's last row ("120/100 ✓") is a typo: the window holds 60 already.
    let p = params(Strategy::FixedWindow, 100, 60, 100);
    run_table(
        Strategy::FixedWindow,
        p,
        &[
            (0.0, 60, true, 40),
            (30.0, 40, true, 0),
            (45.0, 10, false, 0),
            (60.0, 60, true, 40),
            (61.0, 60, false, 40),
        ],
    );
    let mut model = Model::new(Strategy::FixedWindow);
    model.check(&p, T0 + 59 * SEC, 100);
    assert_eq!(
        model.check(&p, T0 + 59 * SEC, 1).retry_after,
        Some(SEC),
        "the next window starts at 60 s"
    );
    // The boundary problem the documentation describes: 200 in two seconds.
    assert!(model.check(&p, T0 + 60 * SEC, 100).allowed);
}

#[test]
fn sliding_counter_table() {
    let p = params(Strategy::SlidingCounter, 100, 60, 100);
    let mut model = Model::new(Strategy::SlidingCounter);
    assert!(model.check(&p, T0 + 10 * SEC, 80).allowed);
    // 75 s: 80 × 0.75 = 60 weighted, so 40 more fit exactly.
    assert!(model.check(&p, T0 + 75 * SEC, 40).allowed);
    // 90 s: 80 × 0.5 + 40 = 80 weighted; 20 remain.
    assert_eq!(model.peek(&p, T0 + 90 * SEC, 1).remaining, 20);
    // 105 s: 80 × 0.25 + 40 = 60.
    assert_eq!(model.peek(&p, T0 + 105 * SEC, 1).remaining, 40);

    // The boundary fix: 100 at 59 s, then at 61 s 100 × 59/60 = 98.3 is still counted.
    let mut model = Model::new(Strategy::SlidingCounter);
    assert!(model.check(&p, T0 + 59 * SEC, 100).allowed);
    let at_61 = model.peek(&p, T0 + 61 * SEC, 1);
    assert_eq!(at_61.remaining, 1);
    assert!(model.check(&p, T0 + 61 * SEC, 1).allowed);
    let denied = model.check(&p, T0 + 61 * SEC, 1);
    assert!(!denied.allowed);
    // 100 × (60 − e)/60 + 2 <= 100 from e = 1.2 s: retry at 61.2 s.
    assert_eq!(denied.retry_after, Some(200 * MS));
}

#[test]
fn sliding_window_table() {
    let p = params(Strategy::SlidingWindow, 100, 60, 100);
    let mut model = Model::new(Strategy::SlidingWindow);
    for (at, cost) in [(5, 20), (30, 40), (55, 30)] {
        assert!(model.check(&p, T0 + at * SEC, cost).allowed);
    }
    // 60 s: the window (0 s, 60 s] holds 90.
    let at_60 = model.check(&p, T0 + 60 * SEC, 1);
    assert_eq!((at_60.allowed, at_60.remaining), (true, 9));
    // Just before 90 s the 30 s admissions still count: 40 + 30 + 1 = 71.
    assert_eq!(model.peek(&p, T0 + 90 * SEC - 1, 1).remaining, 29);
    // At 90 s the window is (30 s, 90 s]: they have left.
    assert_eq!(model.peek(&p, T0 + 90 * SEC, 1).remaining, 69);
    // Fill up at 90 s, then the wait is until the 55 s entry leaves at 115 s.
    assert!(model.check(&p, T0 + 90 * SEC, 69).allowed);
    let denied = model.check(&p, T0 + 90 * SEC, 30);
    assert_eq!(denied.retry_after, Some(25 * SEC));
    assert_eq!(denied.reset_after, 60 * SEC);
}

#[test]
fn gcra_spaces_requests_by_the_emission_interval() {
    // 10 per second, burst 1: one request every 100 ms.
    let p = params(Strategy::Gcra, 10, 1, 10);
    let strict = Params { capacity: 1, ..p };
    let mut model = Model::new(Strategy::Gcra);
    assert!(model.check(&strict, T0, 1).allowed);
    let denied = model.check(&strict, T0 + 40 * MS, 1);
    assert_eq!(denied.retry_after, Some(60 * MS));
    assert!(!model.check(&strict, T0 + 100 * MS - 1, 1).allowed);
    assert!(model.check(&strict, T0 + 100 * MS, 1).allowed);
}

#[test]
fn rates_that_do_not_divide_evenly_stay_exact() {
    // 7 per minute: 8.571428571428… s per token. After 7 tokens, exactly 60 s refills all 7.
    let p = params(Strategy::TokenBucket, 7, 60, 7);
    let mut model = Model::new(Strategy::TokenBucket);
    assert!(model.check(&p, T0, 7).allowed);
    let denied = model.check(&p, T0, 1);
    assert_eq!(denied.retry_after, Some(8_571_428_572)); // ceil of 60/7 s in ns
    assert_eq!(denied.reset_after, 60 * SEC);
    assert!(!model.check(&p, T0 + 60 * SEC - 1, 7).allowed);
    assert!(model.check(&p, T0 + 60 * SEC, 7).allowed);
}

#[test]
fn a_cost_above_capacity_is_never_admitted() {
    for strategy in Strategy::ALL {
        let p = params(strategy, 5, 1, 5);
        let decision = Model::new(strategy).check(&p, T0, 6);
        assert!(!decision.allowed, "{strategy}");
        assert_eq!(decision.retry_after, None, "{strategy}");
        assert_eq!(decision.remaining, 5, "{strategy}");
    }
}

#[test]
fn huge_windows_do_not_overflow() {
    let rule = Rule::new("t", u64::from(u32::MAX), crate::rule::MAX_WINDOW);
    for strategy in Strategy::ALL.into_iter().filter(|s| s.uses_burst()) {
        let p = Params::of(&rule.clone().strategy(strategy));
        let mut model = Model::new(strategy);
        let now = u64::MAX / 4;
        assert!(model.check(&p, now, u64::from(u32::MAX)).allowed);
        let denied = model.check(&p, now, 1);
        assert!(!denied.allowed);
        assert!(denied.retry_after.unwrap() > 0);
    }
    for strategy in [Strategy::FixedWindow, Strategy::SlidingCounter] {
        let p = Params::of(&rule.clone().strategy(strategy));
        let mut model = Model::new(strategy);
        assert!(model.check(&p, u64::MAX - 1, 5).allowed);
        assert!(model.peek(&p, u64::MAX, 1).allowed);
    }
}

#[test]
fn idle_state_is_equivalent_to_fresh() {
    for strategy in Strategy::ALL {
        let p = params(strategy, 3, 10, 5);
        let mut model = Model::new(strategy);
        model.check(&p, T0 + 3 * SEC, 2);
        model.check(&p, T0 + 4 * SEC, 1);
        let idle = match &model {
            Model::Compact(kind, state) => idle_at(*kind, &p, state, T0 + 4 * SEC),
            Model::Log(log) => log.idle_at(&p),
        };
        let fresh = Model::new(strategy).peek(&p, idle, 1);
        let aged = model.peek(&p, idle, 1);
        assert_eq!(aged.remaining, fresh.remaining, "{strategy}");
        assert!(model.peek(&p, idle - 1, 1).remaining < fresh.remaining.max(1) || idle == 0);
    }
}

/// A random rule and arrival sequence: `(strategy, params, [(gap ns, cost)])`.
fn scenario() -> impl proptest::strategy::Strategy<Value = (Strategy, Params, Vec<(u64, u64)>)> {
    let strategies = proptest::sample::select(Strategy::ALL.to_vec());
    let windows = proptest::sample::select(vec![MS, 7 * MS, SEC, 60 * SEC, 3_600 * SEC]);
    (strategies, 1..=12u64, 0..=6u64, windows)
        .prop_flat_map(|(strategy, limit, extra, window)| {
            let rule = Rule::new("p", limit, Duration::from_nanos(window))
                .strategy(strategy)
                .burst(limit + extra);
            let p = Params::of(&rule);
            let arrival = (0..=window * 2, 1..=p.capacity);
            (
                Just(strategy),
                Just(p),
                proptest::collection::vec(arrival, 1..80),
            )
        })
        .prop_map(|(strategy, p, gaps)| {
            // Many requests arrive at the same instant.
            let gaps = gaps
                .into_iter()
                .enumerate()
                .map(|(i, (gap, cost))| (if i % 3 == 0 { gap } else { 0 }, cost))
                .collect();
            (strategy, p, gaps)
        })
}

/// A rule and arrivals at the integer edges: limits, bursts and costs near `u64::MAX` and
/// `2^63`, where a saturating sum could land exactly on the limit.
fn edge_scenario() -> impl proptest::strategy::Strategy<Value = (Strategy, Params, Vec<(u64, u64)>)>
{
    const EDGES: [u64; 6] = [
        u64::MAX,
        u64::MAX - 1,
        (1 << 63) + 1,
        1 << 63,
        (1 << 63) - 1,
        3,
    ];
    let strategies = proptest::sample::select(
        Strategy::ALL
            .into_iter()
            .filter(|s| *s != Strategy::SlidingWindow)
            .collect::<Vec<_>>(),
    );
    let windows = proptest::sample::select(vec![1, MS, SEC, 3_600 * SEC]);
    (
        strategies,
        proptest::sample::select(EDGES.to_vec()),
        windows,
    )
        .prop_filter_map("a valid rule", |(strategy, limit, window)| {
            let rule = Rule::new("edge", limit, Duration::from_nanos(window)).strategy(strategy);
            rule.validate().ok().map(|()| (strategy, Params::of(&rule)))
        })
        .prop_flat_map(|(strategy, p)| {
            let costs = EDGES
                .into_iter()
                .chain([1, p.capacity, p.capacity / 2 + 1])
                .filter(|&c| c >= 1 && c <= p.capacity)
                .collect::<Vec<_>>();
            let arrival = (
                proptest::sample::select(vec![0, 1, p.window / 2, p.window]),
                proptest::sample::select(costs),
            );
            (
                Just(strategy),
                Just(p),
                proptest::collection::vec(arrival, 1..12),
            )
        })
}

/// The `(time, cost)` of the arrivals `(gap, cost)` that `strategy` admits.
fn admissions(strategy: Strategy, p: &Params, arrivals: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut model = Model::new(strategy);
    let mut now = T0;
    let mut admitted = Vec::new();
    for &(gap, cost) in arrivals {
        now += gap;
        if model.check(p, now, cost).allowed {
            admitted.push((now, cost));
        }
    }
    admitted
}

/// Checks that the admissions `(time, cost)` never exceed what `strategy` allows.
fn assert_within_bounds(strategy: Strategy, p: &Params, admitted: &[(u64, u64)]) {
    let window_of = |t: u64| t - t % p.window;
    // Sums in u128: costs near `u64::MAX` must not wrap in the check itself.
    let sum = |from: usize, to: usize| {
        admitted[from..=to]
            .iter()
            .map(|a| u128::from(a.1))
            .sum::<u128>()
    };
    for j in 0..admitted.len() {
        let (tj, _) = admitted[j];
        match Compact::of(strategy) {
            Some(Compact::Tat) => {
                // In any span [ti, tj]: cost <= burst + (tj − ti) · limit / window.
                for (i, &(ti, _)) in admitted[..=j].iter().enumerate() {
                    let span = u128::from(tj - ti);
                    let lhs = sum(i, j) * u128::from(p.window);
                    let rhs =
                        u128::from(p.capacity) * u128::from(p.window) + span * u128::from(p.limit);
                    prop_assert_ok(lhs <= rhs, || format!("{strategy} exceeded at {j}"));
                }
            }
            None => {
                let in_window: u128 = admitted[..=j]
                    .iter()
                    .filter(|a| a.0 + p.window > tj)
                    .map(|a| u128::from(a.1))
                    .sum();
                prop_assert_ok(in_window <= u128::from(p.limit), || {
                    format!("log exceeded at {j}")
                });
            }
            Some(kind) => {
                let current = window_of(tj);
                let count_in = |start: u64| {
                    admitted[..=j]
                        .iter()
                        .filter(|a| window_of(a.0) == start)
                        .map(|a| u128::from(a.1))
                        .sum::<u128>()
                };
                let cur = count_in(current);
                prop_assert_ok(cur <= u128::from(p.limit), || {
                    format!("{strategy} window over")
                });
                if kind == Compact::SlidingCounter && current >= p.window {
                    let prev = count_in(current - p.window);
                    let weight = u128::from(p.window - (tj - current));
                    let weighted = prev * weight + cur * u128::from(p.window);
                    prop_assert_ok(
                        weighted <= u128::from(p.limit) * u128::from(p.window),
                        || "weighted count over the limit".to_owned(),
                    );
                }
            }
        }
    }
}

fn prop_assert_ok(ok: bool, message: impl FnOnce() -> String) {
    assert!(ok, "{}", message());
}

fn config() -> Config {
    Config {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Over any arrivals and costs, admissions stay within each strategy's bound.
    #[test]
    fn never_admits_more_than_allowed((strategy, p, arrivals) in scenario()) {
        assert_within_bounds(strategy, &p, &admissions(strategy, &p, &arrivals));
    }

    /// At the integer edges (limit `u64::MAX`, cost `2^63 + 1`, ...) nothing saturates into an
    /// admission.
    #[test]
    fn integer_edges_never_over_admit((strategy, p, arrivals) in edge_scenario()) {
        assert_within_bounds(strategy, &p, &admissions(strategy, &p, &arrivals));
    }

    /// Taking `a` then giving back `b` of them is taking `a - b`: the same answers to every
    /// later request (and a refund of more than was taken gives a fresh key, never more).
    #[test]
    fn a_refund_undoes_exactly_what_it_gives_back(
        (strategy, p, arrivals) in scenario(),
        take in 1u64..20,
        give in 0u64..25,
    ) {
        let mut refunded = Model::new(strategy);
        let mut direct = Model::new(strategy);
        let mut now = T0;
        for (gap, cost) in arrivals {
            now += gap;
            refunded.check(&p, now, cost);
            direct.check(&p, now, cost);
        }
        let take = take.min(p.capacity);
        let before = refunded.peek(&p, now, 1).remaining;
        let taken = refunded.check(&p, now, take).allowed;
        refunded.refund(&p, now, give);
        let kept = if taken { take.saturating_sub(give) } else { 0 };
        let given_beyond = if taken { give.saturating_sub(take) } else { give };
        if kept > 0 {
            prop_assert!(direct.check(&p, now, kept).allowed);
        }
        let (ours, theirs) = (refunded.peek(&p, now, 1), direct.peek(&p, now, 1));
        if given_beyond == 0 {
            prop_assert_eq!(ours.remaining, theirs.remaining, "{}", strategy);
            prop_assert_eq!(ours.allowed, theirs.allowed);
            for later in [now + 1, now + p.window / 3, now + p.window] {
                prop_assert_eq!(refunded.peek(&p, later, 1), direct.peek(&p, later, 1));
            }
        } else {
            // More given back than was just taken: older admissions are given back too, up to
            // a fresh key.
            prop_assert!(ours.remaining >= theirs.remaining);
            prop_assert!(ours.remaining <= p.capacity.max(before));
        }
    }

    /// A denied request retried exactly `retry_after` later is admitted; 1 ms (and 1 ns)
    /// earlier it is not.
    #[test]
    fn retry_after_is_exact((strategy, p, arrivals) in scenario()) {
        let mut model = Model::new(strategy);
        let mut now = T0;
        for (gap, cost) in arrivals {
            now += gap;
            let decision = model.check(&p, now, cost);
            if let Some(retry) = decision.retry_after {
                prop_assert!(retry > 0);
                prop_assert!(model.peek(&p, now + retry, cost).allowed, "{strategy} at +{retry}");
                prop_assert!(!model.peek(&p, now + retry - 1, cost).allowed, "{strategy} 1ns early");
                if retry >= MS {
                    prop_assert!(!model.peek(&p, now + retry - MS, cost).allowed);
                }
            } else {
                prop_assert!(decision.allowed);
            }
        }
    }

    /// After an admission, exactly `remaining` more unit requests are admitted at that instant.
    #[test]
    fn remaining_is_exact((strategy, p, arrivals) in scenario()) {
        let mut model = Model::new(strategy);
        let mut now = T0;
        for (gap, cost) in arrivals {
            now += gap;
            let decision = model.check(&p, now, cost);
            let peeked = model.peek(&p, now, 1);
            prop_assert_eq!(peeked.remaining, decision.remaining);
            if decision.allowed {
                let mut probe = model.clone();
                for i in 0..decision.remaining {
                    prop_assert!(probe.check(&p, now, 1).allowed, "{} unit {}", strategy, i);
                }
                prop_assert!(!probe.check(&p, now, 1).allowed, "{} one too many", strategy);
            }
        }
    }

    /// Waiting never makes things worse: the allowance only grows with time.
    #[test]
    fn allowance_is_monotone_in_time((strategy, p, arrivals) in scenario(), later in 0..u64::from(u32::MAX)) {
        let mut model = Model::new(strategy);
        let mut now = T0;
        for (gap, cost) in arrivals {
            now += gap;
            model.check(&p, now, cost);
            let a = model.peek(&p, now, 1);
            let b = model.peek(&p, now + later, 1);
            prop_assert!(b.remaining >= a.remaining, "{strategy}: {a:?} then {b:?}");
            prop_assert!(!a.allowed || b.allowed);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// sliding_counter's whole-request arithmetic agrees with the weighted formula it stands
    /// for, `prev · (window − elapsed) + (cur + cost) · window <= limit · window`, evaluated
    /// in wide integers, up to the integer edges.
    #[test]
    fn sliding_counter_matches_the_weighted_formula(
        limit in prop_oneof![1..1_000u64, Just(u64::MAX)],
        window in prop_oneof![1..1_000u64, Just(60 * SEC), Just(1 << 62)],
        prev_cur in (any::<u64>(), any::<u64>()),
        elapsed_per_mille in 0..=1000u64,
        cost in prop_oneof![0..10u64, any::<u64>()],
    ) {
        let p = Params { limit, capacity: limit, window };
        let (prev, cur) = (prev_cur.0 % limit.saturating_add(1), prev_cur.1 % limit.saturating_add(1));
        let start = 0;
        let elapsed = narrow(u128::from(window - 1) * u128::from(elapsed_per_mille) / 1000);
        let (decision, _) =
            decide(Compact::SlidingCounter, &p, &State([start, prev, cur]), start + elapsed, cost);
        let w = u128::from(window);
        let used = u128::from(prev) * u128::from(window - elapsed) + u128::from(cur) * w;
        let budget = u128::from(limit) * w;
        let after = used + u128::from(cost) * w;
        prop_assert_eq!(decision.allowed, after <= budget);
        let left = if decision.allowed { budget - after } else { budget.saturating_sub(used) };
        prop_assert_eq!(decision.remaining, narrow(left / w));
    }
}

/// Regression: with a limit of `u64::MAX`, two costs of `2^63 + 1` saturated to exactly the
/// limit and every later request was admitted.
#[test]
fn fixed_window_at_u64_max_is_enforced() {
    let p = params(Strategy::FixedWindow, u64::MAX, 60, u64::MAX);
    let mut model = Model::new(Strategy::FixedWindow);
    let cost = (1 << 63) + 1;
    let allowed: Vec<bool> = (0..4).map(|_| model.check(&p, T0, cost).allowed).collect();
    assert_eq!(allowed, [true, false, false, false]);
}
