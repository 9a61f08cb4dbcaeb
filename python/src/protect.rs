//! `NativeDdos` and `NativeAnalytics`: the engine under `ratethrottle.ddos.DDoSProtection` and
//! `ratethrottle.analytics.RateThrottleAnalytics` (crate `ratethrottle-protect`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use ratethrottle::clock::Nanos;
use ratethrottle::store::{ListKind, Store};
use ratethrottle_protect::analytics::{
    Analytics, AnalyticsError, AnalyticsSettings, DataType, Granularity, Metadata, ViolationRecord,
    rule_statistics_json, summary_json,
};
use ratethrottle_protect::ddos::{DdosProtection, DdosSettings, ban};

use crate::core::NativeCore;
use crate::errors::{Raise, engine_error, log};
use crate::runtime::wait;

/// The settings `DDoSProtection` takes, by the original's names (and ours for escalation).
const DDOS_KEYS: [&str; 16] = [
    "enabled",
    "threshold",
    "window",
    "auto_block",
    "block_duration",
    "suspicious_threshold",
    "max_unique_endpoints",
    "burst_threshold",
    "burst_window",
    "min_interval_threshold",
    "whitelist_on_good_behavior",
    "good_behavior_threshold",
    "max_tracked_identifiers",
    "block_increment",
    "max_block_duration",
    "offence_memory",
];

fn config_error(key: &str, expected: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let shown = got
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    Raise::Configuration.err(format!(
        "ddos_protection.{key} must be {expected}, got {shown}"
    ))
}

/// `value` as a number (not a bool), or the error naming `key` and what is `expected`.
fn number(key: &str, value: &Bound<'_, PyAny>, expected: &str) -> PyResult<f64> {
    value
        .extract()
        .ok()
        .filter(|_| !value.is_instance_of::<pyo3::types::PyBool>())
        .ok_or_else(|| config_error(key, expected, value))
}

/// A whole number of at least `min` (an integral float is accepted, as Python code writes
/// `1e4`).
fn count(key: &str, value: &Bound<'_, PyAny>, min: u64) -> PyResult<u64> {
    let expected = format!("a whole number, at least {min}");
    let n = number(key, value, &expected)?;
    if n.fract() != 0.0 || !n.is_finite() || n < min as f64 || n > 1e15 {
        return Err(config_error(key, &expected, value));
    }
    Ok(n as u64)
}

/// Seconds, at least 0 (above 0 when `positive`).
fn seconds(key: &str, value: &Bound<'_, PyAny>, positive: bool) -> PyResult<Duration> {
    let expected = if positive {
        "a number of seconds above 0"
    } else {
        "a number of seconds, at least 0"
    };
    let n = number(key, value, expected)?;
    if !n.is_finite() || n < 0.0 || (positive && n == 0.0) || n > 1e12 {
        return Err(config_error(key, expected, value));
    }
    Ok(Duration::from_secs_f64(n))
}

fn fraction(key: &str, value: &Bound<'_, PyAny>, range: (f64, f64)) -> PyResult<f64> {
    let expected = format!("a number from {} to {}", range.0, range.1);
    let n = number(key, value, &expected)?;
    if !(range.0..=range.1).contains(&n) {
        return Err(config_error(key, &expected, value));
    }
    Ok(n)
}

