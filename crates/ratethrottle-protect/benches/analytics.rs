//! `Limiter::check` with analytics recording each decision against the bare check (memory
//! store), interleaved in rounds; the ratio is the median of the per-round ratios. Workload:
//! 10,000 clients round-robin under one rule.
//!
//! ```text
//! cargo bench -p ratethrottle-protect --bench analytics
//! ```

use std::hint::black_box;

use ratethrottle_protect::analytics::{Analytics, AnalyticsSettings};

mod common;

fn main() {
    let ids = common::client_ids();
    let (limiter, handle) = common::bare_check();
    let analytics = Analytics::new(AnalyticsSettings::default()).unwrap();
    common::compare(
        [
            "`Limiter::check` (handle, memory)",
            "the same, recorded by `Analytics`",
        ],
        "recorded ÷ bare",
        || {
            common::time_per_call(|i| {
                drop(black_box(handle.check_now(&ids[i % common::CLIENTS], 1)))
            })
        },
        || {
            common::time_per_call(|i| {
                let id = &ids[i % common::CLIENTS];
                if let Some(Ok(status)) = handle.check_now(id, 1) {
                    let now = limiter.now();
                    analytics.record_request(id, handle.name(), status.allowed, None, now);
                }
            })
        },
    );
}
