//! One client's profile and the original's formulas over it, as pure functions of the
//! profile, the settings and the time (nanoseconds since the Unix epoch).

use serde_json::{Map, Value};

use super::AdaptiveSettings;
use crate::clients::LastSeen;
use crate::nanos;

/// Request rates kept for the standard deviation (the original's `deque(maxlen=100)`).
pub(crate) const RATE_HISTORY: usize = 100;
/// The most requests the recent-request count holds (the original's history of 1000).
pub(crate) const RECENT_CAP: u64 = 1000;
/// The recent-request count's resolution: the window in this many slots.
pub(crate) const SLOTS: usize = 20;
/// The most metadata keys a profile keeps, and the longest value (as JSON text).
pub(crate) const METADATA_KEYS: usize = 32;
pub(crate) const METADATA_VALUE_BYTES: usize = 1024;

/// Days per nanosecond: ages are multiplied by it (a division costs several times more on
/// the hot path).
const PER_DAY: f64 = 1.0 / 86_400e9;
/// 1/30: the age factors ramp up over 30 days.
const PER_MONTH: f64 = 1.0 / 30.0;

/// The requests of the last window, counted in [`SLOTS`] slots of `window / SLOTS`: the
/// current slot and the ones before it that the window still covers. Their sum is kept, and
/// a request in the newest slot needs no division.
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub(crate) struct RecentRequests {
    /// The slot of the newest request (time / slot width).
    newest: u64,
    /// When the newest slot ends (ns; 0 before the first request).
    newest_end: u64,
    /// The sum of `counts`.
    total: u32,
    counts: [u16; SLOTS],
}

impl RecentRequests {
    /// Moves the ring forward to `slot`, forgetting slots that left the window.
    fn roll(&mut self, slot: u64) {
        if slot <= self.newest {
            return;
        }
        let gone = (slot - self.newest).min(SLOTS as u64);
        for step in 1..=gone {
            let at = ((self.newest + step) % SLOTS as u64) as usize;
            self.total -= u32::from(std::mem::take(&mut self.counts[at]));
        }
        self.newest = slot;
    }

    /// Counts one request at `now`; how many the window held before it (at most
    /// [`RECENT_CAP`]).
    pub(crate) fn record(&mut self, now: u64, slot_width: u64) -> u64 {
        if now >= self.newest_end {
            let slot = now / slot_width;
            self.roll(slot);
            self.newest_end = slot.saturating_add(1).saturating_mul(slot_width);
        }
        let before = u64::from(self.total).min(RECENT_CAP);
        // Within the newest slot, or a clock that went back: counted in the newest slot.
        let at = (self.newest % SLOTS as u64) as usize;
        if self.counts[at] < u16::MAX {
            self.counts[at] += 1;
            self.total += 1;
        }
        before
    }
}

/// The last [`RATE_HISTORY`] request rates, as request counts per window (whole numbers), with
/// their sum and sum of squares: the mean and standard deviation are exact and O(1). The
/// bookkeeping comes first, so a push touches it and one slot.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct RateHistory {
    len: u8,
    next: u8,
    sum: u32,
    squares: u64,
    counts: [u16; RATE_HISTORY],
}

impl Default for RateHistory {
    fn default() -> Self {
        RateHistory {
            counts: [0; RATE_HISTORY],
            len: 0,
            next: 0,
            sum: 0,
            squares: 0,
        }
    }
}

impl RateHistory {
    pub(crate) fn push(&mut self, count: u64) {
        let count = count.min(u64::from(u16::MAX)) as u16;
        let next = usize::from(self.next);
        if usize::from(self.len) == RATE_HISTORY {
            let old = self.counts[next];
            self.sum -= u32::from(old);
            self.squares -= u64::from(old) * u64::from(old);
        } else {
            self.len += 1;
        }
        self.counts[next] = count;
        self.next = ((next + 1) % RATE_HISTORY) as u8;
        // At most 100 counts of at most 65,535: the sum fits in 32 bits.
        self.sum += u32::from(count);
        self.squares += u64::from(count) * u64::from(count);
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// The population standard deviation of the counts.
    pub(crate) fn std_counts(&self) -> f64 {
        let n = u64::from(self.len);
        if n == 0 {
            return 0.0;
        }
        // n·Σc² − (Σc)² is exact in integers and never negative; with at most 100 counts of
        // at most 65,535 it stays below 2^46.
        let sum = u64::from(self.sum);
        let spread = n * self.squares - sum * sum;
        (spread as f64).sqrt() / n as f64
    }

    /// The counts, oldest first.
    pub(crate) fn counts(&self) -> impl Iterator<Item = u64> + '_ {
        let (next, len) = (usize::from(self.next), self.len());
        let start = (next + RATE_HISTORY - len) % RATE_HISTORY;
        (0..len).map(move |i| u64::from(self.counts[(start + i) % RATE_HISTORY]))
    }
}

