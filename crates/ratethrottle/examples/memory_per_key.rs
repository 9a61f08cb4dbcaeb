//! Measures the memory one key costs: the resident set size grown by 1,000,000 keys, in a fresh
//! child process per case, for every strategy and for governor's keyed limiter.
//!
//! Run: `cargo run --release -p ratethrottle --example memory_per_key`

use std::num::NonZeroU32;
use std::process::Command;
use std::time::Duration;

use ratethrottle::{Limiter, Rule, Strategy};

const KEYS: usize = 1_000_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|rss| rss.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn key(i: usize) -> String {
    format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff)
}

/// Fills one store with `KEYS` keys and prints the bytes per key.
fn measure(case: &str) {
    let ids: Vec<String> = (0..KEYS).map(key).collect();
    let before = resident_bytes();
    if case == "governor" {
        let rate = NonZeroU32::new(1_000).unwrap();
        let limiter =
            governor::DefaultKeyedRateLimiter::<String>::keyed(governor::Quota::per_second(rate));
        for id in &ids {
            let _ = limiter.check_key(id);
        }
        println!("{:.1}", (resident_bytes() - before) as f64 / KEYS as f64);
        drop(limiter);
        return;
    }
    let strategy: Strategy = case.parse().expect("a strategy name");
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("r", 1_000, Duration::from_secs(3600)).strategy(strategy))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for id in &ids {
            limiter.check(id, "r").await.unwrap();
        }
    });
    assert_eq!(limiter.store().len(), KEYS);
    println!("{:.1}", (resident_bytes() - before) as f64 / KEYS as f64);
}

fn main() {
    if let Some(case) = std::env::args().nth(1) {
        measure(&case);
        return;
    }
    let me = std::env::current_exe().expect("own path");
    println!("| store | bytes per key (RSS / {KEYS} keys) |");
    println!("|---|---:|");
    let cases = Strategy::ALL.iter().map(|s| s.as_str()).chain(["governor"]);
    for case in cases {
        let output = Command::new(&me).arg(case).output().expect("child run");
        let bytes = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let label = if case == "governor" {
            "governor keyed (DashMap, 8-byte state)".to_owned()
        } else {
            format!("ratethrottle `{case}`")
        };
        println!("| {label} | {bytes} |");
    }
}
