//! DDoS `analyze` per request against a bare `Limiter::check` (memory store), interleaved in
//! rounds; each ratio is the median of the per-round ratios. Workload: 10,000 clients
//! round-robin over 100 endpoints.
//!
//! ```text
//! cargo bench -p ratethrottle-protect --bench analyze
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use ratethrottle::clock::{Clock, SystemClock};
use ratethrottle::{Limiter, Rule};
use ratethrottle_protect::ddos::{DdosProtection, DdosSettings};

const CLIENTS: usize = 10_000;
const ENDPOINTS: usize = 100;
const PER_ROUND: usize = 200_000;

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let ids: Vec<String> = (0..CLIENTS)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let endpoints: Vec<String> = (0..ENDPOINTS)
        .map(|i| format!("/api/resource/{i}"))
        .collect();
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("api", 1_000_000_000, Duration::from_secs(60)))
        .unwrap();
    let handle = limiter.rule_handle("api").unwrap();
    let ddos = DdosProtection::new(DdosSettings::default()).unwrap();
    let clock = SystemClock;
    let check = || {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            black_box(handle.check_now(&ids[i % CLIENTS], 1));
        }
        start.elapsed().as_nanos() as f64 / PER_ROUND as f64
    };
    let analyze = || {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            let now = clock.now();
            black_box(ddos.analyze(
                &ids[i % CLIENTS],
                &endpoints[i % ENDPOINTS],
                Some("Mozilla/5.0"),
                now,
            ));
        }
        start.elapsed().as_nanos() as f64 / PER_ROUND as f64
    };
    check();
    analyze();
    let mut ratios = Vec::new();
    let (mut checks, mut analyses) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let c = check();
        let a = analyze();
        checks.push(c);
        analyses.push(a);
        ratios.push(a / c);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| case | ns per request (median of {rounds} rounds) |");
    println!("|---|---:|");
    println!(
        "| `Limiter::check` (handle, memory) | {:.1} |",
        median(checks)
    );
    println!("| `DdosProtection::analyze` | {:.1} |", median(analyses));
    println!("analyze ÷ check: {:.2}×", median(ratios));
}