/// What the adaptive limiter knows of one client. Laid out for the hot path: what every
/// request reads and writes in the first 100 bytes (two cache lines with the map's identifier
/// and hash before it), the rate history's slots next, what only violations and reports read
/// last.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Profile {
    pub(crate) last_seen: u64,
    pub(crate) first_seen: u64,
    pub(crate) request_count: u64,
    /// The learned request rate (requests per minute), an exponential moving average.
    pub(crate) mean_rate: f64,
    /// The standard deviation of the recent rates (1 until there are two).
    pub(crate) std_rate: f64,
    pub(crate) trust_score: f64,
    pub(crate) recent: RecentRequests,
    pub(crate) rates: RateHistory,
    pub(crate) violation_count: u64,
    pub(crate) anomaly_count: u64,
    /// The last violation or anomaly (0: none): good behaviour is counted from then.
    pub(crate) last_offence: u64,
    /// What the application told about the client (none for most: boxed, out of the way).
    pub(crate) metadata: Option<Box<Map<String, Value>>>,
}

impl LastSeen for Profile {
    fn last_seen(&self) -> u64 {
        self.last_seen
    }
}

impl Profile {
    /// A new client at `now`, neutral trust (0.5).
    pub(crate) fn new(now: u64) -> Self {
        Profile {
            first_seen: now,
            last_seen: now,
            request_count: 0,
            mean_rate: 0.0,
            std_rate: 1.0,
            rates: RateHistory::default(),
            recent: RecentRequests::default(),
            trust_score: 0.5,
            violation_count: 0,
            anomaly_count: 0,
            last_offence: 0,
            metadata: None,
        }
    }

    /// The profile's age in days at `now`.
    pub(crate) fn age_days(&self, now: u64) -> f64 {
        now.saturating_sub(self.first_seen) as f64 * PER_DAY
    }

    /// Whole days without a violation or anomaly (since the first request, or the last one).
    pub(crate) fn good_behavior_days(&self, now: u64) -> u64 {
        let since = self.first_seen.max(self.last_offence);
        (now.saturating_sub(since) as f64 * PER_DAY) as u64
    }

    /// Takes in a request at `now` with `count` requests in the window before it
    /// (`per_minute` turns counts into requests per minute): the original's
    /// `_update_profile`. `true` when it is the request on which trust is recalculated (every
    /// tenth).
    pub(crate) fn observe(
        &mut self,
        settings: &AdaptiveSettings,
        now: u64,
        count: u64,
        per_minute: f64,
    ) -> bool {
        let rate = count as f64 * per_minute;
        self.last_seen = now;
        self.request_count += 1;
        self.rates.push(count);
        self.mean_rate = if self.mean_rate == 0.0 {
            rate
        } else {
            (1.0 - settings.learning_rate) * self.mean_rate + settings.learning_rate * rate
        };
        if self.rates.len() > 1 {
            self.std_rate = self.rates.std_counts() * per_minute;
        }
        self.request_count % 10 == 0
    }

    /// The z-score of `rate` against the learned rate (0 before there is a spread).
    pub(crate) fn anomaly_score(&self, rate: f64) -> f64 {
        if self.std_rate == 0.0 || self.mean_rate == 0.0 {
            return 0.0;
        }
        ((rate - self.mean_rate) / self.std_rate).abs()
    }