/// The settings of the original's config dict (unknown keys refused, naming the known ones).
fn ddos_settings(config: &Bound<'_, PyDict>) -> PyResult<DdosSettings> {
    let mut s = DdosSettings::default();
    for (key, value) in config.iter() {
        let key: String = key.extract()?;
        match key.as_str() {
            "enabled" => s.enabled = value.is_truthy()?,
            "auto_block" => s.auto_block = value.is_truthy()?,
            "whitelist_on_good_behavior" => s.whitelist_on_good_behavior = value.is_truthy()?,
            "threshold" => s.threshold = count(&key, &value, 1)?,
            "max_unique_endpoints" => s.max_unique_endpoints = count(&key, &value, 1)?,
            "burst_threshold" => s.burst_threshold = count(&key, &value, 1)?,
            "good_behavior_threshold" => s.good_behavior_threshold = count(&key, &value, 1)?,
            "max_tracked_identifiers" => {
                s.max_tracked_identifiers = count(&key, &value, 1000)? as usize
            }
            "window" => s.window = seconds(&key, &value, true)?,
            "burst_window" => s.burst_window = seconds(&key, &value, true)?,
            "block_duration" => s.block_duration = seconds(&key, &value, false)?,
            "max_block_duration" => s.max_block_duration = seconds(&key, &value, false)?,
            "offence_memory" => s.offence_memory = seconds(&key, &value, true)?,
            "min_interval_threshold" => s.min_interval_threshold = seconds(&key, &value, false)?,
            "suspicious_threshold" => s.suspicious_threshold = fraction(&key, &value, (0.0, 1.0))?,
            "block_increment" => s.block_increment = fraction(&key, &value, (1.0, 1000.0))?,
            other => {
                return Err(Raise::Configuration.err(format!(
                    "unknown DDoS protection setting {other:?}; the settings are: {}",
                    DDOS_KEYS.join(", ")
                )));
            }
        }
    }
    s.validate()
        .map_err(|error| Raise::Configuration.err(error.to_string()))?;
    Ok(s)
}

pub(crate) fn unix(at: Nanos) -> f64 {
    at.as_nanos() as f64 / 1e9
}

fn nanos_of(unix_seconds: f64) -> Nanos {
    if unix_seconds.is_finite() && unix_seconds > 0.0 {
        Nanos::from_nanos((unix_seconds * 1e9) as u64)
    } else {
        Nanos::ZERO
    }
}

/// The analysis of one request (the original's `TrafficPattern` dataclass: the same fields,
/// positional and keyword construction, `to_dict`, equality and repr).
#[pyclass(
    module = "ratethrottle.ddos",
    name = "TrafficPattern",
    get_all,
    set_all
)]
pub(crate) struct TrafficPattern {
    identifier: Py<PyString>,
    request_rate: f64,
    unique_endpoints: u64,
    suspicious_score: f64,
    is_suspicious: bool,
    analysis_window: u64,
    timestamp: f64,
    metadata: Py<PyDict>,
}

#[pymethods]
impl TrafficPattern {
    #[new]
    #[pyo3(signature = (identifier, request_rate, unique_endpoints, suspicious_score, is_suspicious, analysis_window, timestamp, metadata = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        identifier: Py<PyString>,
        request_rate: f64,
        unique_endpoints: u64,
        suspicious_score: f64,
        is_suspicious: bool,
        analysis_window: u64,
        timestamp: f64,
        metadata: Option<Py<PyDict>>,
    ) -> Self {
        TrafficPattern {
            identifier,
            request_rate,
            unique_endpoints,
            suspicious_score,
            is_suspicious,
            analysis_window,
            timestamp,
            metadata: metadata.unwrap_or_else(|| PyDict::new(py).unbind()),
        }
    }

    /// The fields as a dict (the metadata copied).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("identifier", self.identifier.bind(py))?;
        dict.set_item("request_rate", self.request_rate)?;
        dict.set_item("unique_endpoints", self.unique_endpoints)?;
        dict.set_item("suspicious_score", self.suspicious_score)?;
        dict.set_item("is_suspicious", self.is_suspicious)?;
        dict.set_item("analysis_window", self.analysis_window)?;
        dict.set_item("timestamp", self.timestamp)?;
        dict.set_item("metadata", self.metadata.bind(py).copy()?)?;
        Ok(dict)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<TrafficPattern>() else {
            return Ok(false);
        };
        let other = other.borrow();
        Ok(self
            .identifier
            .bind(py)
            .as_any()
            .eq(other.identifier.bind(py))?
            && self.request_rate == other.request_rate
            && self.unique_endpoints == other.unique_endpoints
            && self.suspicious_score == other.suspicious_score
            && self.is_suspicious == other.is_suspicious
            && self.analysis_window == other.analysis_window
            && self.timestamp == other.timestamp
            && self.metadata.bind(py).eq(other.metadata.bind(py))?)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let text = |v: &Bound<'_, PyAny>| v.repr().map(|r| r.to_string());
        Ok(format!(
            "TrafficPattern(identifier={}, request_rate={}, unique_endpoints={}, \
             suspicious_score={}, is_suspicious={}, analysis_window={}, timestamp={}, \
             metadata={})",
            text(self.identifier.bind(py).as_any())?,
            text(&self.request_rate.into_pyobject(py)?.into_any())?,
            self.unique_endpoints,
            text(&self.suspicious_score.into_pyobject(py)?.into_any())?,
            if self.is_suspicious { "True" } else { "False" },
            self.analysis_window,
            text(&self.timestamp.into_pyobject(py)?.into_any())?,
            text(self.metadata.bind(py).as_any())?,
        ))
    }
}

