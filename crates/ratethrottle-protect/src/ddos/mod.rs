//! DDoS detection: [`DdosProtection::analyze`] scores each request of a client with the original
//! RateThrottle's factors and says when to block it.
//!
//! ```
//! use ratethrottle::clock::Nanos;
//! use ratethrottle_protect::ddos::{DdosProtection, DdosSettings};
//!
//! let ddos = DdosProtection::new(DdosSettings::default())?;
//! let now = Nanos::from_nanos(1_700_000_000_000_000_000);
//! let analysis = ddos.analyze("203.0.113.7", "/api/data", Some("Mozilla/5.0"), now);
//! assert!(!analysis.pattern.is_suspicious);
//! # Ok::<(), ratethrottle_protect::ddos::SettingsError>(())
//! ```
//!
//! Analysis is per process (each process sees its own traffic); what it decides (a block) is
//! for the caller to enforce, such as in the limiter's blacklist, which a fleet shares.

use std::time::Duration;

use ratethrottle::clock::Nanos;

use crate::clients::{Clients, LastSeen};
use crate::nanos;

mod ban;
mod settings;
mod summary;

pub use ban::{Ban, BanFuture, Screen, ban, offence_key};
pub use settings::{DdosSettings, SettingsError};
pub use summary::{Factors, Scale, Score, TrafficSummary};

/// A shard's counts: plain adds under the shard's lock, summed by
/// [`DdosProtection::statistics`].
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    total_analyzed: u64,
    suspicious_detected: u64,
    auto_blocked: u64,
    false_positives_prevented: u64,
}

/// Suspicious events within this long count toward an automatic block.
const REPEAT_SPAN: u64 = 300 * 1_000_000_000;
/// How many suspicious events within [`REPEAT_SPAN`] make an automatic block.
const REPEATS_TO_BLOCK: usize = 3;
/// A score from which a client is blocked at once.
const BLOCK_SCORE: f64 = 0.8;

/// What the analysis of one request found (the original's `TrafficPattern`, less the client,
/// which the caller knows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrafficPattern {
    /// Requests per second over the analysis window.
    pub request_rate: f64,
    /// Distinct endpoints requested (counted up to twice `max_unique_endpoints`).
    pub unique_endpoints: u64,
    /// 0 to 1.
    pub suspicious_score: f64,
    /// Whether the score reached `suspicious_threshold`.
    pub is_suspicious: bool,
    /// The analysis window, in whole seconds.
    pub analysis_window: u64,
    /// When the request was analysed.
    pub timestamp: Nanos,
    /// Each factor's part (or `whitelisted`).
    pub factors: Factors,
}

/// The pattern of a request, and the block it calls for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    /// What the analysis found.
    pub pattern: TrafficPattern,
    /// Block the client for this long (automatic blocking found it suspicious three times in
    /// five minutes, or scored it 0.8 or more).
    pub block_for: Option<Duration>,
}

/// Counts since the start (or the last reset), with the original's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DdosStatistics {
    /// Requests analysed.
    pub total_analyzed: u64,
    /// Requests found suspicious.
    pub suspicious_detected: u64,
    /// Automatic blocks called for.
    pub auto_blocked: u64,
    /// Clients exempted after a long good record.
    pub false_positives_prevented: u64,
    /// Clients followed now.
    pub tracked_identifiers: u64,
    /// Of those, exempt after a long good record.
    pub trusted_identifiers: u64,
}

