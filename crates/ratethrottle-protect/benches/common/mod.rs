//! What the benches share: a baseline and a contestant timed in interleaved rounds.

use std::time::{Duration, Instant};

use ratethrottle::store::MemoryStore;
use ratethrottle::{Limiter, Rule, RuleHandle};

/// Clients, round-robin.
pub(crate) const CLIENTS: usize = 10_000;

/// The clients' identifiers (IPv4 addresses).
pub(crate) fn client_ids() -> Vec<String> {
    (0..CLIENTS)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect()
}

/// An in-memory limiter with one rule that never denies, and a handle on it: the bare check.
pub(crate) fn bare_check() -> (Limiter<MemoryStore>, RuleHandle<MemoryStore>) {
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("api", 1_000_000_000, Duration::from_secs(60)))
        .unwrap();
    let handle = limiter.rule_handle("api").unwrap();
    (limiter, handle)
}

/// Requests timed per round.
pub(crate) const PER_ROUND: usize = 200_000;

/// Nanoseconds per call of `body(i)` over [`PER_ROUND`] calls.
pub(crate) fn time_per_call(mut body: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..PER_ROUND {
        body(i);
    }
    start.elapsed().as_nanos() as f64 / PER_ROUND as f64
}

/// Runs `baseline` and `contestant` once to warm up, then in `ROUNDS` (default 9) interleaved
/// rounds; prints a table of their median times (labelled) and the median of the per-round
/// ratios, named `ratio`.
pub(crate) fn compare(
    labels: [&str; 2],
    ratio: &str,
    mut baseline: impl FnMut() -> f64,
    mut contestant: impl FnMut() -> f64,
) {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    baseline();
    contestant();
    let (mut bases, mut others, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = baseline();
        let c = contestant();
        bases.push(b);
        others.push(c);
        ratios.push(c / b);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| case | ns per call (median of {rounds} rounds) |");
    println!("|---|---:|");
    println!("| {} | {:.1} |", labels[0], median(bases));
    println!("| {} | {:.1} |", labels[1], median(others));
    println!("{ratio}: {:.2}×", median(ratios));
}
