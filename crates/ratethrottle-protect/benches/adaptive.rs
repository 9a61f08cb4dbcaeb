//! An adaptive check (learning, then the engine's check at the client's limit) against a plain
//! `Limiter::check` (memory store, a sliding_counter rule), interleaved in rounds; each ratio
//! is the median of the per-round ratios. Workload: 10,000 clients round-robin, limits high
//! enough that they are admitted (the common case). Two pairs: the awaited checks by name (the
//! issue's bar), and the fastest paths of each (a rule handle's `check_now` and
//! `AdaptiveLimiter::check_now`).
//!
//! ```text
//! cargo bench -p ratethrottle-protect --bench adaptive
//! ```

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ratethrottle::Limiter;
use ratethrottle_protect::adaptive::{AdaptiveLimiter, AdaptiveSettings};

mod common;

/// The output of a future of the memory store, which is ready when first polled.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("memory store futures are ready at once"),
    }
}

fn main() {
    let ids = common::client_ids();
    let (limiter, handle) = common::bare_check();
    let mut settings = AdaptiveSettings::default();
    settings.base_limit = 1_000_000;
    let adaptive = AdaptiveLimiter::new(Limiter::in_memory(), settings).unwrap();
    let id = |i: usize| ids[i % common::CLIENTS].as_str();
    common::compare(
        [
            "`Limiter::check` (by name, awaited)",
            "`AdaptiveLimiter::check` (awaited)",
        ],
        "adaptive ÷ check",
        || common::time_per_call(|i| drop(black_box(ready(limiter.check(id(i), "api"))))),
        || common::time_per_call(|i| drop(black_box(ready(adaptive.check(id(i), None))))),
    );
    common::compare(
        ["`RuleHandle::check_now`", "`AdaptiveLimiter::check_now`"],
        "adaptive check_now ÷ handle check_now",
        || common::time_per_call(|i| drop(black_box(handle.check_now(id(i), 1)))),
        || common::time_per_call(|i| drop(black_box(adaptive.check_now(id(i), None)))),
    );
}
