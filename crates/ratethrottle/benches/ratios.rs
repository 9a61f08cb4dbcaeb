//! Our check against governor's keyed limiter as interleaved ratios: for each case the sides
//! take turns in short rounds (the order rotating each round), and the case's ratio is the
//! median of its per-round ratios (our time per check over governor's), so the machine's calm
//! and slow stretches cancel out instead of landing on one side. Ours runs three ways: a
//! [`RuleHandle`](ratethrottle::RuleHandle)'s `check_now` (synchronous like governor's
//! `check_key`, and what the HTTP layer and Python use with the memory store: the keys without
//! a suffix), the same handle's future (`handle.check(id)` polled once; `_future`), and by name
//! (`limiter.check(id, name)`; `_by_name`). Every side's result goes through `black_box`, so
//! none is spared computing what it returns (our `Status`, governor's `Result`).
//!
//! Run: `cargo bench -p ratethrottle --bench ratios` (about a minute). Prints a table and writes
//! `check-ratios.json` into the target directory (`$CARGO_TARGET_DIR`, default `target/`):
//! `{"gcra_1": 1.05, "gcra_1m": …}`, keys `<strategy>_1` and `<strategy>_1m` for gcra,
//! token_bucket, fixed_window and sliding_counter (and the `_future` and `_by_name` variants). `RT_RATIO_ROUNDS` sets the rounds (15).
//! The criterion bench (`--bench check`) gives absolute figures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ratethrottle::Strategy;

mod common;

use common::{MANY_KEYS, governor, keys, loaded_limiter, ready_now};

/// The strategies the bar of issue 17 names.
const STRATEGIES: [Strategy; 4] = [
    Strategy::Gcra,
    Strategy::TokenBucket,
    Strategy::FixedWindow,
    Strategy::SlidingCounter,
];

/// Governor, then ours three ways: a handle's `check_now`, its future, and by name.
const SIDES: usize = 4;
/// The case-name suffixes of our three ways.
const SUFFIXES: [&str; SIDES - 1] = ["", "_future", "_by_name"];

/// How long one side's turn in a round lasts, roughly.
const TURN: Duration = Duration::from_millis(40);

/// Times `n` calls of `check(i)` for consecutive `i` from `*next` (which advances).
fn timed(n: usize, next: &mut usize, mut check: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        check(*next);
        *next = (*next + 1) % MANY_KEYS;
    }
    start.elapsed()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One row of the table.
struct Case {
    name: String,
    ratio: f64,
    low: f64,
    high: f64,
    ours: f64,
    peer: f64,
}

impl Case {
    fn new(name: String, ratios: Vec<f64>, ours_ns: Vec<f64>, peer_ns: &[f64]) -> Self {
        Case {
            name,
            low: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            high: ratios.iter().copied().fold(0.0, f64::max),
            ratio: median(ratios),
            ours: median(ours_ns),
            peer: median(peer_ns.to_vec()),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let rounds: usize = std::env::var("RT_RATIO_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(15)
        .max(1);
    let keys = keys();
    let single = "203.0.113.7".to_owned();
    let mut results: Vec<Case> = Vec::new();
    for strategy in STRATEGIES {
        let name = strategy.as_str();
        for many in [false, true] {
            let key = |i: usize| if many { &keys[i] } else { &single };
            let peer = governor();
            let limiter = loaded_limiter();
            let handle = limiter
                .rule_handle(name)
                .expect("a rule of the loaded limiter");
            let mut next = [0; SIDES];
            let turn = |side: usize, n: usize, next: &mut [usize; SIDES]| {
                let next = &mut next[side];
                match side {
                    0 => timed(n, next, |i| {
                        black_box(peer.check_key(black_box(key(i)))).ok();
                    }),
                    1 => timed(n, next, |i| {
                        black_box(handle.check_now(black_box(key(i)), 1).unwrap().unwrap());
                    }),
                    2 => timed(n, next, |i| {
                        black_box(ready_now(handle.check(black_box(key(i)))).unwrap());
                    }),
                    _ => timed(n, next, |i| {
                        black_box(ready_now(limiter.check(black_box(key(i)), name)).unwrap());
                    }),
                }
            };
            // Warm every side (and every key), and size a turn from governor's speed.
            let warm = if many { MANY_KEYS } else { 100_000 };
            for side in 0..SIDES {
                turn(side, warm, &mut next);
            }
            let probe = turn(0, 100_000, &mut next);
            let n = ((TURN.as_secs_f64() / probe.as_secs_f64()) * 100_000.0) as usize;
            let mut ratios = vec![Vec::new(); SIDES - 1];
            let mut per_check = vec![Vec::new(); SIDES];
            for round in 0..rounds {
                let mut times = [Duration::ZERO; SIDES];
                for k in 0..SIDES {
                    let side = (round + k) % SIDES;
                    times[side] = turn(side, n, &mut next);
                }
                for side in 0..SIDES {
                    per_check[side].push(times[side].as_nanos() as f64 / n as f64);
                }
                for ours in 1..SIDES {
                    ratios[ours - 1].push(times[ours].as_secs_f64() / times[0].as_secs_f64());
                }
            }
            let case = format!("{name}_{}", if many { "1m" } else { "1" });
            let peer_ns = per_check.remove(0);
            for ((suffix, ratios), ours_ns) in SUFFIXES.iter().zip(ratios).zip(per_check) {
                results.push(Case::new(
                    format!("{case}{suffix}"),
                    ratios,
                    ours_ns,
                    &peer_ns,
                ));
            }
        }
    }
    println!(
        "| case | ratio to governor keyed (median of {rounds} rounds) | range | ours ns/check | governor ns/check |"
    );
    println!("|---|---:|---:|---:|---:|");
    for case in &results {
        let Case {
            name,
            ratio,
            low,
            high,
            ours,
            peer,
        } = case;
        println!("| `{name}` | {ratio:.2}× | {low:.2}–{high:.2} | {ours:.1} | {peer:.1} |");
    }
    let json = results
        .iter()
        .map(|case| format!("\"{}\": {:.3}", case.name, case.ratio))
        .collect::<Vec<_>>()
        .join(", ");
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_owned());
    let path = std::path::Path::new(&dir).join("check-ratios.json");
    match std::fs::write(&path, format!("{{{json}}}\n")) {
        Ok(()) => println!("written to {}", path.display()),
        Err(error) => eprintln!("could not write {}: {error}", path.display()),
    }
}
