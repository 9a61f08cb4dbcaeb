//! One client's traffic as a bounded summary, and the original's suspicion score over it.
//!
//! 1.4.0 keeps up to 10,000 timestamps per client and scans them on every request. Here a
//! client costs a fixed few hundred bytes, updated in O(1):
//!
//! - requests in the analysis window: a ring of up to 34 buckets of a power of two nanoseconds
//!   between `window / 32` and `window / 16`, so the count may include requests up to two
//!   buckets (at most an eighth of the window) older than the window;
//! - requests in the burst window: the same over `burst_window`;
//! - intervals: the last 21 request times, so the average interval is that of the last 20
//!   intervals (1.4.0 averages every interval in the window);
//! - distinct endpoints: their hashes, up to twice `max_unique_endpoints`, where the endpoint
//!   factor reaches its maximum (1.4.0 keeps every endpoint ever requested).

use super::settings::DdosSettings;
use crate::nanos;

const NANOS: u64 = 1_000_000_000;

/// Slots of a ring: enough for the most buckets a cut uses (a span of 16 to 32 bucket widths,
/// plus the partly filled newest).
const SLOTS: u64 = 34;

/// How a ring cuts time for a span: buckets of `2^shift` nanoseconds (the largest power of two
/// no longer than `span / 16`, so a bucket index is a shift, not a division), of which the last
/// `buckets` (at most 34) cover at least the span: the newest bucket is partly in the future.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cut {
    shift: u32,
    buckets: u64,
}

impl Cut {
    fn of(span: u64) -> Self {
        let width = (span / 16).max(1);
        let shift = 63 - width.leading_zeros();
        let buckets = (span.div_ceil(1 << shift) + 1).min(SLOTS);
        Cut { shift, buckets }
    }
}

/// Request counts per time bucket, the ones older than the span forgotten as time moves on,
/// with their sum kept as they change.
#[derive(Debug, Clone)]
struct Ring {
    counts: [u32; SLOTS as usize],
    /// The index of the newest bucket.
    newest: u64,
    total: u64,
}

impl Ring {
    fn new() -> Self {
        Ring {
            counts: [0; SLOTS as usize],
            newest: 0,
            total: 0,
        }
    }

    fn slot(bucket: u64) -> usize {
        (bucket % SLOTS) as usize
    }

    /// Counts a request at `now`.
    fn record(&mut self, cut: Cut, now: u64) {
        let bucket = now >> cut.shift;
        if bucket > self.newest {
            // The buckets that leave the span leave the sum.
            let first_leaving = (self.newest + 1).saturating_sub(cut.buckets);
            let last_leaving = (bucket + 1).saturating_sub(cut.buckets);
            let leaving = last_leaving.saturating_sub(first_leaving).min(cut.buckets);
            for step in 0..leaving {
                let slot = &mut self.counts[Self::slot(first_leaving + step)];
                self.total -= u64::from(*slot);
                *slot = 0;
            }
            self.newest = bucket;
        }
        // A time older than the span (the clock went back) counts in the newest bucket.
        let at = if self.newest - bucket < cut.buckets {
            bucket
        } else {
            self.newest
        };
        let slot = &mut self.counts[Self::slot(at)];
        if *slot < u32::MAX {
            *slot += 1;
            self.total += 1;
        }
    }

    /// Requests within the span ending at the time last recorded.
    fn sum(&self) -> u64 {
        self.total
    }
}

/// What the settings mean for the summary, computed once: the rings' cuts, and the
/// thresholds as reciprocals (so a request multiplies instead of dividing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    window: Cut,
    burst: Cut,
    per_window_sec: f64,
    per_rate_threshold: f64,
    rate_threshold: f64,
    per_max_endpoints: f64,
    max_endpoints: f64,
    endpoints_cap: u64,
    per_burst_threshold: f64,
    burst_threshold: f64,
    min_interval: u64,
}

impl Scale {
    /// The scale of `settings` (which should be valid).
    pub fn of(settings: &DdosSettings) -> Self {
        let window_secs = settings.window.as_secs_f64();
        let rate_threshold = settings.threshold as f64 / window_secs;
        let max_endpoints = settings.max_unique_endpoints as f64;
        let burst_threshold = settings.burst_threshold as f64;
        Scale {
            window: Cut::of(nanos(settings.window)),
            burst: Cut::of(nanos(settings.burst_window)),
            per_window_sec: 1.0 / window_secs,
            per_rate_threshold: 1.0 / rate_threshold,
            rate_threshold,
            per_max_endpoints: 1.0 / max_endpoints,
            max_endpoints,
            endpoints_cap: settings.max_unique_endpoints.saturating_mul(2),
            per_burst_threshold: 1.0 / burst_threshold,
            burst_threshold,
            min_interval: nanos(settings.min_interval_threshold),
        }
    }
}

