//! `Limiter::check` against governor's keyed limiter as interleaved ratios: for each case the
//! two sides take turns in short rounds (the order flipping each round), and the case's ratio
//! is the median of its per-round ratios (our time per check over governor's), so the
//! machine's calm and slow stretches cancel out instead of landing on one side.
//!
//! Run: `cargo bench -p ratethrottle --bench ratios` (about a minute). Prints a table and writes
//! `check-ratios.json` into the target directory (`$CARGO_TARGET_DIR`, default `target/`):
//! `{"gcra_1": 1.05, "gcra_1m": …}`, keys `<strategy>_1` and `<strategy>_1m` for gcra,
//! token_bucket, fixed_window and sliding_counter. `RT_RATIO_ROUNDS` sets the rounds (15).
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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
    let mut results: Vec<(String, f64, f64, f64, f64, f64)> = Vec::new();
    for strategy in STRATEGIES {
        let name = strategy.as_str();
        for many in [false, true] {
            let key = |i: usize| if many { &keys[i] } else { &single };
            let peer = governor();
            let limiter = loaded_limiter();
            let (mut ours_next, mut peer_next) = (0, 0);
            // Warm both (and every key), and size a turn from governor's speed.
            let warm = if many { MANY_KEYS } else { 100_000 };
            timed(warm, &mut peer_next, |i| {
                drop(peer.check_key(black_box(key(i))))
            });
            timed(warm, &mut ours_next, |i| {
                ready_now(limiter.check(black_box(key(i)), name)).unwrap();
            });
            let probe = timed(100_000, &mut peer_next, |i| {
                drop(peer.check_key(black_box(key(i))))
            });
            let n = ((TURN.as_secs_f64() / probe.as_secs_f64()) * 100_000.0) as usize;
            let mut ratios = Vec::with_capacity(rounds);
            let (mut ours_ns, mut peer_ns) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let mut turn_of = |ours: bool| {
                    if ours {
                        timed(n, &mut ours_next, |i| {
                            ready_now(limiter.check(black_box(key(i)), name)).unwrap();
                        })
                    } else {
                        timed(n, &mut peer_next, |i| {
                            drop(peer.check_key(black_box(key(i))))
                        })
                    }
                };
                let ours_first = round % 2 == 1;
                let first = turn_of(ours_first);
                let second = turn_of(!ours_first);
                let (ours, theirs) = if ours_first {
                    (first, second)
                } else {
                    (second, first)
                };
                ratios.push(ours.as_secs_f64() / theirs.as_secs_f64());
                ours_ns.push(ours.as_nanos() as f64 / n as f64);
                peer_ns.push(theirs.as_nanos() as f64 / n as f64);
            }
            let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let high = ratios.iter().copied().fold(0.0, f64::max);
            let case = format!("{name}_{}", if many { "1m" } else { "1" });
            results.push((
                case,
                median(&mut ratios),
                low,
                high,
                median(&mut ours_ns),
                median(&mut peer_ns),
            ));
        }
    }
    println!(
        "| case | ratio to governor keyed (median of {rounds} rounds) | range | ours ns/check | governor ns/check |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (case, ratio, low, high, ours, peer) in &results {
        println!("| `{case}` | {ratio:.2}× | {low:.2}–{high:.2} | {ours:.1} | {peer:.1} |");
    }
    let json = results
        .iter()
        .map(|(case, ratio, ..)| format!("\"{case}\": {ratio:.3}"))
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
