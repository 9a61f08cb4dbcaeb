//! DDoS `analyze` per request against a bare `Limiter::check` (memory store), interleaved in
//! rounds; each ratio is the median of the per-round ratios. Workload: 10,000 clients
//! round-robin over 100 endpoints.
//!
//! ```text
//! cargo bench -p ratethrottle-protect --bench analyze
//! ```

use std::hint::black_box;

use ratethrottle::clock::{Clock, SystemClock};
use ratethrottle_protect::ddos::{DdosProtection, DdosSettings};

const ENDPOINTS: usize = 100;

mod common;

fn main() {
    let ids = common::client_ids();
    let endpoints: Vec<String> = (0..ENDPOINTS)
        .map(|i| format!("/api/resource/{i}"))
        .collect();
    let (_limiter, handle) = common::bare_check();
    let ddos = DdosProtection::new(DdosSettings::default()).unwrap();
    let clock = SystemClock;
    common::compare(
        [
            "`Limiter::check` (handle, memory)",
            "`DdosProtection::analyze`",
        ],
        "analyze ÷ check",
        || {
            common::time_per_call(|i| {
                drop(black_box(handle.check_now(&ids[i % common::CLIENTS], 1)))
            })
        },
        || {
            common::time_per_call(|i| {
                let (id, endpoint) = (&ids[i % common::CLIENTS], &endpoints[i % ENDPOINTS]);
                black_box(ddos.analyze(id, endpoint, Some("Mozilla/5.0"), clock.now()));
            })
        },
    );
}
