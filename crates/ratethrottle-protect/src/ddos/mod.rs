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

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hashbrown::HashTable;
use parking_lot::Mutex;
use ratethrottle::clock::Nanos;

use crate::nanos;

mod ban;
mod settings;
mod summary;

pub use ban::{Ban, ban, offence_key};
pub use settings::{DdosSettings, SettingsError};
pub use summary::{Factors, Scale, Score, TrafficSummary};

const SHARDS: usize = 64;

/// One shard: its clients, each with its identifier's hash (seeded: clients cannot aim at one
/// bucket), so a request hashes its identifier once; and its counts (plain adds under the
/// shard's lock, summed by [`DdosProtection::statistics`]).
#[derive(Debug, Default)]
struct Clients {
    table: HashTable<Tracked>,
    counts: Counts,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    total_analyzed: u64,
    suspicious_detected: u64,
    auto_blocked: u64,
    false_positives_prevented: u64,
}

#[derive(Debug)]
struct Tracked {
    /// Held inline up to 15 bytes (an IPv4 address): no pointer to follow on a lookup.
    id: ecow::EcoString,
    hash: u64,
    client: Client,
}
/// How many clients a full shard looks at to pick the one to forget.
const EVICTION_SAMPLE: usize = 8;
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
    shards: Box<[Mutex<Clients>]>,
    per_shard: usize,
    tracked: AtomicUsize,
    hasher: foldhash::fast::RandomState,
}

impl DdosProtection {
    /// Protection with `settings`; the first setting out of range is an error naming it.
    pub fn new(settings: DdosSettings) -> Result<Self, SettingsError> {
        settings.validate()?;
        let per_shard = settings.max_tracked_identifiers.div_ceil(SHARDS);
        Ok(DdosProtection {
            scale: Scale::of(&settings),
            settings,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Clients::default()))
                .collect(),
            per_shard,
            tracked: AtomicUsize::new(0),
            hasher: foldhash::fast::RandomState::default(),
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
        let endpoint = self.hasher.hash_one(endpoint) as u32;
        let (hash, mut guard) = self.shard_of(identifier);
        let shard = &mut *guard;
        let eq = |t: &Tracked| t.id == identifier;
        // One lookup for a known client; a new one makes room first.
        let client = match shard.table.find_mut(hash, eq) {
            Some(tracked) => &mut tracked.client,
            None => {
                self.make_room(&mut shard.table);
                let tracked = Tracked {
                    id: identifier.into(),
                    hash,
                    client: Client::default(),
                };
                self.tracked.fetch_add(1, Ordering::Relaxed);
                &mut shard
                    .table
                    .insert_unique(hash, tracked, |t| t.hash)
                    .into_mut()
                    .client
            }
        };
        let counts = &mut shard.counts;
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

    /// The hash of `identifier` (seeded) and its shard, locked.
    fn shard_of(&self, identifier: &str) -> (u64, parking_lot::MutexGuard<'_, Clients>) {
        let hash = self.hasher.hash_one(identifier);
        (hash, self.shards[(hash >> 58) as usize % SHARDS].lock())
    }

    /// Forgets what was learned of `identifier`; `true` if it was followed.
    pub fn forget(&self, identifier: &str) -> bool {
        let (hash, mut shard) = self.shard_of(identifier);
        let removed = shard
            .table
            .find_entry(hash, |t| t.id == identifier)
            .map(|entry| drop(entry.remove()))
            .is_ok();
        drop(shard);
        if removed {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Starts `identifier`'s good record again (it is scored from now on, even if it had
    /// earned an exemption); `true` if it had earned one.
    pub fn distrust(&self, identifier: &str) -> bool {
        let (hash, mut shard) = self.shard_of(identifier);
        match shard.table.find_mut(hash, |t| t.id == identifier) {
            Some(tracked) => {
                tracked.client.good = 0;
                std::mem::take(&mut tracked.client.trusted)
            }
            None => false,
        }
    }

    /// Forgets every client.
    pub fn forget_all(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            self.tracked.fetch_sub(shard.table.len(), Ordering::Relaxed);
            shard.table.clear();
        }
    }

    /// The counts so far.
    pub fn statistics(&self) -> DdosStatistics {
        let mut stats = DdosStatistics {
            tracked_identifiers: self.tracked.load(Ordering::Relaxed) as u64,
            ..DdosStatistics::default()
        };
        for shard in self.shards.iter() {
            let shard = shard.lock();
            let counts = shard.counts;
            stats.trusted_identifiers +=
                shard.table.iter().filter(|t| t.client.trusted).count() as u64;
            stats.total_analyzed += counts.total_analyzed;
            stats.suspicious_detected += counts.suspicious_detected;
            stats.auto_blocked += counts.auto_blocked;
            stats.false_positives_prevented += counts.false_positives_prevented;
        }
        stats
    }

    /// Sets the counts to zero (the clients stay followed).
    pub fn reset_statistics(&self) {
        for shard in self.shards.iter() {
            shard.lock().counts = Counts::default();
        }
    }

    /// Before a new client comes in while `max_tracked_identifiers` are followed: forget the
    /// least recently seen of a few in its shard (a shard far over its share gives one up
    /// too). The bound may be passed by one client per shard that has none to give up.
    fn make_room(&self, shard: &mut HashTable<Tracked>) {
        let full = self.tracked.load(Ordering::Relaxed) >= self.settings.max_tracked_identifiers;
        if !full && shard.len() < 2 * self.per_shard {
            return;
        }
        let oldest = shard
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|t| t.client.last_seen)
            .map(|t| (t.hash, t.client.last_seen));
        let Some((hash, last_seen)) = oldest else {
            return;
        };
        if let Ok(entry) = shard.find_entry(hash, |t| t.client.last_seen == last_seen) {
            entry.remove();
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
