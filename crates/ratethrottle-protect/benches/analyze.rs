//! DDoS `analyze` per request against a bare `Limiter::check` (memory store), interleaved in
//! rounds; each ratio is the median of the per-round ratios. Workload: 10,000 clients
//! round-robin over 100 endpoints.
//!
//! ```text
//! cargo bench -p ratethrottle-protect --bench analyze
//! ```

use std::hint::black_box;
use std::time::Duration;

use ratethrottle::clock::{Clock, SystemClock};
use ratethrottle::{Limiter, Rule};
use ratethrottle_protect::ddos::{DdosProtection, DdosSettings};

const CLIENTS: usize = 10_000;
const ENDPOINTS: usize = 100;

mod common;

fn main() {
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
    common::compare(
        [
            "`Limiter::check` (handle, memory)",
            "`DdosProtection::analyze`",
        ],
        "analyze ÷ check",
        || common::time_per_call(|i| drop(black_box(handle.check_now(&ids[i % CLIENTS], 1)))),
        || {
            common::time_per_call(|i| {
                let (id, endpoint) = (&ids[i % CLIENTS], &endpoints[i % ENDPOINTS]);
                black_box(ddos.analyze(id, endpoint, Some("Mozilla/5.0"), clock.now()));
            })
        },
    );
}