/// DDoS detection whose blocks go on a core's blacklist (with escalation counted in its
/// store).
#[pyclass(frozen, module = "ratethrottle._native")]
pub(crate) struct NativeDdos {
    ddos: Arc<DdosProtection>,
    core: Py<NativeCore>,
}

impl NativeDdos {
    /// The detector, for the framework adapters' policies.
    pub(crate) fn protection(&self) -> Arc<DdosProtection> {
        Arc::clone(&self.ddos)
    }
}

#[pymethods]
impl NativeDdos {
    /// Detection with the settings in `config` (the original's dict), blocking on `core`.
    #[new]
    fn new(core: &Bound<'_, NativeCore>, config: &Bound<'_, PyDict>) -> PyResult<Self> {
        let settings = ddos_settings(config)?;
        let ddos = DdosProtection::new(settings)
            .map_err(|error| Raise::Configuration.err(error.to_string()))?;
        Ok(NativeDdos {
            ddos: Arc::new(ddos),
            core: core.clone().unbind(),
        })
    }

    /// Analyses one request at `timestamp` (Unix seconds; `None` or 0: the core's clock); a
    /// client it calls for blocking goes on the core's blacklist (logged with its offence).
    #[pyo3(signature = (identifier, endpoint, timestamp = None, user_agent = None))]
    fn analyze(
        &self,
        py: Python<'_>,
        identifier: &Bound<'_, PyString>,
        endpoint: &str,
        timestamp: Option<f64>,
        user_agent: Option<&str>,
    ) -> PyResult<TrafficPattern> {
        let id = identifier.to_cow()?;
        let identifier_text: &str = &id;
        let core = self.core.get();
        let limiter = core.limiter();
        let now = timestamp
            .filter(|t| *t != 0.0)
            .map_or_else(|| limiter.now(), nanos_of);
        let analysis = self
            .ddos
            .analyze(identifier_text, endpoint, user_agent, now);
        let pattern = analysis.pattern;
        if analysis.block_for.is_some() {
            let settings = self.ddos.settings();
            let at_once = limiter.store().answers_at_once();
            match wait(py, at_once, ban(limiter, settings, identifier_text)) {
                Ok(Some(ban)) => log(
                    py,
                    "warning",
                    &format!(
                        "Auto-blocked: {identifier_text} (offence {}, duration: {}s)",
                        ban.offence,
                        ban.duration.as_secs()
                    ),
                ),
                Ok(None) => {}
                Err(error) => log(
                    py,
                    "error",
                    &format!("could not block {identifier_text}: {error}"),
                ),
            }
        }
        let metadata = PyDict::new(py);
        for (name, part) in pattern.factors.iter() {
            metadata.set_item(name, part)?;
        }
        let pattern = TrafficPattern {
            identifier: identifier.clone().unbind(),
            request_rate: pattern.request_rate,
            unique_endpoints: pattern.unique_endpoints,
            suspicious_score: pattern.suspicious_score,
            is_suspicious: pattern.is_suspicious,
            analysis_window: pattern.analysis_window,
            timestamp: unix(pattern.timestamp),
            metadata: metadata.unbind(),
        };
        Ok(pattern)
    }

