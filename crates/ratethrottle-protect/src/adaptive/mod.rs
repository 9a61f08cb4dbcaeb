//! The adaptive (learning) limiter: each client's limit follows its behaviour, and the
//! limiter's engine enforces it exactly.
//!
//! Each client has a profile (bounded in number, least recently seen forgotten first): an
//! exponential moving average of its request rate, the spread of its recent rates, and a trust
//! score. A rate more than `anomaly_threshold` standard deviations from the learned one is an
//! anomaly. The limit is the original's formula: `base × (min + trust·(max−min))`, × 0.3 for an
//! anomaly, × an age factor that grows from 0.5 to 1 over 30 days, within
//! `[base·min_multiplier, base·max_multiplier]`. It is enforced with
//! [`RuleHandle::check_n_at_limit`]: the same strategy code, state and store as every rule, so a
//! limit of N admits at most N per window across threads and (on Redis) processes.
//!
//! Profiles are per process: each process learns from the traffic it sees. Share them on
//! purpose with [`AdaptiveLimiter::export_model`] and [`AdaptiveLimiter::load_model`].
//!
//! ```
//! use ratethrottle::Limiter;
//! use ratethrottle_protect::adaptive::{AdaptiveLimiter, AdaptiveSettings};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let adaptive = AdaptiveLimiter::new(Limiter::in_memory(), AdaptiveSettings::default())?;
//! let decision = adaptive.check("user_123", None).await?;
//! assert!(decision.allowed());
//! // A new client starts at half trust and half the age factor: 100 × 1.75 × 0.5.
//! assert_eq!(decision.adjusted_limit, 87);
//! # Ok::<(), ratethrottle_protect::adaptive::AdaptiveError>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use parking_lot::RwLock;
use ratethrottle::clock::Nanos;
use ratethrottle::store::{MemoryStore, Store};
use ratethrottle::{Limiter, RuleHandle, Status};
use serde_json::{Map, Value};

use crate::clients::Clients;

mod model;
mod persist;
mod profile;
mod settings;
mod summary;

pub use persist::Saver;
pub use settings::{AdaptiveError, AdaptiveSettings, Persistence};
pub use summary::{AdaptiveSummary, TrustFigure};

use profile::{Profile, slot_width};

/// Why a request was admitted or refused (the original's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Admitted.
    Allowed,
    /// Over the client's limit.
    RateLimitExceeded,
    /// Over the client's limit, lowered because its rate is anomalous.
    AnomalyDetected,
}

impl Reason {
    /// `"allowed"`, `"rate_limit_exceeded"` or `"anomaly_detected"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::RateLimitExceeded => "rate_limit_exceeded",
            Reason::AnomalyDetected => "anomaly_detected",
        }
    }
}

/// The answer to one adaptive check (the original's result dict, and the engine's status).
#[derive(Debug, Clone)]
pub struct AdaptiveDecision {
    /// The engine's answer at the adjusted limit (`allowed`, `remaining`, `retry_after`,
    /// headers).
    pub status: Status,
    /// The client's limit for this request.
    pub adjusted_limit: u64,
    /// The client's trust, 0 to 1.
    pub trust_score: f64,
    /// The z-score of the client's current rate.
    pub anomaly_score: f64,
    /// How sure the decision is, 0 to 1.
    pub confidence: f64,
    /// Why.
    pub reason: Reason,
    /// The limit every client starts from.
    pub base_limit: u64,
}

impl AdaptiveDecision {
    /// Whether the request is admitted.
    pub fn allowed(&self) -> bool {
        self.status.allowed
    }

    /// Whole seconds to wait before retrying (at least 1 when refused; 0 when admitted).
    pub fn retry_after_secs(&self) -> u64 {
        if self.status.allowed {
            0
        } else {
            self.status.retry_after_secs().unwrap_or(1).max(1)
        }
    }
}

