//! [`DdosSettings`]: the original's `ddos_protection` settings, defaults and checks.

use std::time::Duration;

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("ddos_protection.{key} must be {range}, got {got}")]
pub struct SettingsError {
    /// The setting's name.
    pub key: &'static str,
    /// What is allowed, in words.
    pub range: &'static str,
    /// The value given.
    pub got: String,
}

/// How DDoS protection scores and blocks (the original's `DDoSProtection` settings, with its
/// defaults).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DdosSettings {
    /// Whether traffic is analysed at all.
    pub enabled: bool,
    /// Requests per `window` from one client from which its rate counts as high.
    pub threshold: u64,
    /// The analysis window.
    pub window: Duration,
    /// Block clients found suspicious three times in five minutes, or scoring 0.8 or more.
    pub auto_block: bool,
    /// How long an automatic block lasts.
    pub block_duration: Duration,
    /// The score (0 to 1) from which traffic is suspicious.
    pub suspicious_threshold: f64,
    /// Distinct endpoints from which a client looks like a scanner.
    pub max_unique_endpoints: u64,
    /// Requests within `burst_window` that make a burst.
    pub burst_threshold: u64,
    /// The window of `burst_threshold`.
    pub burst_window: Duration,
    /// An average interval between requests below this looks automated.
    pub min_interval_threshold: Duration,
    /// Stop scoring clients with a long good record.
    pub whitelist_on_good_behavior: bool,
    /// Requests without suspicion that make a good record.
    pub good_behavior_threshold: u64,
    /// The most clients followed at once (the least recently seen are forgotten first).
    pub max_tracked_identifiers: usize,
    /// Ban escalation (not in the original): each automatic block of a repeat offender lasts
    /// this many times the one before (`block_duration`, then ×factor, ×factor², …), up to
    /// `max_block_duration`. 1 keeps every block at `block_duration`, as the original does.
    pub block_increment: f64,
    /// The longest an escalated block lasts.
    pub max_block_duration: Duration,
    /// How long a client's offences are remembered after its last one (shared by a fleet
    /// through the store): a client with none for this long starts again at
    /// `block_duration`.
    pub offence_memory: Duration,
}

impl Default for DdosSettings {
    fn default() -> Self {
        DdosSettings {
            enabled: true,
            threshold: 10_000,
            window: Duration::from_secs(60),
            auto_block: true,
            block_duration: Duration::from_secs(3600),
            suspicious_threshold: 0.5,
            max_unique_endpoints: 50,
            burst_threshold: 100,
            burst_window: Duration::from_secs(10),
            min_interval_threshold: Duration::from_millis(100),
            whitelist_on_good_behavior: true,
            good_behavior_threshold: 1000,
            max_tracked_identifiers: 100_000,
            block_increment: 2.0,
            max_block_duration: Duration::from_secs(7 * 24 * 3600),
            offence_memory: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl DdosSettings {
    /// The fewest clients that may be tracked.
    pub const MIN_TRACKED: usize = 1000;

    /// Checks every setting; the first one out of range, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let error = |key, range, got: String| Err(SettingsError { key, range, got });
        if self.threshold == 0 {
            return error("threshold", "at least 1", "0".to_owned());
        }
        if self.window.is_zero() {
            return error("window", "above 0 seconds", "0".to_owned());
        }
        if !(0.0..=1.0).contains(&self.suspicious_threshold) {
            let got = self.suspicious_threshold.to_string();
            return error("suspicious_threshold", "from 0 to 1", got);
        }
        if self.max_unique_endpoints == 0 {
            return error("max_unique_endpoints", "at least 1", "0".to_owned());
        }
        if self.burst_threshold == 0 {
            return error("burst_threshold", "at least 1", "0".to_owned());
        }
        if self.burst_window.is_zero() {
            return error("burst_window", "above 0 seconds", "0".to_owned());
        }
        if self.good_behavior_threshold == 0 {
            return error("good_behavior_threshold", "at least 1", "0".to_owned());
        }
        if self.max_tracked_identifiers < Self::MIN_TRACKED {
            let got = self.max_tracked_identifiers.to_string();
            return error("max_tracked_identifiers", "at least 1,000", got);
        }
        if !(self.block_increment >= 1.0 && self.block_increment <= 1000.0) {
            let got = self.block_increment.to_string();
            return error("block_increment", "from 1 to 1000", got);
        }
        if self.max_block_duration < self.block_duration {
            let got = format!("{:?}", self.max_block_duration);
            return error("max_block_duration", "at least block_duration", got);
        }
        if self.offence_memory.is_zero() {
            return error("offence_memory", "above 0 seconds", "0".to_owned());
        }
        Ok(())
    }

    /// How long the automatic block for a client's `offence`-th offence lasts (the first is
    /// 1): `block_duration × block_increment^(offence−1)`, at most `max_block_duration`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ratethrottle_protect::ddos::DdosSettings;
    ///
    /// let settings = DdosSettings::default(); // 1 h, doubling, at most a week
    /// let hours = |n| settings.block_for(n).as_secs() / 3600;
    /// assert_eq!([1, 2, 3, 4, 8].map(hours), [1, 2, 4, 8, 128]);
    /// assert_eq!(settings.block_for(9), Duration::from_secs(7 * 24 * 3600));
    /// ```
    pub fn block_for(&self, offence: u64) -> Duration {
        let steps = offence.saturating_sub(1).min(i32::MAX as u64) as i32;
        let seconds = self.block_duration.as_secs_f64() * self.block_increment.powi(steps);
        if seconds.is_finite() && seconds < self.max_block_duration.as_secs_f64() {
            // Whole milliseconds: a block's expiry is kept in those.
            Duration::from_millis((seconds * 1000.0).round() as u64)
        } else {
            self.max_block_duration
        }
    }
}
