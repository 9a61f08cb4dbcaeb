//! Fleet telemetry: each process publishes its counts and violations to Redis, so that
//! `ratethrottle metrics`, `stats` and `monitor` see the whole fleet.
//!
//! Keys (all in one cluster slot, tag `{telemetry}`), under the store's prefix:
//! `…{telemetry}:totals` (hash of counts, whole fleet and per rule), `…:rules` (hash: rule →
//! limit, window, strategy, scope), `…:sec:<unix second>` (hash: allowed, denied; kept 1 h),
//! `…:top:<unix minute>` (sorted set: violations per identifier; kept 1 h), `…:violations`
//! (list of the latest 200), `…:processes` (sorted set: process → last report), `…:reports`
//! (hash: `name|process` → a JSON report a process adds, such as the adaptive limiter's
//! figures, read for the processes reporting).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratethrottle::store::{Store, StoreError, StoreErrorKind};
use ratethrottle::{Limiter, Metrics, Rule, Violation};

use crate::RedisStore;

/// Violations kept in Redis (the newest).
const KEPT_VIOLATIONS: isize = 200;
/// How long per-second counts and per-minute top lists live.
const KEPT_SECONDS: i64 = 3600;
/// Violations buffered between two publications (more are counted but not listed).
const BUFFERED_VIOLATIONS: usize = 1000;
/// A process that has not reported for this long is no longer listed.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts since the previous look at a limiter's [`Metrics`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delta {
    /// Checks allowed.
    pub allowed: u64,
    /// Checks denied.
    pub denied: u64,
    /// Violations.
    pub violations: u64,
    /// Per rule: (rule, allowed, denied, violations), only rules with news.
    pub rules: Vec<(String, u64, u64, u64)>,
}

/// Turns successive [`Metrics`] snapshots into [`Delta`]s.
#[derive(Clone, Debug, Default)]
pub struct Deltas {
    allowed: u64,
    denied: u64,
    violations: u64,
    rules: HashMap<&'static str, (u64, u64, u64)>,
}

impl Deltas {
    /// What happened between the previous snapshot (none: the limiter's start) and `metrics`.
    /// Counters that went down (after `reset_metrics`) count from zero.
    pub fn next(&mut self, metrics: &Metrics) -> Delta {
        let since = |now: u64, before: u64| now.checked_sub(before).unwrap_or(now);
        let mut delta = Delta {
            allowed: since(metrics.allowed_requests, self.allowed),
            denied: since(metrics.blocked_requests, self.denied),
            violations: since(metrics.violations, self.violations),
            rules: Vec::new(),
        };
        (self.allowed, self.denied, self.violations) = (
            metrics.allowed_requests,
            metrics.blocked_requests,
            metrics.violations,
        );
        for rule in &metrics.rules {
            let before = self
                .rules
                .insert(rule.rule, (rule.allowed, rule.denied, rule.violations));
            let (a, d, v) = before.unwrap_or_default();
            let news = (
                since(rule.allowed, a),
                since(rule.denied, d),
                since(rule.violations, v),
            );
            if news != (0, 0, 0) {
                delta
                    .rules
                    .push((rule.rule.to_owned(), news.0, news.1, news.2));
            }
        }
        delta
    }
}

/// A violation as listed by the fleet telemetry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViolationRecord {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who.
    pub identifier: String,
    /// The rule exceeded.
    pub rule: String,
    /// The rule's limit.
    pub limit: u64,
    /// How long the client was told to wait, in milliseconds.
    pub retry_after_ms: u64,
}

impl ViolationRecord {
    /// A record of `identifier` exceeding `rule` (with its `limit`) at `at_ms`, told to wait
    /// `retry_after_ms`.
    pub fn new(
        at_ms: u64,
        identifier: impl Into<String>,
        rule: impl Into<String>,
        limit: u64,
        retry_after_ms: u64,
    ) -> Self {
        ViolationRecord {
            at_ms,
            identifier: identifier.into(),
            rule: rule.into(),
            limit,
            retry_after_ms,
        }
    }

