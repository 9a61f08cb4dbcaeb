//! `Limiter::check` against governor's keyed limiter, in one criterion group (`check`).
//!
//! Run: `cargo bench -p ratethrottle --bench check`, then `python3 scripts/bench_ratios.py`
//! for the ratios. Both sides use their real default clocks and admit every request (a quota
//! too large to run out), so both do a full update per check. Ours has every feature on: six
//! rules looked up by name, non-empty whitelist and blacklist, a block duration, metrics.
//!
//! Keys stay live through a run, as an actively limited client's do: the bucket strategies
//! (and governor) refill 1 per second with a burst of a billion, so every request leaves debt;
//! the window strategies count in one-hour windows. (With one-second windows and 1M keys
//! visited every ~0.5 s, most keys would go idle between visits and be reclaimed and
//! re-inserted: that churn is the memory store's reclamation at work — governor keeps every
//! key forever — and is noted in BENCHMARKS.md.)

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ratethrottle::Strategy;

mod common;

use common::{MANY_KEYS, governor, keys, loaded_limiter, ready_now};

/// Runs `iters` checks split over two threads; returns the wall time.
fn two_threads(iters: u64, check: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let check = &check;
            scope.spawn(move || {
                for i in 0..iters / 2 {
                    check(thread * 7_919 + i as usize);
                }
            });
        }
    });
    start.elapsed()
}

fn bench_check(c: &mut Criterion) {
    let keys = Arc::new(keys());
    // Both sides get the key the same way: a `&String` through `black_box`.
    let single = "203.0.113.7".to_owned();
    let mut group = c.benchmark_group("check");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(60);

    // Case by case, the peer first: the machine's noise drifts, so each ratio compares
    // measurements taken close together.
    let peer = governor();
    group.bench_function("governor_keyed_1", |b| {
        b.iter(|| peer.check_key(black_box(&single)))
    });
    for strategy in Strategy::ALL {
        let name = strategy.as_str();
        let limiter = loaded_limiter();
        group.bench_function(format!("{name}_1"), |b| {
            b.iter(|| ready_now(limiter.check(black_box(&single), name)).unwrap())
        });
    }

    let peer = governor();
    let mut i = 0;
    group.bench_function("governor_keyed_1m", |b| {
        b.iter(|| {
            i = (i + 1) % MANY_KEYS;
            peer.check_key(black_box(&keys[i]))
        })
    });
    drop(peer);
    for strategy in Strategy::ALL {
        let name = strategy.as_str();
        let limiter = loaded_limiter();
        let mut i = 0;
        group.bench_function(format!("{name}_1m"), |b| {
            b.iter(|| {
                i = (i + 1) % MANY_KEYS;
                ready_now(limiter.check(black_box(&keys[i]), name)).unwrap()
            })
        });
    }

    // Two threads at once, on one key (contended) and on 1M keys (spread).
    let peer = governor();
    group.bench_function("governor_keyed_2t_1", |b| {
        b.iter_custom(|iters| two_threads(iters, |_| drop(peer.check_key(black_box(&single)))))
    });
    let peer = governor();
    group.bench_function("governor_keyed_2t_1m", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |i| {
                drop(peer.check_key(black_box(&keys[i % MANY_KEYS])))
            })
        })
    });
    for strategy in [Strategy::Gcra, Strategy::SlidingCounter] {
        let name = strategy.as_str();
        let limiter = loaded_limiter();
        group.bench_function(format!("{name}_2t_1"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |_| {
                    ready_now(limiter.check(black_box(&single), name)).unwrap();
                })
            })
        });
        let limiter = loaded_limiter();
        group.bench_function(format!("{name}_2t_1m"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |i| {
                    ready_now(limiter.check(black_box(&keys[i % MANY_KEYS]), name)).unwrap();
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
