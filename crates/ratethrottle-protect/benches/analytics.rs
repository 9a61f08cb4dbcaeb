//! `Limiter::check` with analytics recording each decision against the bare check (memory
//! store), interleaved in rounds; the ratio is the median of the per-round ratios. Workload:
//! 10,000 clients round-robin under one rule.
//!
//! ```text
//! cargo bench -p ratethrottle-protect --bench analytics
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use ratethrottle::{Limiter, Rule};
use ratethrottle_protect::analytics::{Analytics, AnalyticsSettings};

const CLIENTS: usize = 10_000;
const PER_ROUND: usize = 200_000;

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let ids: Vec<String> = (0..CLIENTS)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("api", 1_000_000_000, Duration::from_secs(60)))
        .unwrap();
    let handle = limiter.rule_handle("api").unwrap();
    let analytics = Analytics::new(AnalyticsSettings::default()).unwrap();
    let check = || {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            black_box(handle.check_now(&ids[i % CLIENTS], 1));
        }
        start.elapsed().as_nanos() as f64 / PER_ROUND as f64
    };
    let recorded = || {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            let id = &ids[i % CLIENTS];
            if let Some(Ok(status)) = handle.check_now(id, 1) {
                analytics.record_request(id, handle.name(), status.allowed, None, limiter.now());
            }
        }
        start.elapsed().as_nanos() as f64 / PER_ROUND as f64
    };
    check();
    recorded();
    let (mut checks, mut records, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let c = check();
        let r = recorded();
        checks.push(c);
        records.push(r);
        ratios.push(r / c);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| case | ns per check (median of {rounds} rounds) |");
    println!("|---|---:|");
    println!(
        "| `Limiter::check` (handle, memory) | {:.1} |",
        median(checks)
    );
    println!(
        "| the same, recorded by `Analytics` | {:.1} |",
        median(records)
    );
    println!("recorded ÷ bare: {:.2}×", median(ratios));
}
