//! `Limiter::check` with analytics recording each decision against the bare check (memory
//! store), interleaved in rounds; the ratio is the median of the per-round ratios. Workload:
//! 10,000 clients round-robin under one rule.
//!
//! ```text
//! cargo bench -p ratethrottle-protect --bench analytics
//! ```

use std::hint::black_box;
use std::time::Duration;

use ratethrottle::{Limiter, Rule};
use ratethrottle_protect::analytics::{Analytics, AnalyticsSettings};

const CLIENTS: usize = 10_000;

mod common;

fn main() {
    let ids: Vec<String> = (0..CLIENTS)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("api", 1_000_000_000, Duration::from_secs(60)))
        .unwrap();
    let handle = limiter.rule_handle("api").unwrap();
    let analytics = Analytics::new(AnalyticsSettings::default()).unwrap();
    common::compare(
        [
            "`Limiter::check` (handle, memory)",
            "the same, recorded by `Analytics`",
        ],
        "recorded ÷ bare",
        || common::time_per_call(|i| drop(black_box(handle.check_now(&ids[i % CLIENTS], 1)))),
        || {
            common::time_per_call(|i| {
                let id = &ids[i % CLIENTS];
                if let Some(Ok(status)) = handle.check_now(id, 1) {
                    let now = limiter.now();
                    analytics.record_request(id, handle.name(), status.allowed, None, now);
                }
            })
        },
    );
}