    /// The record of `violation`.
    pub fn of(violation: &Violation) -> Self {
        ViolationRecord {
            at_ms: unix_millis(violation.at),
            identifier: violation.identifier.clone(),
            rule: violation.rule.to_owned(),
            limit: violation.limit,
            retry_after_ms: u64::try_from(violation.retry_after.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn encode(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.at_ms, self.rule, self.limit, self.retry_after_ms, self.identifier
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(5, '\t');
        Some(ViolationRecord {
            at_ms: parts.next()?.parse().ok()?,
            rule: parts.next()?.to_owned(),
            limit: parts.next()?.parse().ok()?,
            retry_after_ms: parts.next()?.parse().ok()?,
            identifier: parts.next()?.to_owned(),
        })
    }
}

/// The counts of one rule across the fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleTotals {
    /// The rule.
    pub rule: String,
    /// How it is defined, e.g. `"100 per 60s, sliding_counter, ip"` (empty if unknown).
    pub definition: String,
    /// Checks allowed.
    pub allowed: u64,
    /// Checks denied.
    pub denied: u64,
    /// Violations.
    pub violations: u64,
}

impl RuleTotals {
    /// `denied` as a percentage of all checks (0–100).
    pub fn block_rate(&self) -> f64 {
        percent(self.denied, self.allowed + self.denied)
    }
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Allowed and denied checks in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecondCounts {
    /// The Unix second.
    pub at: u64,
    /// Checks allowed in it.
    pub allowed: u64,
    /// Checks denied in it.
    pub denied: u64,
}

/// The most identifiers a snapshot kept in memory counts ([`FleetSnapshot::record`]): a
/// process that runs for months against random clients stays bounded.
pub const TOP_KEPT: usize = 500;

/// What a fleet (or one process) did: totals, per rule, per second, who is limited most, and
/// the latest violations.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct FleetSnapshot {
    /// When the snapshot was taken (Unix milliseconds).
    pub at_ms: u64,
    /// Checks allowed since the telemetry started.
    pub allowed: u64,
    /// Checks denied.
    pub denied: u64,
    /// Violations.
    pub violations: u64,
    /// Per rule, sorted by name.
    pub rules: Vec<RuleTotals>,
    /// The last seconds, oldest first, one entry per second (zeros included).
    pub per_second: Vec<SecondCounts>,
    /// Identifiers with the most violations in the last minutes, most first.
    pub top_limited: Vec<(String, u64)>,
    /// The latest violations, newest first.
    pub recent_violations: Vec<ViolationRecord>,
    /// The processes reporting (`host:pid`), for a fleet.
    pub processes: Vec<String>,
    /// The reports the processes added ([`Telemetry::report`]): (name, process, JSON text),
    /// sorted, for the processes reporting.
    pub reports: Vec<(String, String, String)>,
}

impl FleetSnapshot {
    /// The reports named `name`, one JSON text per process.
    pub fn reports_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.reports
            .iter()
            .filter(move |(report, _, _)| report == name)
            .map(|(_, _, json)| json.as_str())
    }
}

impl FleetSnapshot {
    /// All checks.
    pub fn total(&self) -> u64 {
        self.allowed + self.denied
    }

    /// `denied` as a percentage of all checks (0–100).
    pub fn block_rate(&self) -> f64 {
        percent(self.denied, self.total())
    }

