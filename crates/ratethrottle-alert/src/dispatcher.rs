//! The dispatcher: readings checked against thresholds, alerts claimed once per cooldown in a
//! store, and delivered in the background.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ratethrottle::Limiter;
use ratethrottle::clock::Nanos;
use ratethrottle::store::{KeyValueStore, MemoryStore, SetMode, Store, Value};

use crate::alert::Alert;
use crate::channel::Channels;
use crate::settings::{AlertSettings, Severity};

/// What the dispatcher reads: a limiter's figures at a moment, and DDoS protection's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Reading {
    /// When.
    pub at: Nanos,
    /// Checks denied, in percent.
    pub block_rate: f64,
    /// Violations since the start (the original reads analytics' `total_violations`).
    pub violations: u64,
    /// Store errors since the start.
    pub store_errors: u64,
    /// Times the store's circuit opened since the start.
    pub circuit_opens: u64,
    /// The percentage of requests DDoS protection found suspicious, when it runs.
    pub ddos_detection_rate: Option<f64>,
    /// Clients DDoS protection blocked.
    pub ddos_blocked: u64,
}

impl Reading {
    /// `limiter`'s figures now.
    pub fn of<S: Store>(limiter: &Limiter<S>) -> Self {
        Self::from_metrics(limiter.now(), &limiter.metrics())
    }

    /// A limiter's figures `metrics`, read at `at`.
    pub fn from_metrics(at: Nanos, metrics: &ratethrottle::Metrics) -> Self {
        Reading {
            at,
            block_rate: metrics.block_rate,
            violations: metrics.violations,
            store_errors: metrics.store_errors,
            circuit_opens: metrics.store_circuit_opens,
            ddos_detection_rate: None,
            ddos_blocked: 0,
        }
    }

    /// The same, with DDoS protection's figures.
    pub fn with_ddos(mut self, ddos: &ratethrottle_protect::ddos::DdosStatistics) -> Self {
        self.ddos_detection_rate = Some(ddos.detection_rate());
        self.ddos_blocked = ddos.auto_blocked;
        self
    }

    /// The same with `violations` (analytics' count, as the original reads it).
    pub fn with_violations(mut self, violations: u64) -> Self {
        self.violations = violations;
        self
    }

    /// The same with a block rate (percent).
    pub fn with_block_rate(mut self, block_rate: f64) -> Self {
        self.block_rate = block_rate;
        self
    }
}

/// What became of an alert handed to [`Dispatcher::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// On its way to the channels (delivered in the background).
    Queued,
    /// The same event at the same severity went out within the cooldown (here or, on a
    /// shared store, in another process).
    Suppressed,
    /// Alerting is disabled, or no channel is set.
    Disabled,
    /// Too many alerts were being delivered already.
    Dropped,
}

/// Counts since the dispatcher was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertStatistics {
    /// Alerts at least one channel took.
    pub sent: u64,
    /// Alerts no channel took (every attempt failed).
    pub failed: u64,
    /// Alerts not sent again within their cooldown.
    pub suppressed: u64,
    /// Alerts dropped because too many were in flight.
    pub dropped: u64,
    /// Deliveries to one channel that failed (after their retries).
    pub channel_failures: u64,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    suppressed: AtomicU64,
    dropped: AtomicU64,
    channel_failures: AtomicU64,
}

struct Inner<S: Store + KeyValueStore> {
    settings: AlertSettings,
    limiter: Limiter<S>,
    channels: Channels,
    counts: Counts,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    previous: parking_lot::Mutex<Reading>,
}

/// Sends alerts when readings cross thresholds, once per event and severity per cooldown.
///
/// The cooldown is claimed in the limiter's store with an atomic set-if-absent, so processes
/// sharing a Redis store send one alert per cooldown together. Deliveries run on tokio in the
/// background, each channel with a time limit and retries: a slow channel never holds up the
/// caller (make the dispatcher inside a tokio runtime).
///
/// ```
/// use ratethrottle::Limiter;
/// use ratethrottle_alert::{AlertSettings, Dispatcher, Outcome, Reading};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let settings = AlertSettings::default(); // no channel set: nothing to send to
/// let dispatcher = Dispatcher::new(settings, Limiter::in_memory()).unwrap();
/// let reading = Reading::of(dispatcher.limiter()).with_block_rate(25.0);
/// let raised = dispatcher.check_and_alert(reading).await;
/// assert_eq!(raised[0].0.event, "block_rate_exceeded");
/// assert_eq!(raised[0].1, Outcome::Disabled);
/// # });
/// ```
pub struct Dispatcher<S: Store + KeyValueStore = MemoryStore> {
    inner: Arc<Inner<S>>,
}

