//! One client's traffic as a bounded summary, and the original's suspicion score over it.
//!
//! 1.4.0 keeps up to 10,000 timestamps per client and scans them on every request. Here a
//! client costs a fixed few hundred bytes, updated in O(1):
//!
//! - requests in the analysis window: a ring of 64 buckets, each `window / 64` long, so the
//!   count may include requests up to one bucket older than the window;
//! - requests in the burst window: a ring of 16 buckets of `burst_window / 16`, likewise;
//! - intervals: the last 21 request times, so the average interval is that of the last 20
//!   intervals (1.4.0 averages every interval in the window);
//! - distinct endpoints: their hashes, up to twice `max_unique_endpoints`, where the endpoint
//!   factor reaches its maximum (1.4.0 keeps every endpoint ever requested).

use super::settings::DdosSettings;

const NANOS: u64 = 1_000_000_000;

/// Request counts per time bucket over a span, oldest forgotten as time moves on.
#[derive(Debug, Clone)]
struct Ring<const N: usize> {
    counts: [u32; N],
    /// The bucket index (time / width) of the newest bucket.
    newest: u64,
}

impl<const N: usize> Ring<N> {
    fn new() -> Self {
        Ring {
            counts: [0; N],
            newest: 0,
        }
    }

    fn width(span: u64) -> u64 {
        (span / N as u64).max(1)
    }

    /// Moves the ring to the bucket of `now`, clearing the buckets that passed.
    fn advance(&mut self, span: u64, now: u64) -> u64 {
        let bucket = now / Self::width(span);
        if bucket > self.newest {
            let passed = (bucket - self.newest).min(N as u64);
            for step in 1..=passed {
                self.counts[((self.newest + step) % N as u64) as usize] = 0;
            }
            self.newest = bucket;
        }
        bucket
    }

    fn record(&mut self, span: u64, now: u64) {
        let bucket = self.advance(span, now);
        // A time older than the ring (the clock went back) counts in the newest bucket.
        let at = if self.newest - bucket < N as u64 {
            bucket
        } else {
            self.newest
        };
        let slot = &mut self.counts[(at % N as u64) as usize];
        *slot = slot.saturating_add(1);
    }

    /// Requests within the span ending at `now`.
    fn sum(&mut self, span: u64, now: u64) -> u64 {
        self.advance(span, now);
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }
}

/// How many request times are kept for the interval factors: 21, for the last 20 intervals.
const RECENT: usize = 21;
/// Intervals shorter than this, throughout the last 20, look like rapid succession.
const RAPID_INTERVAL: u64 = NANOS / 2;

/// One client's traffic.
#[derive(Debug, Clone)]
pub struct TrafficSummary {
    window: Ring<64>,
    burst: Ring<16>,
    /// The last request times, a ring (`recent_len` of them valid).
    recent: [u64; RECENT],
    recent_len: usize,
    recent_next: usize,
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
            endpoints: Vec::new(),
        }
    }
}

/// The factors of a score, named as 1.4.0 names them in a pattern's metadata.
pub type Factors = Vec<(&'static str, f64)>;

/// What the score says about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// 0 to 1.
    pub total: f64,
    /// Each factor that contributed, with its part.
    pub factors: Factors,
    /// Requests per second over the analysis window.
    pub request_rate: f64,
    /// Distinct endpoints requested (counted up to twice `max_unique_endpoints`).
    pub unique_endpoints: u64,
}

impl TrafficSummary {
    /// Takes in a request at `now` (nanoseconds) for the endpoint with hash `endpoint`.
    pub fn record(&mut self, settings: &DdosSettings, now: u64, endpoint: u32) {
        self.window.record(nanos(settings.window), now);
        self.burst.record(nanos(settings.burst_window), now);
        self.recent[self.recent_next] = now;
        self.recent_next = (self.recent_next + 1) % RECENT;
        self.recent_len = (self.recent_len + 1).min(RECENT);
        let cap = settings.max_unique_endpoints.saturating_mul(2);
        if (self.endpoints.len() as u64) < cap && !self.endpoints.contains(&endpoint) {
            self.endpoints.push(endpoint);
        }
    }

    /// The recent request times, oldest first.
    fn recent_times(&self) -> impl Iterator<Item = u64> + '_ {
        let start = (self.recent_next + RECENT - self.recent_len) % RECENT;
        (0..self.recent_len).map(move |i| self.recent[(start + i) % RECENT])
    }

    /// The original's suspicion score at `now`, for a request with `user_agent`.
    pub fn score(&mut self, settings: &DdosSettings, now: u64, user_agent: Option<&str>) -> Score {
        let window_secs = settings.window.as_secs_f64();
        let in_window = self.window.sum(nanos(settings.window), now);
        let request_rate = in_window as f64 / window_secs;
        let unique_endpoints = self.endpoints.len() as u64;
        let mut factors = Factors::new();

        // Factor 1: the request rate (up to 0.4).
        let rate_threshold = settings.threshold as f64 / window_secs;
        if request_rate > rate_threshold {
            factors.push((
                "high_rate",
                (0.4 * (request_rate / rate_threshold - 1.0)).min(0.4),
            ));
        } else if request_rate > rate_threshold * 0.5 {
            factors.push((
                "elevated_rate",
                0.2 * (request_rate / (rate_threshold * 0.5) - 1.0),
            ));
        }

        // Factor 2: many distinct endpoints, a scan (up to 0.3).
        let max = settings.max_unique_endpoints as f64;
        let unique = unique_endpoints as f64;
        if unique > max {
            factors.push(("many_endpoints", (0.3 * (unique / max - 1.0)).min(0.3)));
        } else if unique > max * 0.5 {
            factors.push(("elevated_endpoints", 0.15 * (unique / (max * 0.5) - 1.0)));
        }

        // Factor 3: a burst (up to 0.2), once there are 10 requests in the window.
        if in_window >= 10 {
            let burst = self.burst.sum(nanos(settings.burst_window), now) as f64;
            let threshold = settings.burst_threshold as f64;
            if burst > threshold {
                factors.push(("burst", (0.2 * (burst / threshold - 1.0)).min(0.2)));
            }
        }

        // Factor 4: machine-like intervals (0.2 and 0.1), once there are 20 in the window.
        if in_window >= 20 && self.recent_len >= 2 {
            let times: Vec<u64> = self.recent_times().collect();
            let span = times[times.len() - 1].saturating_sub(times[0]);
            let average = span / (times.len() as u64 - 1);
            if average < nanos(settings.min_interval_threshold) {
                factors.push(("uniform_intervals", 0.2));
            }
            if times
                .windows(2)
                .all(|pair| pair[1].saturating_sub(pair[0]) < RAPID_INTERVAL)
            {
                factors.push(("rapid_succession", 0.1));
            }
        }

        // Factor 5: the user agent (0.05 for a bot's, 0.1 for none).
        match user_agent.filter(|agent| !agent.is_empty()) {
            Some(agent) => {
                let agent = agent.to_ascii_lowercase();
                if ["bot", "crawler", "spider", "scraper"]
                    .iter()
                    .any(|word| agent.contains(word))
                {
                    factors.push(("suspicious_agent", 0.05));
                }
            }
            None => factors.push(("no_user_agent", 0.1)),
        }

        let total = factors.iter().map(|(_, part)| part).sum::<f64>().min(1.0);
        Score {
            total,
            factors,
            request_rate,
            unique_endpoints,
        }
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
