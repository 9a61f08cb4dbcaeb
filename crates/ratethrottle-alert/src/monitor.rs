//! The monitor: periodic snapshots of a limiter (and DDoS protection and analytics), logged,
//! written as JSON, and handed to a [`Dispatcher`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ratethrottle::Limiter;
use ratethrottle::store::{KeyValueStore, Store};
use ratethrottle_protect::analytics::Analytics;
use ratethrottle_protect::ddos::DdosProtection;
use serde_json::{Map, Value, json};

use crate::dispatcher::{Dispatcher, Reading};

/// How often to take snapshots, and what to do with them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MonitorSettings {
    /// Between snapshots (60 s).
    pub interval: Duration,
    /// Log each snapshot at INFO (true).
    pub log_metrics: bool,
    /// Write each snapshot to `export_path`, replacing the file atomically (false).
    pub export_json: bool,
    /// Where (`metrics/metrics.json`).
    pub export_path: PathBuf,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            interval: Duration::from_secs(60),
            log_metrics: true,
            export_json: false,
            export_path: PathBuf::from("metrics/metrics.json"),
        }
    }
}

/// Takes snapshots of a limiter, and of DDoS protection and analytics when given, with the
/// original's keys: `timestamp`, `limiter` (its `get_metrics()`), `ddos` (its
/// `get_statistics()` counts) and `analytics` (its `get_summary()`).
///
/// ```
/// use ratethrottle::Limiter;
/// use ratethrottle_alert::{Monitor, MonitorSettings};
///
/// let monitor = Monitor::new(Limiter::in_memory(), MonitorSettings::default());
/// let snapshot = monitor.snapshot_now();
/// assert_eq!(snapshot["limiter"]["block_rate"], 0.0);
/// ```
pub struct Monitor<S: Store + KeyValueStore> {
    limiter: Limiter<S>,
    settings: MonitorSettings,
    ddos: Option<Arc<DdosProtection>>,
    analytics: Option<Arc<Analytics>>,
    dispatcher: Option<Dispatcher<S>>,
}

impl<S: Store + KeyValueStore> std::fmt::Debug for Monitor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A limiter's figures with the original's `get_metrics()` keys.
pub fn limiter_json<S: Store>(limiter: &Limiter<S>) -> Value {
    metrics_json(&limiter.metrics())
}

/// Figures `m` of a limiter with the original's `get_metrics()` keys.
fn metrics_json(m: &ratethrottle::Metrics) -> Value {
    let rules: Map<String, Value> = m
        .rules
        .iter()
        .map(|r| {
            let counts = json!({
                "allowed": r.allowed,
                "denied": r.denied,
                "violations": r.violations,
                "degraded": r.degraded,
            });
            (r.rule.to_owned(), counts)
        })
        .collect();
    json!({
        "total_requests": m.total_requests,
        "allowed_requests": m.allowed_requests,
        "blocked_requests": m.blocked_requests,
        "block_rate": m.block_rate,
        "total_violations": m.violations,
        "active_rules": m.active_rules,
        "whitelisted_count": m.whitelisted,
        "blacklisted_count": m.blacklisted,
        "degraded_requests": m.degraded_requests,
        "store_errors": m.store_errors,
        "store_circuit_opens": m.store_circuit_opens,
        "store_circuit_open": m.store_circuit_open,
        "rules": rules,
    })
}

impl<S: Store + KeyValueStore> Monitor<S> {
    /// A monitor of `limiter`.
    pub fn new(limiter: Limiter<S>, settings: MonitorSettings) -> Self {
        Monitor {
            limiter,
            settings,
            ddos: None,
            analytics: None,
            dispatcher: None,
        }
    }

    /// The same, with DDoS protection's figures (and its detection rate alerted on).
    pub fn ddos(mut self, ddos: Arc<DdosProtection>) -> Self {
        self.ddos = Some(ddos);
        self
    }

    /// The same, with analytics' summary (whose violations the alerts count, as the
    /// original's do).
    pub fn analytics(mut self, analytics: Arc<Analytics>) -> Self {
        self.analytics = Some(analytics);
        self
    }

