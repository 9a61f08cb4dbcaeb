//! Measures the memory one tracked client costs: the resident set size grown by 100,000
//! clients that each sent 20 requests to 5 endpoints.
//!
//! Run: `cargo run --release -p ratethrottle-protect --example memory_per_client`

use ratethrottle::clock::Nanos;
use ratethrottle_protect::ddos::{DdosProtection, DdosSettings};

const CLIENTS: usize = 100_000;
const REQUESTS: u64 = 20;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|rss| rss.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn main() {
    let ids: Vec<String> = (0..CLIENTS)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
        .collect();
    let mut settings = DdosSettings::default();
    settings.max_tracked_identifiers = CLIENTS;
    let before = resident_bytes();
    let ddos = DdosProtection::new(settings).expect("valid settings");
    let start = 1_700_000_000_000_000_000u64;
    for round in 0..REQUESTS {
        for (i, id) in ids.iter().enumerate() {
            let now = Nanos::from_nanos(start + round * 1_000_000_000 + i as u64);
            let endpoint = format!("/api/{}", round % 5);
            ddos.analyze(id, &endpoint, Some("Mozilla/5.0"), now);
        }
    }
    let tracked = ddos.statistics().tracked_identifiers;
    println!(
        "{tracked} clients tracked, {:.0} bytes per client",
        (resident_bytes() - before) as f64 / tracked as f64
    );
}