    /// Adds `delta` and `violations` that happened in the Unix second `second` (for a
    /// snapshot kept in memory, e.g. a simulated load), keeping `seconds` of history and the
    /// `keep` newest violations.
    pub fn record(
        &mut self,
        second: u64,
        delta: &Delta,
        violations: &[ViolationRecord],
        seconds: usize,
        keep: usize,
    ) {
        self.at_ms = second * 1000;
        self.allowed += delta.allowed;
        self.denied += delta.denied;
        self.violations += delta.violations;
        for (name, allowed, denied, violated) in &delta.rules {
            let index = match self.rules.binary_search_by(|r| r.rule.as_str().cmp(name)) {
                Ok(i) => i,
                Err(i) => {
                    self.rules.insert(
                        i,
                        RuleTotals {
                            rule: name.clone(),
                            ..RuleTotals::default()
                        },
                    );
                    i
                }
            };
            let rule = &mut self.rules[index];
            rule.allowed += allowed;
            rule.denied += denied;
            rule.violations += violated;
        }
        let first = second.saturating_sub(seconds as u64 - 1);
        self.per_second.retain(|s| s.at >= first);
        match self.per_second.last_mut() {
            Some(last) if last.at == second => {
                last.allowed += delta.allowed;
                last.denied += delta.denied;
            }
            _ => self.per_second.push(SecondCounts {
                at: second,
                allowed: delta.allowed,
                denied: delta.denied,
            }),
        }
        for v in violations {
            let known = self
                .top_limited
                .iter()
                .position(|(id, _)| *id == v.identifier);
            match known {
                Some(i) => self.top_limited[i].1 += 1,
                None if self.top_limited.len() < TOP_KEPT => {
                    self.top_limited.push((v.identifier.clone(), 1));
                }
                None => {
                    // Full: the least counted gives way and its count carries over (the
                    // space-saving sketch), so a heavy newcomer still rises.
                    if let Some(least) = self.top_limited.iter_mut().min_by_key(|(_, count)| *count)
                    {
                        *least = (v.identifier.clone(), least.1 + 1);
                    }
                }
            }
            self.recent_violations.insert(0, v.clone());
        }
        self.top_limited
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.recent_violations.truncate(keep);
    }
}

/// The violations of a limiter, caught by a violation callback and held (at most 1000) until
/// taken.
#[derive(Debug, Default)]
pub struct ViolationSink(parking_lot::Mutex<VecDeque<ViolationRecord>>);

impl ViolationSink {
    /// A sink fed by a violation callback on `limiter`.
    pub fn attach<S: Store>(limiter: &Limiter<S>) -> Arc<Self> {
        let sink = Arc::new(ViolationSink::default());
        let feed = Arc::clone(&sink);
        limiter.on_violation(move |violation| {
            let mut held = feed.0.lock();
            if held.len() < BUFFERED_VIOLATIONS {
                held.push_back(ViolationRecord::of(violation));
            }
        });
        sink
    }

    /// The violations held, oldest first; the sink is empty afterwards.
    pub fn take(&self) -> Vec<ViolationRecord> {
        self.0.lock().drain(..).collect()
    }

    /// Returns `taken` (from [`ViolationSink::take`]) to the front, keeping the bound.
    fn put_back(&self, taken: Vec<ViolationRecord>) {
        let mut held = self.0.lock();
        for record in taken.into_iter().rev() {
            held.push_front(record);
        }
        held.truncate(BUFFERED_VIOLATIONS);
    }
}

/// How a rule is shown in telemetry: `"100 per 60s, sliding_counter, ip"`.
pub fn rule_definition(rule: &Rule) -> String {
    format!(
        "{} per {:?}, {}, {}",
        rule.limit, rule.window, rule.strategy, rule.scope
    )
}

/// A report a process adds to its telemetry: a name and what makes its JSON text.
type Report = (String, Arc<dyn Fn() -> String + Send + Sync>);

/// Publishes one limiter's counts and violations to Redis (see the module docs for the keys).
pub struct Telemetry {
    store: RedisStore,
    process: String,
    /// Held through a publication: two at once would send the same counts twice.
    deltas: tokio::sync::Mutex<Deltas>,
    violations: Arc<ViolationSink>,
    reports: parking_lot::Mutex<Vec<Report>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("process", &self.process)
            .field("reports", &self.reports.lock().len())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Starts collecting `limiter`'s violations (a violation callback) for publication to
    /// `store`'s Redis. Counts are taken from the limiter's metrics at each publication.
    pub fn attach<S: Store>(limiter: &Limiter<S>, store: &RedisStore) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
        Telemetry {
            store: store.clone(),
            process: format!("{host}:{}", std::process::id()),
            deltas: tokio::sync::Mutex::default(),
            violations: ViolationSink::attach(limiter),
            reports: parking_lot::Mutex::default(),
        }
    }