    /// The trust the profile earns at `now`, 0 to 1: account age (30 days to full) × 0.3,
    /// consistency (`1 / (1 + cv)`) × 0.4, a clean record (−0.1 per violation or anomaly) × 0.3,
    /// and up to 0.2 for days of good behaviour.
    pub(crate) fn trust_at(&self, now: u64) -> f64 {
        let age_score = (self.age_days(now) * PER_MONTH).min(1.0);
        let consistency_score = self.consistency();
        let offences = self.violation_count.saturating_add(self.anomaly_count);
        let violation_penalty = (offences as f64 * 0.1).min(1.0);
        let violation_score = (1.0 - violation_penalty).max(0.0);
        let bonus = (self.good_behavior_days(now) as f64 * 0.01).min(0.2);
        let trust = age_score * 0.3 + consistency_score * 0.4 + violation_score * 0.3 + bonus;
        trust.clamp(0.0, 1.0)
    }

    /// Recalculates trust at `now`; the change.
    pub(crate) fn retrust(&mut self, now: u64) -> f64 {
        let old = self.trust_score;
        self.trust_score = self.trust_at(now);
        self.trust_score - old
    }

    /// `1 / (1 + std / mean)` (as `mean / (mean + std)`: one division), or 1 without a
    /// spread.
    fn consistency(&self) -> f64 {
        if self.std_rate > 0.0 && self.mean_rate > 0.0 {
            self.mean_rate / (self.mean_rate + self.std_rate)
        } else {
            1.0
        }
    }

    /// The limit for this client at `now`: `base × (min + trust·(max−min))`, × 0.3 when
    /// `anomalous`, × the age factor (0.5 for a new client, 1 after 30 days), truncated and
    /// kept within `[max(1, base·min), base·max]`.
    pub(crate) fn adjusted_limit(
        &self,
        settings: &AdaptiveSettings,
        anomalous: bool,
        now: u64,
    ) -> u64 {
        let base = settings.base_limit as f64;
        let (low, high) = (settings.min_multiplier, settings.max_multiplier);
        let trust_multiplier = if settings.trust_enabled {
            low + self.trust_score * (high - low)
        } else {
            1.0
        };
        let anomaly_multiplier = if anomalous { 0.3 } else { 1.0 };
        let age_multiplier = (0.5 + (self.age_days(now) * PER_MONTH) * 0.5).min(1.0);
        // The original's order of operations, so the numbers are the same.
        let adjusted = (base * trust_multiplier * anomaly_multiplier * age_multiplier) as u64;
        let min_limit = ((base * low) as u64).max(1);
        let max_limit = (base * high) as u64;
        adjusted.min(max_limit).max(min_limit)
    }

    /// How sure the decision is, 0 to 1: the data seen (100 requests to full) and the
    /// consistency, averaged.
    pub(crate) fn confidence(&self) -> f64 {
        let data = (self.request_count as f64 * 0.01).min(1.0);
        (data + self.consistency()) / 2.0
    }

    /// Merges `metadata` in, keeping at most [`METADATA_KEYS`] keys and values up to
    /// [`METADATA_VALUE_BYTES`] of JSON (larger ones are left out).
    pub(crate) fn merge_metadata(&mut self, metadata: &Map<String, Value>) {
        for (key, value) in metadata {
            let kept = self.metadata.get_or_insert_default();
            let fits = serde_json::to_string(value).map_or(0, |t| t.len()) <= METADATA_VALUE_BYTES;
            let room = kept.len() < METADATA_KEYS || kept.contains_key(key);
            if fits && room && key.len() <= 256 {
                kept.insert(key.clone(), value.clone());
            }
        }
    }

    /// The metadata kept (empty when none).
    pub(crate) fn metadata(&self) -> Map<String, Value> {
        self.metadata.as_deref().cloned().unwrap_or_default()
    }
}

/// Requests per window → requests per minute.
pub(crate) fn per_minute(settings: &AdaptiveSettings) -> f64 {
    60.0 / settings.window.as_secs_f64()
}

/// The width of one slot of [`RecentRequests`] in nanoseconds.
pub(crate) fn slot_width(settings: &AdaptiveSettings) -> u64 {
    (nanos(settings.window) / SLOTS as u64).max(1)
}
