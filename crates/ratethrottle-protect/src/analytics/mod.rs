//! Analytics: a bounded record of rate-limit decisions and violations, with the original
//! RateThrottle's queries (top violators, a violation timeline, per-rule statistics, a
//! summary) and its JSON and CSV exports.
//!
//! ```
//! use ratethrottle::clock::Nanos;
//! use ratethrottle_protect::analytics::{Analytics, AnalyticsSettings, ViolationRecord};
//!
//! let analytics = Analytics::new(AnalyticsSettings::default())?;
//! let now = Nanos::from_secs(1_767_225_600);
//! analytics.record_request("192.168.1.1", "api", true, None, now);
//! analytics.record_request("192.168.1.100", "api", false, None, now);
//! analytics.record_violation(ViolationRecord::new("192.168.1.100", "api", now));
//! let top = analytics.top_violators(10, None, now);
//! assert_eq!(top, [("192.168.1.100".to_owned(), 1)]);
//! assert_eq!(analytics.summary().total_requests, 2);
//! # Ok::<(), ratethrottle_protect::analytics::AnalyticsError>(())
//! ```
//!
//! What is kept is bounded by `max_history` (the oldest records go first). Identifiers are
//! kept as given and sanitized on the way out (exports, [`Analytics::requests`]) when
//! `sanitize_data` is on; secrets in metadata are redacted as they are recorded.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use ecow::EcoString;
use hashbrown::HashMap;
use parking_lot::Mutex;
use ratethrottle::clock::Nanos;
use serde_json::{Map, Value, json};

use crate::nanos;

mod export;
mod sanitize;
mod time_format;

pub use export::{rule_statistics_json, summary_json};
pub use sanitize::{REDACTED, sanitize_identifier, sanitize_metadata};
pub use time_format::{Granularity, iso_timestamp};

type Hasher = foldhash::fast::FixedState;
type StrSet<'a> = hashbrown::HashSet<&'a str, Hasher>;

/// Metadata of a request or violation: JSON values by name.
pub type Metadata = Map<String, Value>;

/// A setting out of range, or an export that could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    /// `max_history` must be at least 1.
    #[error("analytics.max_history must be at least 1, got {0}")]
    MaxHistory(usize),
    /// A report or CSV file could not be written.
    #[error("could not export to {path}: {message}")]
    Export {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// `data_type` is neither `violations` nor `requests`.
    #[error("data_type must be \"violations\" or \"requests\", got {0:?}")]
    DataType(String),
}

/// How analytics record (the original's `RateThrottleAnalytics` arguments, with its defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnalyticsSettings {
    /// The most requests kept, and the most violations kept.
    pub max_history: usize,
    /// Keep each request's metadata.
    pub enable_metadata: bool,
    /// Mask identifiers in what goes out and redact secrets in metadata.
    pub sanitize_data: bool,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            max_history: 10_000,
            enable_metadata: true,
            sanitize_data: true,
        }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// When it was made.
    pub at: Nanos,
    /// Who asked (as given).
    pub identifier: EcoString,
    /// The rule that decided.
    pub rule: EcoString,
    /// Whether it was admitted.
    pub allowed: bool,
    /// What the caller attached (secrets redacted when sanitizing).
    pub metadata: Option<Box<Metadata>>,
}

/// One violation (the original's `RateThrottleViolation` fields).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ViolationRecord {
    /// When it happened (`None` when the caller's timestamp could not be read; such a
    /// violation is left out of the time-bound queries, as in the original).
    pub at: Option<Nanos>,
    /// Who exceeded the limit (as given).
    pub identifier: String,
    /// The rule exceeded.
    pub rule_name: String,
    /// Requests made.
    pub requests_made: u64,
    /// The rule's limit.
    pub limit: u64,
    /// When the block ends, as the caller wrote it (ISO 8601), if any.
    pub blocked_until: Option<String>,
    /// Seconds until a retry may pass.
    pub retry_after: u64,
    /// What the identifier stands for (`ip`, `user`, ...).
    pub scope: String,
    /// What the caller attached (secrets redacted when sanitizing).
    pub metadata: Metadata,
    /// Any other fields of a violation given as a mapping, kept and exported as given.
    pub extra: Metadata,
}

impl ViolationRecord {
    /// A violation of `rule_name` by `identifier` at `at`, the other fields empty.
    pub fn new(identifier: &str, rule_name: &str, at: Nanos) -> Self {
        ViolationRecord {
            at: Some(at),
            identifier: identifier.to_owned(),
            rule_name: rule_name.to_owned(),
            requests_made: 0,
            limit: 0,
            blocked_until: None,
            retry_after: 0,
            scope: String::new(),
            metadata: Metadata::new(),
            extra: Metadata::new(),
        }
    }