    /// Adds a report named `name` to every publication: the JSON text `make` returns then
    /// (e.g. the adaptive limiter's figures, which `ratethrottle stats` and `monitor` show).
    /// A report of the same name is replaced.
    pub fn report(
        &self,
        name: impl Into<String>,
        make: impl Fn() -> String + Send + Sync + 'static,
    ) {
        let name = name.into();
        let mut reports = self.reports.lock();
        reports.retain(|(known, _)| *known != name);
        reports.push((name, Arc::new(make)));
    }

    /// Sends what happened since the last publication, in one pipeline.
    pub async fn publish<S: Store>(&self, limiter: &Limiter<S>) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let (second, now_ms) = (unix_millis(now) / 1000, unix_millis(now));
        // Counts and violations are only taken once Redis has them.
        let mut published = self.deltas.lock().await;
        let mut deltas = published.clone();
        let delta = deltas.next(&limiter.metrics());
        let violations = self.violations.take();
        let key = |name: &str| self.store.telemetry_key(name);
        let mut pipe = redis::pipe();
        let totals = key("totals");
        for (field, count) in [
            ("allowed", delta.allowed),
            ("denied", delta.denied),
            ("violations", delta.violations),
        ] {
            if count > 0 {
                pipe.hincr(&totals, field, count).ignore();
            }
        }
        for (rule, allowed, denied, violated) in &delta.rules {
            for (what, count) in [
                ("allowed", allowed),
                ("denied", denied),
                ("violations", violated),
            ] {
                if *count > 0 {
                    pipe.hincr(&totals, format!("rule:{rule}:{what}"), *count)
                        .ignore();
                }
            }
        }
        let definitions: Vec<(String, String)> = limiter
            .rules()
            .iter()
            .map(|r| (r.name.clone(), rule_definition(r)))
            .collect();
        if !definitions.is_empty() {
            pipe.hset_multiple(key("rules"), &definitions).ignore();
        }
        let this_second = key(&format!("sec:{second}"));
        pipe.hincr(&this_second, "allowed", delta.allowed).ignore();
        pipe.hincr(&this_second, "denied", delta.denied).ignore();
        pipe.expire(&this_second, KEPT_SECONDS).ignore();
        if !violations.is_empty() {
            let top = key(&format!("top:{}", second / 60));
            for v in &violations {
                pipe.lpush(key("violations"), v.encode()).ignore();
                pipe.zincr(&top, &v.identifier, 1).ignore();
            }
            pipe.expire(&top, KEPT_SECONDS).ignore();
            pipe.ltrim(key("violations"), 0, KEPT_VIOLATIONS - 1)
                .ignore();
        }
        let reports: Vec<Report> = self.reports.lock().clone();
        for (name, make) in reports {
            let field = format!("{name}|{}", self.process);
            pipe.hset(key("reports"), field, make()).ignore();
        }
        let processes = key("processes");
        pipe.zadd(&processes, &self.process, now_ms).ignore();
        let stale = now_ms.saturating_sub(PROCESS_TIMEOUT.as_millis() as u64 * 6);
        pipe.zrembyscore(&processes, 0, stale).ignore();
        let mut connection = self.store.connection();
        let sent = self
            .store
            .run_slow(pipe.query_async::<()>(&mut connection))
            .await;
        match sent {
            Ok(()) => *published = deltas,
            Err(_) => self.violations.put_back(violations),
        }
        sent
    }

    /// Publishes every `every` until the returned task is aborted (or the runtime stops).
    /// Failures are logged and retried at the next tick; counts are
    /// never lost, only late.
    pub fn spawn<S: Store>(
        self: Arc<Self>,
        limiter: Limiter<S>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.publish(&limiter).await {
                    tracing::warn!(%error, "could not publish telemetry to Redis; will retry");
                }
            }
        })
    }
}