/// How many request times are kept for the interval factors: 21, for the last 20 intervals.
const RECENT: usize = 21;
/// Intervals shorter than this, throughout the last 20, look like rapid succession.
const RAPID_INTERVAL: u64 = NANOS / 2;

/// One client's traffic.
#[derive(Debug, Clone)]
pub struct TrafficSummary {
    window: Ring,
    burst: Ring,
    /// The last request times, a ring (`recent_len` of them valid).
    recent: [u64; RECENT],
    recent_len: usize,
    recent_next: usize,
    /// Intervals in a row shorter than half a second.
    rapid_streak: u32,
    /// Hashes of the distinct endpoints requested, up to twice the scanning limit.
    endpoints: Vec<u32>,
}

impl Default for TrafficSummary {
    fn default() -> Self {
        TrafficSummary {
            window: Ring::new(),
            burst: Ring::new(),
            recent: [0; RECENT],
            recent_len: 0,
            recent_next: 0,
            rapid_streak: 0,
            endpoints: Vec::new(),
        }
    }
}

/// The factors of a score, named as 1.4.0 names them in a pattern's metadata (0 when a factor
/// did not contribute).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Factors {
    /// The rate is over the threshold (up to 0.4).
    pub high_rate: f64,
    /// The rate is over half the threshold (up to 0.2).
    pub elevated_rate: f64,
    /// More distinct endpoints than the scanning limit (up to 0.3).
    pub many_endpoints: f64,
    /// More than half the scanning limit (up to 0.15).
    pub elevated_endpoints: f64,
    /// A burst (up to 0.2).
    pub burst: f64,
    /// An average interval below `min_interval_threshold` (0.2).
    pub uniform_intervals: f64,
    /// The last 20 intervals all under half a second (0.1).
    pub rapid_succession: f64,
    /// A bot's user agent (0.05).
    pub suspicious_agent: f64,
    /// No user agent (0.1).
    pub no_user_agent: f64,
    /// Exempt after a long good record (1, with no score).
    pub whitelisted: f64,
}

impl Factors {
    /// The factors that contributed, by name, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> {
        [
            ("high_rate", self.high_rate),
            ("elevated_rate", self.elevated_rate),
            ("many_endpoints", self.many_endpoints),
            ("elevated_endpoints", self.elevated_endpoints),
            ("burst", self.burst),
            ("uniform_intervals", self.uniform_intervals),
            ("rapid_succession", self.rapid_succession),
            ("suspicious_agent", self.suspicious_agent),
            ("no_user_agent", self.no_user_agent),
            ("whitelisted", self.whitelisted),
        ]
        .into_iter()
        .filter(|(_, part)| *part > 0.0)
    }

    /// The part `name` contributed (0 when none or unknown).
    pub fn get(&self, name: &str) -> f64 {
        self.iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, part)| part)
    }

    fn score(&self) -> f64 {
        let parts = self.high_rate
            + self.elevated_rate
            + self.many_endpoints
            + self.elevated_endpoints
            + self.burst
            + self.uniform_intervals
            + self.rapid_succession
            + self.suspicious_agent
            + self.no_user_agent;
        parts.min(1.0)
    }
}

/// What the score says about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// 0 to 1.
    pub total: f64,
    /// Each factor's part.
    pub factors: Factors,
    /// Requests per second over the analysis window.
    pub request_rate: f64,
    /// Distinct endpoints requested (counted up to twice `max_unique_endpoints`).
    pub unique_endpoints: u64,
}

/// Whether `agent` names a robot (`bot`, `crawler`, `spider`, `scraper`, in any case): one
/// pass over the bytes, comparing a word only where its first letter is.
fn robot(agent: &str) -> bool {
    let agent = agent.as_bytes();
    (0..agent.len()).any(|at| {
        let words: &[&[u8]] = match agent[at] | 0x20 {
            b'b' => &[b"bot"],
            b'c' => &[b"crawler"],
            b's' => &[b"spider", b"scraper"],
            _ => return false,
        };
        let rest = &agent[at..];
        words
            .iter()
            .any(|word| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word))
    })
}

impl TrafficSummary {
    /// Takes in a request at `now` (nanoseconds) for the endpoint with hash `endpoint`.
    pub fn record(&mut self, scale: &Scale, now: u64, endpoint: u32) {
        self.window.record(scale.window, now);
        self.burst.record(scale.burst, now);
        if self.recent_len > 0 {
            let interval = now.saturating_sub(self.recent_time(self.recent_len - 1));
            self.rapid_streak = if interval < RAPID_INTERVAL {
                self.rapid_streak.saturating_add(1)
            } else {
                0
            };
        }
        self.recent[self.recent_next] = now;
        self.recent_next = (self.recent_next + 1) % RECENT;
        self.recent_len = (self.recent_len + 1).min(RECENT);
        if (self.endpoints.len() as u64) < scale.endpoints_cap
            && !self.endpoints.contains(&endpoint)
        {
            self.endpoints.push(endpoint);
        }
    }