    /// The record of a limiter's violation.
    pub fn of(violation: &ratethrottle::Violation) -> Self {
        let mut record = ViolationRecord::new(
            &violation.identifier,
            violation.rule,
            Nanos::from_system_time(violation.at),
        );
        record.requests_made = violation.limit.saturating_add(violation.cost);
        record.limit = violation.limit;
        record.blocked_until = violation
            .blocked_until
            .map(|until| iso_timestamp(Nanos::from_system_time(until)));
        record.retry_after = violation.retry_after.as_secs_f64().ceil() as u64;
        record.scope = violation.scope.as_str().to_owned();
        record
    }
}

/// Per-rule counts over the requests held.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RuleStatistics {
    /// Requests decided by the rule.
    pub total_requests: u64,
    /// Of those, admitted.
    pub allowed: u64,
    /// Of those, refused.
    pub blocked: u64,
    /// Refused, in percent of the total.
    pub violation_rate: f64,
    /// Distinct identifiers.
    pub unique_identifiers: u64,
}

/// Totals since the start (or the last reset).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Summary {
    /// Requests recorded.
    pub total_requests: u64,
    /// Violations recorded.
    pub total_violations: u64,
    /// Distinct identifiers among the requests held (at most `max_history`).
    pub unique_identifiers: u64,
    /// Distinct identifiers refused at least once among the requests held.
    pub blocked_identifiers: u64,
    /// Violations in percent of requests.
    pub violation_rate: f64,
    /// The rule that decided the most requests.
    pub most_triggered_rule: Option<String>,
    /// Requests held.
    pub requests_stored: u64,
    /// Violations held.
    pub violations_stored: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: VecDeque<RequestRecord>,
    violations: VecDeque<ViolationRecord>,
    total_requests: u64,
    total_violations: u64,
    /// Requests per rule, all time.
    rules_triggered: RuleCounts,
}

/// Counts by rule name: a short list scanned in order (a policy has a few rules), with an
/// index once there are many.
#[derive(Debug, Default)]
struct RuleCounts {
    counts: Vec<(EcoString, u64)>,
    index: HashMap<EcoString, usize, Hasher>,
}

impl RuleCounts {
    /// Rules past which names are looked up in the index.
    const SCANNED: usize = 8;

    fn bump(&mut self, rule: &EcoString) {
        let found = if self.counts.len() <= Self::SCANNED {
            self.counts.iter().position(|(name, _)| name == rule)
        } else {
            self.index.get(rule.as_str()).copied()
        };
        match found {
            Some(at) => self.counts[at].1 += 1,
            None => {
                self.counts.push((rule.clone(), 1));
                if self.counts.len() > Self::SCANNED {
                    if self.index.is_empty() {
                        let names = self.counts.iter().enumerate();
                        self.index = names.map(|(at, (name, _))| (name.clone(), at)).collect();
                    } else {
                        self.index.insert(rule.clone(), self.counts.len() - 1);
                    }
                }
            }
        }
    }

    /// The rule counted most (ties: the name first in order).
    fn most(&self) -> Option<&EcoString> {
        // `max_by_key` keeps the last of equals: over the reversed list, the first.
        self.counts
            .iter()
            .rev()
            .max_by_key(|(_, count)| *count)
            .map(|(rule, _)| rule)
    }
}

/// A bounded record of decisions and violations. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Analytics {
    settings: AnalyticsSettings,
    inner: Mutex<Inner>,
}