/// An anomaly, as `on_anomaly` callbacks see it (the original's info dict).
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// The client.
    pub identifier: String,
    /// Its z-score.
    pub anomaly_score: f64,
    /// Its current rate, requests per minute.
    pub current_rate: f64,
    /// Its learned rate.
    pub expected_rate: f64,
    /// When.
    pub at: Nanos,
}

/// A client's profile as shown (the original's `get_user_profile` dict).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UserProfile {
    /// The client.
    pub identifier: String,
    /// Its first request.
    pub first_seen: Nanos,
    /// Its latest request.
    pub last_seen: Nanos,
    /// Days since its first request.
    pub age_days: f64,
    /// Requests seen.
    pub request_count: u64,
    /// The learned rate, requests per minute.
    pub mean_rate: f64,
    /// The spread of its recent rates.
    pub std_rate: f64,
    /// Trust, 0 to 1.
    pub trust_score: f64,
    /// Requests refused for going over its limit.
    pub violation_count: u64,
    /// Requests at an anomalous rate.
    pub anomaly_count: u64,
    /// Whole days since its last violation or anomaly (or its first request).
    pub good_behavior_days: u64,
    /// Its limit now, when not anomalous.
    pub current_limit: u64,
    /// What the application told about it (bounded).
    pub metadata: Map<String, Value>,
}

/// Counts since the start (the original's `get_statistics`), and the profiles kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveStatistics {
    /// Adaptive checks.
    pub total_requests: u64,
    /// Checks at an anomalous rate.
    pub anomalies_detected: u64,
    /// Checks whose limit differed from the base limit.
    pub limits_adjusted: u64,
    /// Profiles made (a client forgotten and seen again counts again).
    pub users_tracked: u64,
    /// Profiles kept now.
    pub profiles: u64,
    /// Of those, clients whose trust is below 0.3 ("untrusted" in the original's docs).
    pub low_trust: u64,
    /// The mean trust of the profiles kept (0 when there are none).
    pub mean_trust: f64,
    /// Callbacks that panicked (caught).
    pub callback_panics: u64,
}

/// Counts: a shard's (plain adds under the shard's lock), their sum, and the model file's
/// `stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Stats {
    total_requests: u64,
    anomalies_detected: u64,
    limits_adjusted: u64,
    users_tracked: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.total_requests += other.total_requests;
        self.anomalies_detected += other.anomalies_detected;
        self.limits_adjusted += other.limits_adjusted;
        self.users_tracked += other.users_tracked;
    }
}

type AnomalyCallback = Arc<dyn Fn(&Anomaly) + Send + Sync>;
type TrustCallback = Arc<dyn Fn(&str, f64) + Send + Sync>;

/// A change of trust larger than this is reported to `on_trust_change`, as in the original.
const TRUST_CHANGE: f64 = 0.05;

/// What the learning step before the check decided, and the profile's figures then.
struct Prepared {
    now: u64,
    limit: u64,
    anomaly_score: f64,
    anomalous: bool,
    anomaly: Option<Anomaly>,
    trust_score: f64,
    confidence: f64,
}

/// Limits that learn from each client's behaviour, enforced exactly by a [`Limiter`]'s engine.
/// Share it behind an `Arc`; clients in different shards are served in parallel.
pub struct AdaptiveLimiter<S: Store = MemoryStore> {
    settings: AdaptiveSettings,
    /// Requests per window → requests per minute.
    per_minute: f64,
    /// The recent-request count's slot width, nanoseconds.
    slot_width: u64,
    rule: RuleHandle<S>,
    profiles: Clients<Profile, Stats>,
    on_anomaly: RwLock<Vec<AnomalyCallback>>,
    on_trust_change: RwLock<Vec<TrustCallback>>,
    callback_panics: AtomicU64,
}

impl<S: Store> std::fmt::Debug for AdaptiveLimiter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveLimiter")
            .field("settings", &self.settings)
            .field("profiles", &self.profiles.len())
            .finish_non_exhaustive()
    }
}