    /// The counts: `total_analyzed`, `suspicious_detected`, `auto_blocked`,
    /// `false_positives_prevented`, `tracked_identifiers`, `trusted_identifiers`.
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.ddos.statistics();
        let dict = PyDict::new(py);
        dict.set_item("total_analyzed", stats.total_analyzed)?;
        dict.set_item("suspicious_detected", stats.suspicious_detected)?;
        dict.set_item("auto_blocked", stats.auto_blocked)?;
        dict.set_item("false_positives_prevented", stats.false_positives_prevented)?;
        dict.set_item("tracked_identifiers", stats.tracked_identifiers)?;
        dict.set_item("trusted_identifiers", stats.trusted_identifiers)?;
        Ok(dict)
    }

    fn reset_statistics(&self) {
        self.ddos.reset_statistics();
    }

    /// Forgets one client (`identifier`) or all.
    #[pyo3(signature = (identifier = None))]
    fn forget(&self, identifier: Option<&str>) {
        match identifier {
            Some(identifier) => {
                self.ddos.forget(identifier);
            }
            None => self.ddos.forget_all(),
        }
    }

    fn distrust(&self, identifier: &str) -> bool {
        self.ddos.distrust(identifier)
    }

    /// The blacklist of the core: `(identifier, expires_at or None)` in Unix seconds.
    fn blocks(&self, py: Python<'_>) -> PyResult<Vec<(String, Option<f64>)>> {
        let limiter = self.core.get().limiter();
        let at_once = limiter.store().answers_at_once();
        let entries =
            wait(py, at_once, limiter.list_entries(ListKind::Blacklist)).map_err(engine_error)?;
        Ok(entries
            .into_iter()
            .map(|entry| (entry.identifier, entry.expires_at.map(unix)))
            .collect())
    }
}

fn analytics_error(error: AnalyticsError) -> PyErr {
    match error {
        AnalyticsError::Export { .. } => pyo3::exceptions::PyIOError::new_err(error.to_string()),
        AnalyticsError::DataType(_) => pyo3::exceptions::PyValueError::new_err(error.to_string()),
        _ => Raise::Configuration.err(error.to_string()),
    }
}

fn metadata(json: Option<&str>) -> PyResult<Option<Metadata>> {
    json.map(|json| {
        serde_json::from_str::<Metadata>(json)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    })
    .transpose()
}

/// A JSON value as Python (through the `json` module, once per call).
fn to_python<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// The bounded record behind `RateThrottleAnalytics`.
#[pyclass(frozen, module = "ratethrottle._native")]
pub(crate) struct NativeAnalytics {
    analytics: Arc<Analytics>,
}

#[pymethods]
impl NativeAnalytics {
    #[new]
    fn new(max_history: i64, enable_metadata: bool, sanitize_data: bool) -> PyResult<Self> {
        if max_history <= 0 {
            return Err(Raise::Configuration
                .err(format!("max_history must be positive, got {max_history}")));
        }
        let mut settings = AnalyticsSettings::default();
        settings.max_history = max_history as usize;
        settings.enable_metadata = enable_metadata;
        settings.sanitize_data = sanitize_data;
        let analytics = Analytics::new(settings).map_err(analytics_error)?;
        Ok(NativeAnalytics {
            analytics: Arc::new(analytics),
        })
    }

    /// Records a decision at `at` (Unix seconds); `metadata` as JSON text.
    #[pyo3(signature = (identifier, rule, allowed, at, metadata = None))]
    fn record_request(
        &self,
        identifier: &str,
        rule: &str,
        allowed: bool,
        at: f64,
        metadata: Option<&str>,
    ) -> PyResult<()> {
        let metadata = self::metadata(metadata)?;
        self.analytics
            .record_request(identifier, rule, allowed, metadata, nanos_of(at));
        Ok(())
    }