/// Reads what the fleet sharing `store`'s Redis and prefix published: totals, the last
/// `seconds` seconds, the top limited identifiers of the last 5 minutes and the latest
/// violations.
pub async fn read_fleet(store: &RedisStore, seconds: u64) -> Result<FleetSnapshot, StoreError> {
    let now_ms = unix_millis(SystemTime::now());
    let second = now_ms / 1000;
    let key = |name: &str| store.telemetry_key(name);
    let first = second.saturating_sub(seconds.max(1) - 1);
    let minutes: Vec<u64> = (0..5).map(|m| second / 60 - m).collect();
    let mut pipe = redis::pipe();
    pipe.hgetall(key("totals"));
    pipe.hgetall(key("rules"));
    for s in first..=second {
        pipe.hmget(key(&format!("sec:{s}")), &["allowed", "denied"]);
    }
    for m in &minutes {
        pipe.zrevrange_withscores(key(&format!("top:{m}")), 0, 49);
    }
    pipe.lrange(key("violations"), 0, 49);
    pipe.zrangebyscore(
        key("processes"),
        now_ms.saturating_sub(PROCESS_TIMEOUT.as_millis() as u64),
        "+inf",
    );
    pipe.hgetall(key("reports"));
    let mut connection = store.connection();
    let mut replies: VecDeque<redis::Value> = store
        .run_slow(pipe.query_async::<Vec<redis::Value>>(&mut connection))
        .await?
        .into();
    let mut next = || replies.pop_front().unwrap_or(redis::Value::Nil);
    let bad = |e: redis::ParsingError| {
        StoreError::new(
            StoreErrorKind::Protocol,
            format!(
                "unexpected telemetry reply from redis at {}: {e}",
                store.address()
            ),
        )
    };
    let totals: HashMap<String, u64> = redis::from_redis_value(next()).map_err(bad)?;
    let definitions: HashMap<String, String> = redis::from_redis_value(next()).map_err(bad)?;
    let mut snapshot = FleetSnapshot {
        at_ms: now_ms,
        allowed: totals.get("allowed").copied().unwrap_or(0),
        denied: totals.get("denied").copied().unwrap_or(0),
        violations: totals.get("violations").copied().unwrap_or(0),
        ..FleetSnapshot::default()
    };
    let mut rules: HashMap<&str, RuleTotals> = HashMap::new();
    for (field, count) in &totals {
        let Some((rule, what)) = field
            .strip_prefix("rule:")
            .and_then(|rest| rest.rsplit_once(':'))
        else {
            continue;
        };
        let entry = rules.entry(rule).or_insert_with(|| RuleTotals {
            rule: rule.to_owned(),
            ..RuleTotals::default()
        });
        match what {
            "allowed" => entry.allowed = *count,
            "denied" => entry.denied = *count,
            "violations" => entry.violations = *count,
            _ => {}
        }
    }
    for (rule, definition) in &definitions {
        rules
            .entry(rule)
            .or_insert_with(|| RuleTotals {
                rule: rule.clone(),
                ..RuleTotals::default()
            })
            .definition = definition.clone();
    }
    snapshot.rules = rules.into_values().collect();
    snapshot.rules.sort_by(|a, b| a.rule.cmp(&b.rule));
    for at in first..=second {
        let counts: Vec<Option<u64>> = redis::from_redis_value(next()).map_err(bad)?;
        snapshot.per_second.push(SecondCounts {
            at,
            allowed: counts.first().copied().flatten().unwrap_or(0),
            denied: counts.get(1).copied().flatten().unwrap_or(0),
        });
    }
    let mut top: HashMap<String, u64> = HashMap::new();
    for _ in &minutes {
        let entries: Vec<(String, f64)> = redis::from_redis_value(next()).map_err(bad)?;
        for (identifier, score) in entries {
            *top.entry(identifier).or_default() += score as u64;
        }
    }
    snapshot.top_limited = top.into_iter().collect();
    snapshot
        .top_limited
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    snapshot.top_limited.truncate(50);
    let violations: Vec<String> = redis::from_redis_value(next()).map_err(bad)?;
    snapshot.recent_violations = violations
        .iter()
        .filter_map(|v| ViolationRecord::decode(v))
        .collect();
    snapshot.processes = redis::from_redis_value(next()).map_err(bad)?;
    let reports: HashMap<String, String> = redis::from_redis_value(next()).map_err(bad)?;
    snapshot.reports = reports
        .into_iter()
        .filter_map(|(field, json)| {
            let (name, process) = field.split_once('|')?;
            let live = snapshot.processes.iter().any(|p| p == process);
            live.then(|| (name.to_owned(), process.to_owned(), json))
        })
        .collect();
    snapshot.reports.sort();
    Ok(snapshot)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_records_survive_encoding_with_odd_identifiers() {
        let record = ViolationRecord {
            at_ms: 1_790_000_000_123,
            identifier: "user\twith tab:and colon".to_owned(),
            rule: "api".to_owned(),
            limit: 100,
            retry_after_ms: 1500,
        };
        assert_eq!(ViolationRecord::decode(&record.encode()), Some(record));
        assert_eq!(ViolationRecord::decode("garbage"), None);
    }

    #[test]
    fn a_snapshot_in_memory_keeps_its_window() {
        let mut snapshot = FleetSnapshot::default();
        let delta = Delta {
            allowed: 3,
            denied: 1,
            violations: 1,
            rules: vec![("api".to_owned(), 3, 1, 1)],
        };
        let v = ViolationRecord {
            at_ms: 0,
            identifier: "x".to_owned(),
            rule: "api".to_owned(),
            limit: 3,
            retry_after_ms: 10,
        };
        for second in 100..110 {
            snapshot.record(second, &delta, std::slice::from_ref(&v), 5, 3);
        }
        assert_eq!(snapshot.per_second.len(), 5);
        assert_eq!(snapshot.per_second[0].at, 105);
        assert_eq!((snapshot.allowed, snapshot.denied), (30, 10));
        assert_eq!(snapshot.rules[0].block_rate(), 25.0);
        assert_eq!(snapshot.top_limited, [("x".to_owned(), 10)]);
        assert_eq!(snapshot.recent_violations.len(), 3);
    }

    #[test]
    fn a_snapshot_in_memory_counts_a_bounded_number_of_identifiers() {
        let mut snapshot = FleetSnapshot::default();
        let violation = |identifier: String| ViolationRecord {
            at_ms: 0,
            identifier,
            rule: "api".to_owned(),
            limit: 1,
            retry_after_ms: 1,
        };
        // A flood of distinct clients, and one heavy hitter arriving late.
        for second in 0..20 {
            let round: Vec<_> = (0..1000)
                .map(|i| violation(format!("10.{second}.{}.{}", i / 256, i % 256)))
                .collect();
            snapshot.record(second, &Delta::default(), &round, 60, 10);
        }
        for second in 20..25 {
            let heavy = vec![violation("203.0.113.9".to_owned()); 50];
            snapshot.record(second, &Delta::default(), &heavy, 60, 10);
        }
        assert!(snapshot.top_limited.len() <= TOP_KEPT);
        assert_eq!(snapshot.top_limited[0].0, "203.0.113.9");
    }
}