impl<S: Store> AdaptiveLimiter<S> {
    /// An adaptive limiter enforcing its limits on `limiter` under the rule
    /// [`AdaptiveSettings::as_rule`] (added, or kept if the limiter has it already). The
    /// limiter's lists, metrics and violation callbacks apply to adaptive checks too.
    pub fn new(limiter: Limiter<S>, settings: AdaptiveSettings) -> Result<Self, AdaptiveError> {
        settings.validate()?;
        limiter.add_rule(settings.as_rule())?;
        let rule = limiter.rule_handle(&settings.rule)?;
        Ok(AdaptiveLimiter {
            per_minute: profile::per_minute(&settings),
            slot_width: slot_width(&settings),
            profiles: Clients::new(settings.max_profiles),
            settings,
            rule,
            on_anomaly: RwLock::default(),
            on_trust_change: RwLock::default(),
            callback_panics: AtomicU64::new(0),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &AdaptiveSettings {
        &self.settings
    }

    /// The limiter the limits are enforced on.
    pub fn limiter(&self) -> &Limiter<S> {
        self.rule.limiter()
    }

    /// The rule the limits are enforced under.
    pub fn rule(&self) -> &RuleHandle<S> {
        &self.rule
    }

    /// Calls `callback` for each anomalous request, after the check. A panic inside is caught
    /// and counted; it affects neither the check nor other callbacks.
    pub fn on_anomaly(&self, callback: impl Fn(&Anomaly) + Send + Sync + 'static) {
        self.on_anomaly.write().push(Arc::new(callback));
    }

    /// Calls `callback(identifier, trust)` when a client's trust changes by more than 0.05 (or
    /// is adjusted by hand). A panic inside is caught and counted.
    pub fn on_trust_change(&self, callback: impl Fn(&str, f64) + Send + Sync + 'static) {
        self.on_trust_change.write().push(Arc::new(callback));
    }

    /// Learns from one request of `identifier` (with optional `metadata` kept in its profile)
    /// and checks it at the client's adjusted limit.
    pub fn check<'a>(
        &'a self,
        identifier: &'a str,
        metadata: Option<&'a Map<String, Value>>,
    ) -> impl Future<Output = ratethrottle::Result<AdaptiveDecision>> + Send + 'a {
        self.check_n(identifier, 1, metadata)
    }

    /// [`AdaptiveLimiter::check`] for a request of `cost` units.
    pub fn check_n<'a>(
        &'a self,
        identifier: &'a str,
        cost: u64,
        metadata: Option<&'a Map<String, Value>>,
    ) -> impl Future<Output = ratethrottle::Result<AdaptiveDecision>> + Send + 'a {
        Check {
            adaptive: self,
            identifier,
            cost,
            metadata,
            waiting: None,
        }
    }

    /// The check for a store that must be awaited.
    async fn check_waiting(
        &self,
        identifier: &str,
        cost: u64,
        metadata: Option<&Map<String, Value>>,
    ) -> ratethrottle::Result<AdaptiveDecision> {
        let prepared = self.prepare(identifier, metadata);
        let status = self
            .rule
            .check_n_at_limit(identifier, cost, prepared.limit)
            .await;
        self.conclude(identifier, prepared, status)
    }

    /// [`AdaptiveLimiter::check`] answered without a future when the store can (the memory
    /// store always can); `None` means it must be awaited, and nothing was learned.
    pub fn check_now(
        &self,
        identifier: &str,
        metadata: Option<&Map<String, Value>>,
    ) -> Option<ratethrottle::Result<AdaptiveDecision>> {
        self.check_n_now(identifier, 1, metadata)
    }

    /// [`AdaptiveLimiter::check_n`] answered without a future when the store can.
    pub fn check_n_now(
        &self,
        identifier: &str,
        cost: u64,
        metadata: Option<&Map<String, Value>>,
    ) -> Option<ratethrottle::Result<AdaptiveDecision>> {
        if !self.limiter().store().answers_at_once() {
            return None;
        }
        let prepared = self.prepare(identifier, metadata);
        let status = self
            .rule
            .check_n_now_at_limit(identifier, cost, prepared.limit)
            .unwrap_or_else(|| Err(self.rule_gone()));
        Some(self.conclude(identifier, prepared, status))
    }

    /// The limit `identifier` has now (when not anomalous), without learning anything; the
    /// base limit's starting value for an unknown client.
    pub fn limit_for(&self, identifier: &str) -> u64 {
        let now = self.now();
        let mut locked = self.profiles.lock(identifier);
        match Clients::get_mut(&mut locked) {
            Some(profile) => profile.adjusted_limit(&self.settings, false, now),
            None => Profile::new(now).adjusted_limit(&self.settings, false, now),
        }
    }

    fn now(&self) -> u64 {
        self.limiter().now().as_nanos()
    }

    /// The error for a check whose rule left the limiter (a store that answers at once always
    /// answers a rule it has): a reload that dropped the adaptive rule.
    fn rule_gone(&self) -> ratethrottle::Error {
        ratethrottle::Error::UnknownRule {
            rule: self.rule.name().to_owned(),
            known: self.limiter().rules().into_iter().map(|r| r.name).collect(),
        }
    }

    /// The learning before the check: the original's `check_adaptive` up to the storage
    /// check, under the client's shard lock.
    fn prepare(&self, identifier: &str, metadata: Option<&Map<String, Value>>) -> Prepared {
        let settings = &self.settings;
        let now = self.now();
        let width = self.slot_width;
        let mut locked = self.profiles.lock(identifier);
        let (profile, stats, known) = self
            .profiles
            .get_or_insert(&mut locked, || Profile::new(now));
        stats.total_requests += 1;
        stats.users_tracked += u64::from(!known);
        let count = profile.recent.record(now, width);
        let rate = count as f64 * self.per_minute;
        let mut trust_change = None;
        if profile.observe(settings, now, count, self.per_minute) {
            trust_change = Some(profile.retrust(now));
        }
        if let Some(metadata) = metadata {
            profile.merge_metadata(metadata);
        }
        let anomaly_score = profile.anomaly_score(rate);
        let anomalous = anomaly_score > settings.anomaly_threshold;
        let mut anomaly = None;
        if anomalous {
            stats.anomalies_detected += 1;
            profile.anomaly_count += 1;
            profile.last_offence = now;
            anomaly = Some(Anomaly {
                identifier: identifier.to_owned(),
                anomaly_score,
                current_rate: rate,
                expected_rate: profile.mean_rate,
                at: Nanos::from_nanos(now),
            });
        }
        let limit = profile.adjusted_limit(settings, anomalous, now);
        if limit != settings.base_limit {
            stats.limits_adjusted += 1;
        }
        let (trust_score, confidence) = (profile.trust_score, profile.confidence());
        drop(locked);
        self.trust_changed(identifier, trust_change, trust_score);
        Prepared {
            now,
            limit,
            anomaly_score,
            anomalous,
            anomaly,
            trust_score,
            confidence,
        }
    }

    /// The learning after the check: a violation lowers trust (the only case that looks at
    /// the profile again); then the callbacks.
    fn conclude(
        &self,
        identifier: &str,
        prepared: Prepared,
        status: ratethrottle::Result<Status>,
    ) -> ratethrottle::Result<AdaptiveDecision> {
        let status = status?;
        let (mut trust_score, mut trust_change) = (prepared.trust_score, None);
        // Whitelisted and blacklisted clients are not the client's doing at this limit.
        if !status.allowed && !status.blocked {
            let now = prepared.now;
            let mut locked = self.profiles.lock(identifier);
            // A profile forgotten in between (reset_user, or a flood) has nothing to learn.
            if let Some(profile) = Clients::get_mut(&mut locked) {
                profile.violation_count += 1;
                profile.last_offence = now;
                trust_change = Some(profile.retrust(now));
                trust_score = profile.trust_score;
            }
        }
        if let Some(anomaly) = &prepared.anomaly {
            self.each_callback(&self.on_anomaly, |callback| callback(anomaly));
        }
        self.trust_changed(identifier, trust_change, trust_score);
        let reason = match (status.allowed, prepared.anomalous) {
            (true, _) => Reason::Allowed,
            (false, true) => Reason::AnomalyDetected,
            (false, false) => Reason::RateLimitExceeded,
        };
        Ok(AdaptiveDecision {
            status,
            adjusted_limit: prepared.limit,
            trust_score,
            anomaly_score: prepared.anomaly_score,
            confidence: prepared.confidence,
            reason,
            base_limit: self.settings.base_limit,
        })
    }

    /// Tells `on_trust_change` of a change larger than [`TRUST_CHANGE`].
    fn trust_changed(&self, identifier: &str, change: Option<f64>, trust: f64) {
        if change.is_some_and(|change| change.abs() > TRUST_CHANGE) {
            self.each_callback(&self.on_trust_change, |callback| {
                callback(identifier, trust)
            });
        }
    }

    /// Runs `run` on each callback of `list`, each isolated from the others' panics.
    fn each_callback<F: ?Sized>(&self, list: &RwLock<Vec<Arc<F>>>, run: impl Fn(&F)) {
        let callbacks = list.read().clone();
        for callback in callbacks {
            if catch_unwind(AssertUnwindSafe(|| run(&callback))).is_err() {
                self.callback_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!("an adaptive limiter callback panicked; the panic was caught");
            }
        }
    }

    /// Adds `adjustment` (−1 to 1) to `identifier`'s trust, kept within 0 to 1; its new trust,
    /// or `None` for an unknown client. Tells `on_trust_change`.
    pub fn update_trust_score(&self, identifier: &str, adjustment: f64) -> Option<f64> {
        let mut locked = self.profiles.lock(identifier);
        let profile = Clients::get_mut(&mut locked)?;
        let adjustment = if adjustment.is_finite() {
            adjustment
        } else {
            0.0
        };
        profile.trust_score = (profile.trust_score + adjustment).clamp(0.0, 1.0);
        let trust = profile.trust_score;
        drop(locked);
        self.each_callback(&self.on_trust_change, |callback| {
            callback(identifier, trust)
        });
        Some(trust)
    }

    /// `identifier`'s profile, if it has one.
    pub fn user_profile(&self, identifier: &str) -> Option<UserProfile> {
        let now = self.now();
        let mut locked = self.profiles.lock(identifier);
        let profile = Clients::get_mut(&mut locked)?;
        Some(self.view(identifier, profile, now))
    }

    fn view(&self, identifier: &str, profile: &Profile, now: u64) -> UserProfile {
        UserProfile {
            identifier: identifier.to_owned(),
            first_seen: Nanos::from_nanos(profile.first_seen),
            last_seen: Nanos::from_nanos(profile.last_seen),
            age_days: profile.age_days(now),
            request_count: profile.request_count,
            mean_rate: profile.mean_rate,
            std_rate: profile.std_rate,
            trust_score: profile.trust_score,
            violation_count: profile.violation_count,
            anomaly_count: profile.anomaly_count,
            good_behavior_days: profile.good_behavior_days(now),
            current_limit: profile.adjusted_limit(&self.settings, false, now),
            metadata: profile.metadata(),
        }
    }

    /// The `count` profiles with the lowest trust, lowest first (ties: most anomalies first).
    pub fn least_trusted(&self, count: usize) -> Vec<UserProfile> {
        let now = self.now();
        let mut all: Vec<UserProfile> = Vec::new();
        self.profiles.each_shard(|shard| {
            for entry in shard.entries() {
                all.push(self.view(&entry.id, &entry.value, now));
                if all.len() > count.saturating_mul(4).max(64) {
                    keep_least_trusted(&mut all, count);
                }
            }
        });
        keep_least_trusted(&mut all, count);
        all
    }

    /// Forgets `identifier`'s profile (its counts in the store stay); `true` if it had one.
    pub fn reset_user(&self, identifier: &str) -> bool {
        self.profiles.remove(identifier)
    }

    /// The counts so far and the profiles kept.
    pub fn statistics(&self) -> AdaptiveStatistics {
        let mut stats = AdaptiveStatistics {
            callback_panics: self.callback_panics.load(Ordering::Relaxed),
            ..AdaptiveStatistics::default()
        };
        let (mut trust_sum, mut counts) = (0.0, Stats::default());
        self.profiles.each_shard(|shard| {
            counts.add(&shard.data);
            for entry in shard.entries() {
                stats.profiles += 1;
                trust_sum += entry.value.trust_score;
                stats.low_trust += u64::from(entry.value.trust_score < 0.3);
            }
        });
        if stats.profiles > 0 {
            stats.mean_trust = trust_sum / stats.profiles as f64;
        }
        stats.total_requests = counts.total_requests;
        stats.anomalies_detected = counts.anomalies_detected;
        stats.limits_adjusted = counts.limits_adjusted;
        stats.users_tracked = counts.users_tracked;
        stats
    }

    /// Forgets every profile and sets the counts to zero.
    pub fn clear(&self) {
        self.profiles.clear();
        self.profiles
            .each_shard(|shard| shard.data = Stats::default());
    }

    /// Starts persisting the model as `persistence` says: loads the file now if asked and it
    /// exists, saves it every `save_every` and when the returned [`Saver`] is stopped or
    /// dropped. A file that cannot be loaded is an error (nothing is loaded); a missing one is
    /// a fresh start.
    pub fn persist(self: &Arc<Self>, persistence: Persistence) -> Result<Saver, AdaptiveError> {
        persist::start(self, persistence)
    }
}