    /// The `i`-th of the recent request times, oldest first.
    fn recent_time(&self, i: usize) -> u64 {
        self.recent[(self.recent_next + RECENT - self.recent_len + i) % RECENT]
    }

    /// The original's suspicion score at `now`, for a request with `user_agent`.
    /// (Call it right after [`TrafficSummary::record`] of the same request.)
    pub fn score(&self, scale: &Scale, user_agent: Option<&str>) -> Score {
        let in_window = self.window.sum();
        let request_rate = in_window as f64 * scale.per_window_sec;
        let unique_endpoints = self.endpoints.len() as u64;
        let mut factors = Factors::default();

        // Factor 1: the request rate (up to 0.4).
        let rate = request_rate * scale.per_rate_threshold;
        if request_rate > scale.rate_threshold {
            factors.high_rate = (0.4 * (rate - 1.0)).min(0.4);
        } else if request_rate > scale.rate_threshold * 0.5 {
            factors.elevated_rate = 0.2 * (2.0 * rate - 1.0);
        }

        // Factor 2: many distinct endpoints, a scan (up to 0.3).
        let unique = unique_endpoints as f64;
        let scan = unique * scale.per_max_endpoints;
        if unique > scale.max_endpoints {
            factors.many_endpoints = (0.3 * (scan - 1.0)).min(0.3);
        } else if unique > scale.max_endpoints * 0.5 {
            factors.elevated_endpoints = 0.15 * (2.0 * scan - 1.0);
        }

        // Factor 3: a burst (up to 0.2), once there are 10 requests in the window.
        if in_window >= 10 {
            let burst = self.burst.sum() as f64;
            if burst > scale.burst_threshold {
                factors.burst = (0.2 * (burst * scale.per_burst_threshold - 1.0)).min(0.2);
            }
        }

        // Factor 4: machine-like intervals (0.2 and 0.1), once there are 20 in the window.
        if in_window >= 20 && self.recent_len >= 2 {
            let last = self.recent_len - 1;
            let span = self.recent_time(last).saturating_sub(self.recent_time(0));
            if span < scale.min_interval.saturating_mul(last as u64) {
                factors.uniform_intervals = 0.2;
            }
            if self.rapid_streak as usize >= last {
                factors.rapid_succession = 0.1;
            }
        }

        // Factor 5: the user agent (0.05 for a robot's, 0.1 for none).
        match user_agent.filter(|agent| !agent.is_empty()) {
            Some(agent) if robot(agent) => factors.suspicious_agent = 0.05,
            Some(_) => {}
            None => factors.no_user_agent = 0.1,
        }

        Score {
            total: factors.score(),
            factors,
            request_rate,
            unique_endpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_are_named_in_any_case_anywhere() {
        for agent in [
            "Googlebot/2.1",
            "BOT",
            "x-Crawler",
            "my spider",
            "SCRAPER 1",
            "bot",
        ] {
            assert!(robot(agent), "{agent}");
        }
        for agent in [
            "Mozilla/5.0",
            "",
            "bo",
            "b0t",
            "crawl",
            "spide",
            "scrape",
            "ßot",
        ] {
            assert!(!robot(agent), "{agent}");
        }
    }

    /// A ring's sum lies between the exact count over the span and over the span plus two
    /// buckets, whatever the gaps between requests.
    #[test]
    fn a_ring_counts_the_span_to_within_one_bucket() {
        for span in [1, 10, 1_000, 60 * NANOS, 3_600 * NANOS + 7] {
            let cut = Cut::of(span);
            let width = 1u64 << cut.shift;
            assert!(
                cut.buckets * width >= span && cut.buckets <= SLOTS,
                "{span}: {cut:?}"
            );
            let mut ring = Ring::new();
            let mut times = Vec::new();
            let mut now = 1_700_000_000 * NANOS;
            let mut seed = span;
            for _ in 0..5_000 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                now += (seed >> 33) % (span / 8 + 2);
                ring.record(cut, now);
                times.push(now);
                let exact = |over: u64| times.iter().filter(|&&t| now - t < over).count() as u64;
                let sum = ring.sum();
                assert!(sum >= exact(span), "{span}: {sum} < {}", exact(span));
                let upper = exact(span + 2 * width);
                assert!(sum <= upper, "{span}: {sum} > {upper}");
            }
        }
    }
}