impl DdosStatistics {
    /// The percentage of analysed requests found suspicious (0 before any), the original's
    /// `detection_rate`.
    pub fn detection_rate(&self) -> f64 {
        if self.total_analyzed == 0 {
            0.0
        } else {
            self.suspicious_detected as f64 / self.total_analyzed as f64 * 100.0
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Client {
    summary: TrafficSummary,
    last_seen: u64,
    /// Requests in a row without suspicion.
    good: u64,
    /// Exempt after a long good record.
    trusted: bool,
    /// The times of the last suspicious events.
    suspicious: [u64; REPEATS_TO_BLOCK],
    /// Until when a block called for runs at least: no new one is called for before.
    no_block_before: u64,
    suspicious_next: usize,
}

impl LastSeen for Client {
    fn last_seen(&self) -> u64 {
        self.last_seen
    }
}

impl Client {
    /// Notes a suspicious event at `now`; how many fell within the last five minutes.
    fn suspicious_at(&mut self, now: u64) -> usize {
        self.suspicious[self.suspicious_next] = now;
        self.suspicious_next = (self.suspicious_next + 1) % REPEATS_TO_BLOCK;
        self.suspicious
            .iter()
            .filter(|&&at| at != 0 && now.saturating_sub(at) < REPEAT_SPAN)
            .count()
    }
}

/// DDoS detection over a bounded set of clients. Share it behind an `Arc`; analyses of
/// different clients run in parallel (the clients are sharded).
#[derive(Debug)]
pub struct DdosProtection {
    settings: DdosSettings,
    scale: Scale,
    clients: Clients<Client, Counts>,
}

impl DdosProtection {
    /// Protection with `settings`; the first setting out of range is an error naming it.
    pub fn new(settings: DdosSettings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(DdosProtection {
            scale: Scale::of(&settings),
            clients: Clients::new(settings.max_tracked_identifiers),
            settings,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &DdosSettings {
        &self.settings
    }

    /// Analyses one request of `identifier` for `endpoint` at `now`.
    pub fn analyze(
        &self,
        identifier: &str,
        endpoint: &str,
        user_agent: Option<&str>,
        now: Nanos,
    ) -> Analysis {
        let settings = &self.settings;
        let window = settings.window.as_secs();
        let quiet = |factors: Factors| Analysis {
            pattern: TrafficPattern {
                request_rate: 0.0,
                unique_endpoints: 0,
                suspicious_score: 0.0,
                is_suspicious: false,
                analysis_window: window,
                timestamp: now,
                factors,
            },
            block_for: None,
        };
        if !settings.enabled {
            return quiet(Factors::default());
        }
        let at = now.as_nanos();
        let endpoint = self.clients.hash(endpoint) as u32;
        let mut locked = self.clients.lock(identifier);
        let (client, counts, _) = self.clients.get_or_insert(&mut locked, Client::default);
        client.last_seen = at;
        if client.trusted {
            return quiet(Factors {
                whitelisted: 1.0,
                ..Factors::default()
            });
        }
        counts.total_analyzed += 1;
        client.summary.record(&self.scale, at, endpoint);
        let score = client.summary.score(&self.scale, user_agent);
        let is_suspicious = score.total >= settings.suspicious_threshold;
        let mut block_for = None;
        if is_suspicious {
            counts.suspicious_detected += 1;
            client.good = 0;
            let repeats = client.suspicious_at(at);
            if settings.auto_block
                && (repeats >= REPEATS_TO_BLOCK || score.total >= BLOCK_SCORE)
                && at >= client.no_block_before
            {
                counts.auto_blocked += 1;
                block_for = Some(settings.block_duration);
                // Not again while this block surely lasts (the original blocks a client
                // only when it is not blocked already).
                client.no_block_before = at.saturating_add(nanos(settings.block_duration));
            }
        } else if settings.whitelist_on_good_behavior {
            client.good += 1;
            if client.good >= settings.good_behavior_threshold {
                client.trusted = true;
                counts.false_positives_prevented += 1;
            }
        }
        Analysis {
            pattern: TrafficPattern {
                request_rate: score.request_rate,
                unique_endpoints: score.unique_endpoints,
                suspicious_score: score.total,
                is_suspicious,
                analysis_window: window,
                timestamp: now,
                factors: score.factors,
            },
            block_for,
        }
    }

    /// Forgets what was learned of `identifier`; `true` if it was followed.
    pub fn forget(&self, identifier: &str) -> bool {
        self.clients.remove(identifier)
    }

    /// Starts `identifier`'s good record again (it is scored from now on, even if it had
    /// earned an exemption); `true` if it had earned one.
    pub fn distrust(&self, identifier: &str) -> bool {
        let mut locked = self.clients.lock(identifier);
        match Clients::get_mut(&mut locked) {
            Some(client) => {
                client.good = 0;
                std::mem::take(&mut client.trusted)
            }
            None => false,
        }
    }

    /// Forgets every client.
    pub fn forget_all(&self) {
        self.clients.clear();
    }

    /// The counts so far.
    pub fn statistics(&self) -> DdosStatistics {
        let mut stats = DdosStatistics {
            tracked_identifiers: self.clients.len() as u64,
            ..DdosStatistics::default()
        };
        self.clients.each_shard(|shard| {
            let counts = shard.data;
            stats.trusted_identifiers += shard.entries().filter(|e| e.value.trusted).count() as u64;
            stats.total_analyzed += counts.total_analyzed;
            stats.suspicious_detected += counts.suspicious_detected;
            stats.auto_blocked += counts.auto_blocked;
            stats.false_positives_prevented += counts.false_positives_prevented;
        });
        stats
    }

    /// Sets the counts to zero (the clients stay followed).
    pub fn reset_statistics(&self) {
        self.clients
            .each_shard(|shard| shard.data = Counts::default());
    }
}

#[cfg(test)]
mod tests;