    /// The same, handing each snapshot to `dispatcher`.
    pub fn alerts(mut self, dispatcher: Dispatcher<S>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// What the sources say now, each read once.
    fn figures(&self) -> Figures {
        Figures {
            at: self.limiter.now(),
            metrics: self.limiter.metrics(),
            ddos: self.ddos.as_ref().map(|ddos| ddos.statistics()),
            analytics: self.analytics.as_ref().map(|analytics| analytics.summary()),
        }
    }

    /// A snapshot now.
    pub fn snapshot_now(&self) -> Value {
        self.figures().snapshot()
    }

    /// What the alerts read now.
    pub fn reading(&self) -> Reading {
        self.figures().reading()
    }

    /// One round: a snapshot, logged and written as the settings say, and checked for
    /// alerts. The snapshot.
    pub async fn tick(&self) -> Value {
        let figures = self.figures();
        let snapshot = figures.snapshot();
        if self.settings.log_metrics {
            log(&snapshot);
        }
        if self.settings.export_json {
            if let Err(error) = write_atomically(&self.settings.export_path, &snapshot) {
                tracing::error!(
                    "monitor: cannot write {}: {error}",
                    self.settings.export_path.display()
                );
            }
        }
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.check_and_alert(figures.reading()).await;
        }
        snapshot
    }

    /// Runs [`Monitor::tick`] every interval (the first one interval from now) until the
    /// handle is dropped.
    pub fn start(self) -> MonitorTask {
        let interval = self.settings.interval.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                self.tick().await;
            }
        });
        MonitorTask(task)
    }
}

/// A running monitor: it stops when this is dropped.
#[derive(Debug)]
pub struct MonitorTask(tokio::task::JoinHandle<()>);

impl Drop for MonitorTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The figures of one round.
struct Figures {
    at: ratethrottle::clock::Nanos,
    metrics: ratethrottle::Metrics,
    ddos: Option<ratethrottle_protect::ddos::DdosStatistics>,
    analytics: Option<ratethrottle_protect::analytics::Summary>,
}

impl Figures {
    /// The snapshot, with the original's keys.
    fn snapshot(&self) -> Value {
        let mut snapshot = json!({
            "timestamp": ratethrottle_protect::analytics::iso_timestamp(self.at),
            "limiter": metrics_json(&self.metrics),
        });
        if let Some(s) = &self.ddos {
            snapshot["ddos"] = json!({
                "total_analyzed": s.total_analyzed,
                "suspicious_detected": s.suspicious_detected,
                "auto_blocked": s.auto_blocked,
                "detection_rate": s.detection_rate(),
                "false_positives_prevented": s.false_positives_prevented,
                "monitored_identifiers": s.tracked_identifiers,
                "blocked_ips": self.metrics.blacklisted,
            });
        }
        if let Some(summary) = &self.analytics {
            snapshot["analytics"] = ratethrottle_protect::analytics::summary_json(summary);
        }
        snapshot
    }

    /// What the alerts read: analytics' violations when there is analytics, as the
    /// original reads them.
    fn reading(&self) -> Reading {
        let mut reading = Reading::from_metrics(self.at, &self.metrics);
        if let Some(ddos) = &self.ddos {
            reading = reading.with_ddos(ddos);
        }
        if let Some(summary) = &self.analytics {
            reading = reading.with_violations(summary.total_violations);
        }
        reading
    }
}

/// The original's log line.
fn log(snapshot: &Value) {
    let mut parts = vec![format!(
        "ts={}",
        snapshot["timestamp"].as_str().unwrap_or("")
    )];
    let l = &snapshot["limiter"];
    parts.push(format!(
        "requests={} blocked={} block_rate={:.2}%",
        l["total_requests"],
        l["blocked_requests"],
        l["block_rate"].as_f64().unwrap_or(0.0)
    ));
    let d = &snapshot["ddos"];
    if d.is_object() {
        parts.push(format!(
            "ddos_blocked_ips={} detection_rate={:.2}%",
            d["blocked_ips"],
            d["detection_rate"].as_f64().unwrap_or(0.0)
        ));
    }
    let a = &snapshot["analytics"];
    if a.is_object() {
        parts.push(format!(
            "unique_clients={} violation_rate={:.2}%",
            a["unique_identifiers"],
            a["violation_rate"].as_f64().unwrap_or(0.0)
        ));
    }
    tracing::info!("RateThrottle metrics | {}", parts.join(" | "));
}

/// Writes `snapshot` to `path` through a temporary file beside it, renamed into place.
fn write_atomically(path: &std::path::Path, snapshot: &Value) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}