type Waiting<'a> =
    Pin<Box<dyn Future<Output = ratethrottle::Result<AdaptiveDecision>> + Send + 'a>>;

/// The future of one adaptive check: on its first poll it decides at once when the store can
/// (the memory store), with no state machine in between (as the limiter's own checks do);
/// otherwise it awaits the store.
struct Check<'a, S: Store> {
    adaptive: &'a AdaptiveLimiter<S>,
    identifier: &'a str,
    cost: u64,
    metadata: Option<&'a Map<String, Value>>,
    waiting: Option<Waiting<'a>>,
}

impl<'a, S: Store> Future for Check<'a, S> {
    type Output = ratethrottle::Result<AdaptiveDecision>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.waiting.is_none() {
            let (adaptive, id, cost, metadata) =
                (this.adaptive, this.identifier, this.cost, this.metadata);
            if let Some(decided) = adaptive.check_n_now(id, cost, metadata) {
                return Poll::Ready(decided);
            }
            this.waiting = Some(Box::pin(adaptive.check_waiting(id, cost, metadata)));
        }
        match this.waiting.as_mut() {
            Some(future) => future.as_mut().poll(context),
            None => Poll::Pending,
        }
    }
}

/// Keeps the `count` least trusted of `all`, sorted.
fn keep_least_trusted(all: &mut Vec<UserProfile>, count: usize) {
    all.sort_by(|a, b| {
        a.trust_score
            .total_cmp(&b.trust_score)
            .then(b.anomaly_count.cmp(&a.anomaly_count))
            .then_with(|| a.identifier.cmp(&b.identifier))
    });
    all.truncate(count);
}

#[cfg(test)]
mod tests;