    /// Records a violation; `at` `None` when its time could not be read; `extra` and
    /// `metadata` as JSON text.
    #[pyo3(signature = (identifier, rule_name, at, requests_made, limit, blocked_until, retry_after, scope, metadata, extra))]
    #[allow(clippy::too_many_arguments)]
    fn record_violation(
        &self,
        identifier: &str,
        rule_name: &str,
        at: Option<f64>,
        requests_made: u64,
        limit: u64,
        blocked_until: Option<String>,
        retry_after: u64,
        scope: String,
        metadata: &str,
        extra: &str,
    ) -> PyResult<()> {
        let mut record = ViolationRecord::new(identifier, rule_name, Nanos::ZERO);
        record.at = at.map(nanos_of);
        record.requests_made = requests_made;
        record.limit = limit;
        record.blocked_until = blocked_until;
        record.retry_after = retry_after;
        record.scope = scope;
        record.metadata = self::metadata(Some(metadata))?.unwrap_or_default();
        record.extra = self::metadata(Some(extra))?.unwrap_or_default();
        self.analytics.record_violation(record);
        Ok(())
    }

    /// `[(identifier, count)]`, most first.
    #[pyo3(signature = (limit, time_window, now))]
    fn top_violators(
        &self,
        limit: usize,
        time_window: Option<f64>,
        now: f64,
    ) -> Vec<(String, u64)> {
        let window = time_window
            .filter(|w| w.is_finite() && *w > 0.0)
            .map(Duration::from_secs_f64);
        self.analytics.top_violators(limit, window, nanos_of(now))
    }

    fn violation_timeline(&self, hours: u64, granularity: &str, now: f64) -> Vec<(String, u64)> {
        let granularity = Granularity::from_name(granularity);
        self.analytics
            .violation_timeline(hours, granularity, nanos_of(now))
    }

    /// Statistics by rule, rules in the order first seen.
    fn rule_statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (rule, stats) in self.analytics.rule_statistics() {
            dict.set_item(rule, to_python(py, &rule_statistics_json(&stats))?)?;
        }
        Ok(dict)
    }

    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &summary_json(&self.analytics.summary()))
    }

    /// The report as Python values (what `export_report` writes).
    fn report<'py>(
        &self,
        py: Python<'py>,
        include_raw_data: bool,
        now: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.analytics.report(include_raw_data, nanos_of(now)))
    }

    /// The records held as dicts, `requests` or `violations` (sanitized as exported).
    fn records<'py>(&self, py: Python<'py>, data_type: &str) -> PyResult<Bound<'py, PyList>> {
        let data: DataType = data_type.parse().map_err(analytics_error)?;
        let records = self.analytics.records(data);
        let list = PyList::empty(py);
        for record in records {
            list.append(to_python(py, &record)?)?;
        }
        Ok(list)
    }

    fn export_report(
        &self,
        py: Python<'_>,
        filename: PathBuf,
        include_raw_data: bool,
        now: f64,
    ) -> PyResult<()> {
        let analytics = Arc::clone(&self.analytics);
        py.detach(|| analytics.export_report(&filename, include_raw_data, nanos_of(now)))
            .map_err(analytics_error)
    }

    fn export_csv(&self, py: Python<'_>, filename: PathBuf, data_type: &str) -> PyResult<usize> {
        let data: DataType = data_type.parse().map_err(analytics_error)?;
        let analytics = Arc::clone(&self.analytics);
        py.detach(|| analytics.export_csv(&filename, data))
            .map_err(analytics_error)
    }

    fn clear_old_data(&self, days: f64, now: f64) -> u64 {
        let days = if days.is_finite() && days > 0.0 {
            days as u64
        } else {
            0
        };
        self.analytics.clear_old_data(days, nanos_of(now))
    }

    fn reset(&self) {
        self.analytics.reset();
    }
}