impl<S: Store + KeyValueStore> Clone for Dispatcher<S> {
    fn clone(&self) -> Self {
        Dispatcher {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store + KeyValueStore> std::fmt::Debug for Dispatcher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("enabled", &self.inner.settings.enabled)
            .field("channels", &self.inner.settings.channels())
            .field("cooldown", &self.inner.settings.cooldown)
            .finish_non_exhaustive()
    }
}

/// The store key of an event's cooldown (the original's).
pub fn cooldown_key(event: &str, severity: Severity) -> String {
    format!("rt:alert_cd:{event}:{}", severity.as_str())
}

impl<S: Store + KeyValueStore> Dispatcher<S> {
    /// A dispatcher keeping its cooldowns in `limiter`'s store, on its clock.
    pub fn new(settings: AlertSettings, limiter: Limiter<S>) -> Result<Self, String> {
        settings.validate()?;
        let channels = Channels::new(settings.clone())?;
        let previous = Reading {
            at: limiter.now(),
            ..Reading::default()
        };
        Ok(Dispatcher {
            inner: Arc::new(Inner {
                settings,
                limiter,
                channels,
                counts: Counts::default(),
                in_flight: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                previous: parking_lot::Mutex::new(previous),
            }),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &AlertSettings {
        &self.inner.settings
    }

    /// The limiter whose store keeps the cooldowns.
    pub fn limiter(&self) -> &Limiter<S> {
        &self.inner.limiter
    }

    /// Checks `reading` against the thresholds and sends what it calls for:
    /// - `block_rate_exceeded`: the block rate;
    /// - `violations_per_minute_exceeded`: violations per minute since the last reading;
    /// - `ddos_score_exceeded`: the share of suspicious requests (when DDoS protection runs);
    /// - `store_errors_exceeded`: store errors per minute since the last reading;
    /// - `store_circuit_opened` (critical): the store's circuit opened since the last reading.
    ///
    /// Each alert raised, and what became of it.
    pub async fn check_and_alert(&self, reading: Reading) -> Vec<(Alert, Outcome)> {
        let raised = self.evaluate(reading);
        let mut outcomes = Vec::with_capacity(raised.len());
        for alert in raised {
            let outcome = self.send(alert.clone()).await;
            outcomes.push((alert, outcome));
        }
        outcomes
    }

    /// The alerts `reading` calls for (remembering it as the last reading).
    fn evaluate(&self, reading: Reading) -> Vec<Alert> {
        let t = &self.inner.settings.thresholds;
        let previous = std::mem::replace(&mut *self.inner.previous.lock(), reading);
        let now = reading.at;
        let minutes = (reading.at.saturating_sub(previous.at).as_secs_f64()).max(1.0) / 60.0;
        let per_minute = |now: u64, before: u64| now.saturating_sub(before) as f64 / minutes;
        let mut alerts = Vec::new();
        let raised = |event: &str, value: f64, levels: crate::Levels, detail: &str| {
            levels.crossed(value).map(|(severity, threshold)| {
                Alert::new(severity, event, value, threshold, now)
                    .detail(detail, (value * 100.0).round() / 100.0)
            })
        };
        alerts.extend(raised(
            "block_rate_exceeded",
            reading.block_rate,
            t.block_rate,
            "block_rate_pct",
        ));
        let vpm = per_minute(reading.violations, previous.violations);
        if vpm > 0.0 {
            alerts.extend(raised(
                "violations_per_minute_exceeded",
                vpm,
                t.violations_per_minute,
                "violations_per_minute",
            ));
        }
        if let Some(rate) = reading.ddos_detection_rate.filter(|r| *r > 0.0) {
            let score = rate / 100.0;
            if let Some((severity, threshold)) = t.ddos_score.crossed(score) {
                alerts.push(
                    Alert::new(severity, "ddos_score_exceeded", score, threshold, now)
                        .detail("ddos_score", (score * 10_000.0).round() / 10_000.0)
                        .detail("blocked_ips", reading.ddos_blocked),
                );
            }
        }
        let errors = per_minute(reading.store_errors, previous.store_errors);
        if errors > 0.0 {
            alerts.extend(raised(
                "store_errors_exceeded",
                errors,
                t.store_errors_per_minute,
                "store_errors_per_minute",
            ));
        }
        let opened = reading.circuit_opens.saturating_sub(previous.circuit_opens);
        if opened > 0 {
            alerts.push(
                Alert::new(
                    Severity::Critical,
                    "store_circuit_opened",
                    opened as f64,
                    1.0,
                    now,
                )
                .detail("circuit_opens", reading.circuit_opens),
            );
        }
        alerts
    }

    /// Sends `alert` unless the same event at the same severity went out within the
    /// cooldown. Returns once the cooldown is claimed; the channels are sent to in the
    /// background.
    pub async fn send(&self, alert: Alert) -> Outcome {
        let inner = &self.inner;
        if !inner.settings.enabled || inner.settings.channels().is_empty() {
            return Outcome::Disabled;
        }
        let key = cooldown_key(&alert.event, alert.severity);
        let claimed = inner
            .limiter
            .store()
            .set(
                &key,
                Value::Int(1),
                Some(inner.settings.cooldown),
                SetMode::IfAbsent,
                inner.limiter.now(),
            )
            .await;
        let claimed = match claimed {
            Ok(true) => true,
            Ok(false) => {
                inner.counts.suppressed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event = alert.event, "alert suppressed (cooldown)");
                return Outcome::Suppressed;
            }
            Err(error) => {
                // As the original: an unreadable cooldown lets the alert through.
                tracing::warn!("alert cooldown unavailable ({error}); sending the alert");
                false
            }
        };
        if inner.in_flight.fetch_add(1, Ordering::AcqRel) >= inner.settings.max_in_flight {
            inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            inner.counts.dropped.fetch_add(1, Ordering::Relaxed);
            if claimed {
                self.release(&key).await;
            }
            tracing::warn!(event = alert.event, "alert dropped: too many in flight");
            return Outcome::Dropped;
        }
        let dispatcher = self.clone();
        tokio::spawn(async move {
            dispatcher.deliver(&alert, claimed.then_some(key)).await;
            let inner = &dispatcher.inner;
            if inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                inner.idle.notify_waiters();
            }
        });
        Outcome::Queued
    }

    /// Delivers `alert`; when no channel took it, gives its cooldown `claim` back, so that the
    /// next reading may try again.
    async fn deliver(&self, alert: &Alert, claim: Option<String>) {
        let inner = &self.inner;
        let results = inner.channels.deliver(alert).await;
        let mut took = Vec::new();
        for (channel, result) in &results {
            match result {
                Ok(()) => took.push(*channel),
                Err(error) => {
                    inner
                        .counts
                        .channel_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(channel, event = alert.event, "alert not delivered: {error}");
                }
            }
        }
        if took.is_empty() {
            inner.counts.failed.fetch_add(1, Ordering::Relaxed);
            if let Some(key) = claim {
                self.release(&key).await;
            }
        } else {
            inner.counts.sent.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "Alert [{}] {} value={:.2} threshold={:.2} via {}",
                alert.severity.as_str().to_ascii_uppercase(),
                alert.event,
                alert.value,
                alert.threshold,
                took.join(", ")
            );
        }
    }

    async fn release(&self, key: &str) {
        let store = self.inner.limiter.store();
        if let Err(error) = store.delete(&[key], self.inner.limiter.now()).await {
            tracing::warn!("could not release the alert cooldown {key}: {error}");
        }
    }

    /// Waits until every alert sent so far has been delivered or given up on.
    pub async fn flush(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            // Woken when the last one in flight ends; checked again in case of a race.
            let _ = tokio::time::timeout(Duration::from_millis(100), idle).await;
        }
    }

    /// Counts since the dispatcher was made.
    pub fn statistics(&self) -> AlertStatistics {
        let c = &self.inner.counts;
        AlertStatistics {
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            suppressed: c.suppressed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            channel_failures: c.channel_failures.load(Ordering::Relaxed),
        }
    }
}