impl Analytics {
    /// Analytics with `settings`; `max_history` 0 is an error.
    pub fn new(settings: AnalyticsSettings) -> Result<Self, AnalyticsError> {
        if settings.max_history == 0 {
            return Err(AnalyticsError::MaxHistory(0));
        }
        Ok(Analytics {
            settings,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &AnalyticsSettings {
        &self.settings
    }

    /// Records a decision of `rule` on `identifier` at `at`.
    pub fn record_request(
        &self,
        identifier: &str,
        rule: &str,
        allowed: bool,
        metadata: Option<Metadata>,
        at: Nanos,
    ) {
        let metadata = metadata
            .filter(|m| self.settings.enable_metadata && !m.is_empty())
            .map(|m| Box::new(self.clean(m)));
        let record = RequestRecord {
            at,
            identifier: identifier.into(),
            rule: rule.into(),
            allowed,
            metadata,
        };
        let mut inner = self.inner.lock();
        inner.total_requests += 1;
        inner.rules_triggered.bump(&record.rule);
        if inner.requests.len() == self.settings.max_history {
            inner.requests.pop_front();
        }
        inner.requests.push_back(record);
    }

    /// Records a violation.
    pub fn record_violation(&self, mut violation: ViolationRecord) {
        if !violation.metadata.is_empty() {
            violation.metadata = self.clean(std::mem::take(&mut violation.metadata));
        }
        let mut inner = self.inner.lock();
        inner.total_violations += 1;
        if inner.violations.len() == self.settings.max_history {
            inner.violations.pop_front();
        }
        inner.violations.push_back(violation);
    }

    fn clean(&self, metadata: Metadata) -> Metadata {
        if self.settings.sanitize_data {
            sanitize_metadata(metadata)
        } else {
            metadata
        }
    }

    /// The identifier as it goes out: sanitized when `sanitize_data` is on.
    pub fn shown(&self, identifier: &str) -> String {
        if self.settings.sanitize_data {
            sanitize_identifier(identifier)
        } else {
            identifier.to_owned()
        }
    }

    /// The `limit` identifiers with the most violations held (within `time_window` before
    /// `now` when given), most first; ties in the order first seen. Identifiers as given.
    pub fn top_violators(
        &self,
        limit: usize,
        time_window: Option<Duration>,
        now: Nanos,
    ) -> Vec<(String, u64)> {
        let cutoff = time_window.map(|window| now.as_nanos().saturating_sub(nanos(window)));
        let inner = self.inner.lock();
        let mut order: Vec<(&str, u64)> = Vec::new();
        let mut index: HashMap<&str, usize, Hasher> = HashMap::default();
        for violation in &inner.violations {
            if let Some(cutoff) = cutoff {
                match violation.at {
                    Some(at) if at.as_nanos() > cutoff => {}
                    _ => continue,
                }
            }
            let slot = *index
                .entry(violation.identifier.as_str())
                .or_insert_with(|| {
                    order.push((violation.identifier.as_str(), 0));
                    order.len() - 1
                });
            order[slot].1 += 1;
        }
        order.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        order
            .into_iter()
            .take(limit)
            .map(|(id, count)| (id.to_owned(), count))
            .collect()
    }

    /// Violations per period (`granularity`) within the `hours` before `now`, by period
    /// label (UTC, as `2026-01-15 10:00`), in order.
    pub fn violation_timeline(
        &self,
        hours: u64,
        granularity: Granularity,
        now: Nanos,
    ) -> Vec<(String, u64)> {
        let cutoff = now
            .as_nanos()
            .saturating_sub(hours.saturating_mul(3600 * 1_000_000_000));
        let inner = self.inner.lock();
        let mut periods: std::collections::BTreeMap<String, u64> = Default::default();
        for at in inner.violations.iter().filter_map(|v| v.at) {
            if at.as_nanos() > cutoff {
                *periods.entry(granularity.label(at)).or_default() += 1;
            }
        }
        periods.into_iter().collect()
    }

    /// Counts per rule over the requests held, rules in the order first seen.
    pub fn rule_statistics(&self) -> Vec<(String, RuleStatistics)> {
        let inner = self.inner.lock();
        let mut rules: Vec<(&str, RuleStatistics, StrSet<'_>)> = Vec::new();
        for request in &inner.requests {
            let slot = match rules.iter().position(|(rule, ..)| *rule == request.rule) {
                Some(slot) => slot,
                None => {
                    let empty = RuleStatistics {
                        total_requests: 0,
                        allowed: 0,
                        blocked: 0,
                        violation_rate: 0.0,
                        unique_identifiers: 0,
                    };
                    rules.push((request.rule.as_str(), empty, Default::default()));
                    rules.len() - 1
                }
            };
            let (_, stats, identifiers) = &mut rules[slot];
            stats.total_requests += 1;
            if request.allowed {
                stats.allowed += 1;
            } else {
                stats.blocked += 1;
            }
            identifiers.insert(request.identifier.as_str());
        }
        rules
            .into_iter()
            .map(|(rule, mut stats, identifiers)| {
                stats.violation_rate = stats.blocked as f64 / stats.total_requests as f64 * 100.0;
                stats.unique_identifiers = identifiers.len() as u64;
                (rule.to_owned(), stats)
            })
            .collect()
    }

    /// The totals.
    pub fn summary(&self) -> Summary {
        let inner = self.inner.lock();
        let mut seen = StrSet::default();
        let mut refused = StrSet::default();
        for request in &inner.requests {
            seen.insert(&request.identifier);
            if !request.allowed {
                refused.insert(&request.identifier);
            }
        }
        let most_triggered_rule = inner.rules_triggered.most().map(|rule| rule.to_string());
        Summary {
            total_requests: inner.total_requests,
            total_violations: inner.total_violations,
            unique_identifiers: seen.len() as u64,
            blocked_identifiers: refused.len() as u64,
            violation_rate: if inner.total_requests > 0 {
                inner.total_violations as f64 / inner.total_requests as f64 * 100.0
            } else {
                0.0
            },
            most_triggered_rule,
            requests_stored: inner.requests.len() as u64,
            violations_stored: inner.violations.len() as u64,
        }
    }

    /// The requests held, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().requests.iter().cloned().collect()
    }

    /// The violations held, oldest first.
    pub fn violations(&self) -> Vec<ViolationRecord> {
        self.inner.lock().violations.iter().cloned().collect()
    }

    /// The requests or the violations held as they are exported (JSON objects, oldest
    /// first, identifiers sanitized when `sanitize_data` is on).
    pub fn records(&self, data: DataType) -> Vec<Value> {
        let inner = self.inner.lock();
        match data {
            DataType::Requests => inner
                .requests
                .iter()
                .map(|r| export::request_json(self, r))
                .collect(),
            DataType::Violations => inner
                .violations
                .iter()
                .map(|v| export::violation_json(self, v))
                .collect(),
        }
    }

    /// Drops the records older than `days` days before `now` (and violations with no
    /// readable time); how many were dropped.
    pub fn clear_old_data(&self, days: u64, now: Nanos) -> u64 {
        let cutoff = now
            .as_nanos()
            .saturating_sub(days.saturating_mul(86_400 * 1_000_000_000));
        let mut inner = self.inner.lock();
        let before = inner.requests.len() + inner.violations.len();
        inner.requests.retain(|r| r.at.as_nanos() > cutoff);
        inner
            .violations
            .retain(|v| v.at.is_some_and(|at| at.as_nanos() > cutoff));
        (before - inner.requests.len() - inner.violations.len()) as u64
    }

    /// Forgets everything.
    pub fn reset(&self) {
        *self.inner.lock() = Inner::default();
    }

    /// The original's report (`generated_at`, `configuration`, `summary`, `top_violators`,
    /// `violation_timeline_24h`, `violation_timeline_7d`, `rule_statistics`, and with
    /// `include_raw_data` the last 1,000 requests and 500 violations as `raw_data`).
    pub fn report(&self, include_raw_data: bool, now: Nanos) -> Value {
        let timeline = |hours, granularity| {
            self.violation_timeline(hours, granularity, now)
                .into_iter()
                .map(|(period, count)| (period, Value::from(count)))
                .collect::<Map<_, _>>()
        };
        let top: Vec<Value> = self
            .top_violators(20, None, now)
            .into_iter()
            .map(|(identifier, count)| {
                json!({"identifier": self.shown(&identifier), "violations": count, "count": count})
            })
            .collect();
        let rules: Map<String, Value> = self
            .rule_statistics()
            .into_iter()
            .map(|(rule, stats)| (rule, export::rule_statistics_json(&stats)))
            .collect();
        let mut report = json!({
            "generated_at": iso_timestamp(now),
            "configuration": {
                "max_history": self.settings.max_history,
                "metadata_enabled": self.settings.enable_metadata,
                "data_sanitized": self.settings.sanitize_data,
            },
            "summary": export::summary_json(&self.summary()),
            "top_violators": top,
            "violation_timeline_24h": timeline(24, Granularity::Hour),
            "violation_timeline_7d": timeline(168, Granularity::Day),
            "rule_statistics": rules,
        });
        if include_raw_data {
            let inner = self.inner.lock();
            let last = |len: usize, keep: usize| len.saturating_sub(keep);
            let requests: Vec<Value> = inner
                .requests
                .range(last(inner.requests.len(), 1000)..)
                .map(|r| export::request_json(self, r))
                .collect();
            let violations: Vec<Value> = inner
                .violations
                .range(last(inner.violations.len(), 500)..)
                .map(|v| export::violation_json(self, v))
                .collect();
            report["raw_data"] = json!({"requests": requests, "violations": violations});
        }
        report
    }

    /// Writes [`Analytics::report`] to `path` as indented JSON (making its directory).
    pub fn export_report(
        &self,
        path: &Path,
        include_raw_data: bool,
        now: Nanos,
    ) -> Result<(), AnalyticsError> {
        let report = self.report(include_raw_data, now);
        export::write(path, |file| {
            serde_json::to_writer_pretty(file, &report).map_err(std::io::Error::other)
        })
    }

    /// Writes the violations or the requests held to `path` as CSV with a header row.
    /// Returns how many rows were written; with none held, no file is written (as in the
    /// original).
    pub fn export_csv(&self, path: &Path, data: DataType) -> Result<usize, AnalyticsError> {
        let inner = self.inner.lock();
        match data {
            DataType::Violations => export::violations_csv(self, path, &inner.violations),
            DataType::Requests => export::requests_csv(self, path, &inner.requests),
        }
    }
}

/// Which records [`Analytics::export_csv`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// The violations.
    Violations,
    /// The requests.
    Requests,
}

impl std::str::FromStr for DataType {
    type Err = AnalyticsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "violations" => Ok(DataType::Violations),
            "requests" => Ok(DataType::Requests),
            other => Err(AnalyticsError::DataType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests;
