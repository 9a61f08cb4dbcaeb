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

/// Request counts per time bucket over a span, oldest forgotten as time moves on, with their
/// sum kept as they change.
#[derive(Debug, Clone)]
struct Ring<const N: usize> {
    counts: [u32; N],
    /// The bucket index (time / width) of the newest bucket.
    newest: u64,
    total: u64,
}

impl<const N: usize> Ring<N> {
    fn new() -> Self {
        Ring {
            counts: [0; N],
            newest: 0,
            total: 0,
        }
    }

    fn width(span: u64) -> u64 {
        (span / N as u64).max(1)
    }

    /// Moves the ring to the bucket of `now`, clearing the buckets that passed.
    fn advance(&mut self, span: u64, now: u64) -> u64 {
        let bucket = now / Self::width(span);
        if bucket > self.newest {
            if bucket - self.newest >= N as u64 {
                self.counts = [0; N];
                self.total = 0;
            } else {
                for step in 1..=bucket - self.newest {
                    let slot = &mut self.counts[((self.newest + step) % N as u64) as usize];
                    self.total -= u64::from(*slot);
                    *slot = 0;
                }
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

/// Whether `agent` names a robot (`bot`, `crawler`, `spider`, `scraper`, in any case).
fn robot(agent: &str) -> bool {
    let agent = agent.as_bytes();
    [&b"bot"[..], b"crawler", b"spider", b"scraper"]
        .iter()
        .any(|word| {
            agent
                .windows(word.len())
                .any(|window| window.eq_ignore_ascii_case(word))
        })
}

impl TrafficSummary {
    /// Takes in a request at `now` (nanoseconds) for the endpoint with hash `endpoint`.
    pub fn record(&mut self, settings: &DdosSettings, now: u64, endpoint: u32) {
        self.window.record(nanos(settings.window), now);
        self.burst.record(nanos(settings.burst_window), now);
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
        let cap = settings.max_unique_endpoints.saturating_mul(2);
        if (self.endpoints.len() as u64) < cap && !self.endpoints.contains(&endpoint) {
            self.endpoints.push(endpoint);
        }
    }

    /// The `i`-th of the recent request times, oldest first.
    fn recent_time(&self, i: usize) -> u64 {
        self.recent[(self.recent_next + RECENT - self.recent_len + i) % RECENT]
    }

    /// The original's suspicion score at `now`, for a request with `user_agent`.
    /// (Call it right after [`TrafficSummary::record`] of the same request.)
    pub fn score(&self, settings: &DdosSettings, user_agent: Option<&str>) -> Score {
        let window_secs = settings.window.as_secs_f64();
        let in_window = self.window.sum();
        let request_rate = in_window as f64 / window_secs;
        let unique_endpoints = self.endpoints.len() as u64;
        let mut factors = Factors::default();

        // Factor 1: the request rate (up to 0.4).
        let rate_threshold = settings.threshold as f64 / window_secs;
        if request_rate > rate_threshold {
            factors.high_rate = (0.4 * (request_rate / rate_threshold - 1.0)).min(0.4);
        } else if request_rate > rate_threshold * 0.5 {
            factors.elevated_rate = 0.2 * (request_rate / (rate_threshold * 0.5) - 1.0);
        }

        // Factor 2: many distinct endpoints, a scan (up to 0.3).
        let max = settings.max_unique_endpoints as f64;
        let unique = unique_endpoints as f64;
        if unique > max {
            factors.many_endpoints = (0.3 * (unique / max - 1.0)).min(0.3);
        } else if unique > max * 0.5 {
            factors.elevated_endpoints = 0.15 * (unique / (max * 0.5) - 1.0);
        }

        // Factor 3: a burst (up to 0.2), once there are 10 requests in the window.
        if in_window >= 10 {
            let burst = self.burst.sum() as f64;
            let threshold = settings.burst_threshold as f64;
            if burst > threshold {
                factors.burst = (0.2 * (burst / threshold - 1.0)).min(0.2);
            }
        }

        // Factor 4: machine-like intervals (0.2 and 0.1), once there are 20 in the window.
        if in_window >= 20 && self.recent_len >= 2 {
            let last = self.recent_len - 1;
            let span = self.recent_time(last).saturating_sub(self.recent_time(0));
            if span / (last as u64) < nanos(settings.min_interval_threshold) {
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

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
