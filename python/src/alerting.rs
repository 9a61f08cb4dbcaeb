//! `NativeAlerts`: the Rust alert dispatcher under `ratethrottle.alerting.AlertDispatcher`:
//! thresholds, cooldowns claimed in the core's store (shared by every process on the same
//! Redis), and deliveries in the background with time limits and retries.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use ratethrottle_alert::{
    Alert, AlertSettings, Dispatcher, Email, Levels, Outcome, PagerDuty, Reading, Severity, Slack,
    Webhook,
};
use ratethrottle_config::ConfiguredStore;

use crate::core::NativeCore;
use crate::errors::Raise;
use crate::runtime::runtime;

/// The dispatcher of an `AlertDispatcher`.
#[pyclass(frozen, module = "ratethrottle._native")]
pub(crate) struct NativeAlerts {
    dispatcher: Dispatcher<ConfiguredStore>,
}

type WebhookArgs = (String, Vec<(String, String)>, Option<String>);

type EmailArgs = (
    String,
    u16,
    bool,
    Option<String>,
    Option<String>,
    String,
    Vec<String>,
);

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Queued => "queued",
        Outcome::Suppressed => "suppressed",
        Outcome::Disabled => "disabled",
        Outcome::Dropped => "dropped",
    }
}

#[pymethods]
impl NativeAlerts {
    /// A dispatcher keeping its cooldowns in `core`'s store, on its clock. `thresholds` maps
    /// each threshold's name (`block_rate_warning`, ...) to its value; the channels are
    /// given when enabled and configured.
    #[new]
    #[pyo3(signature = (core, enabled, cooldown, thresholds, timeout, slack = None, webhook = None, email = None, pagerduty = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        core: &Bound<'_, NativeCore>,
        enabled: bool,
        cooldown: f64,
        thresholds: &Bound<'_, PyDict>,
        timeout: f64,
        slack: Option<(String, String, String)>,
        webhook: Option<WebhookArgs>,
        email: Option<EmailArgs>,
        pagerduty: Option<(String, String)>,
    ) -> PyResult<Self> {
        let seconds = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 && value < 1e9 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(Raise::Configuration.err(format!(
                    "{name} must be a number of seconds above 0, got {value}"
                )))
            }
        };
        let level = |name: &str| -> PyResult<Levels> {
            let get = |suffix: &str| -> PyResult<f64> {
                thresholds
                    .get_item(format!("{name}_{suffix}"))?
                    .ok_or_else(|| {
                        Raise::Configuration.err(format!("thresholds.{name}_{suffix} is missing"))
                    })?
                    .extract()
            };
            Ok(Levels {
                warning: get("warning")?,
                critical: get("critical")?,
            })
        };
        let mut settings = AlertSettings::default();
        settings.enabled = enabled;
        settings.cooldown = seconds("cooldown_seconds", cooldown)?;
        settings.timeout = seconds("timeout", timeout)?;
        settings.thresholds.block_rate = level("block_rate")?;
        settings.thresholds.violations_per_minute = level("violations_per_minute")?;
        settings.thresholds.ddos_score = level("ddos_score")?;
        settings.thresholds.store_errors_per_minute = level("store_errors_per_minute")?;
        settings.slack = slack.map(|(webhook_url, channel, username)| Slack {
            webhook_url,
            channel,
            username,
        });
        settings.webhook = webhook.map(|(url, headers, secret)| Webhook {
            url,
            headers,
            secret,
        });
        settings.email = email.map(
            |(smtp_host, smtp_port, use_tls, username, password, from_address, to_addresses)| {
                Email {
                    smtp_host,
                    smtp_port,
                    use_tls,
                    username,
                    password,
                    from_address,
                    to_addresses,
                }
            },
        );
        settings.pagerduty = pagerduty.map(|(routing_key, url)| PagerDuty { routing_key, url });
        let limiter = core.get().limiter().clone();
        let dispatcher = {
            // The dispatcher's background work runs on the shared runtime.
            let _entered = runtime().enter();
            Dispatcher::new(settings, limiter).map_err(|e| Raise::Configuration.err(e))?
        };
        Ok(NativeAlerts { dispatcher })
    }

    /// Sends an alert unless it went out within its cooldown: `queued`, `suppressed`,
    /// `disabled` or `dropped`. `details` is a JSON object's text.
    #[pyo3(signature = (severity, event, rule, value, threshold, details))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        severity: &str,
        event: &str,
        rule: &str,
        value: f64,
        threshold: f64,
        details: &str,
    ) -> PyResult<&'static str> {
        let severity: Severity = severity
            .parse()
            .map_err(|e: String| Raise::Configuration.err(e))?;
        let mut alert = Alert::new(
            severity,
            event,
            value,
            threshold,
            self.dispatcher.limiter().now(),
        )
        .rule(rule);
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(details) {
            alert.details = map;
        }
        let dispatcher = self.dispatcher.clone();
        let outcome = py.detach(|| runtime().block_on(async move { dispatcher.send(alert).await }));
        Ok(outcome_name(outcome))
    }

    /// Checks figures against the thresholds and sends what they call for: each alert as
    /// `(event, severity, value, threshold, outcome)`.
    #[pyo3(signature = (block_rate, violations, store_errors, circuit_opens, ddos_detection_rate = None, ddos_blocked = 0))]
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        py: Python<'_>,
        block_rate: f64,
        violations: u64,
        store_errors: u64,
        circuit_opens: u64,
        ddos_detection_rate: Option<f64>,
        ddos_blocked: u64,
    ) -> Vec<(String, &'static str, f64, f64, &'static str)> {
        let mut reading = Reading::of(self.dispatcher.limiter())
            .with_block_rate(block_rate)
            .with_violations(violations);
        reading.store_errors = store_errors;
        reading.circuit_opens = circuit_opens;
        if let Some(rate) = ddos_detection_rate {
            reading.ddos_detection_rate = Some(rate);
            reading.ddos_blocked = ddos_blocked;
        }
        let dispatcher = self.dispatcher.clone();
        let raised = py.detach(|| {
            runtime().block_on(async move { dispatcher.check_and_alert(reading).await })
        });
        raised
            .into_iter()
            .map(|(alert, outcome)| {
                (
                    alert.event,
                    alert.severity.as_str(),
                    alert.value,
                    alert.threshold,
                    outcome_name(outcome),
                )
            })
            .collect()
    }

    /// Waits (at most `timeout` seconds) for the alerts in flight: whether they all ended.
    fn flush(&self, py: Python<'_>, timeout: f64) -> bool {
        let dispatcher = self.dispatcher.clone();
        let limit = Duration::from_secs_f64(timeout.clamp(0.0, 1e6));
        py.detach(|| {
            runtime().block_on(async move {
                tokio::time::timeout(limit, dispatcher.flush())
                    .await
                    .is_ok()
            })
        })
    }

    /// Counts: `sent`, `failed`, `suppressed`, `dropped`, `channel_failures`.
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.dispatcher.statistics();
        let dict = PyDict::new(py);
        dict.set_item("sent", s.sent)?;
        dict.set_item("failed", s.failed)?;
        dict.set_item("suppressed", s.suppressed)?;
        dict.set_item("dropped", s.dropped)?;
        dict.set_item("channel_failures", s.channel_failures)?;
        Ok(dict)
    }
}
