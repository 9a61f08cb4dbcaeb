//! What to alert on, and where to send it.

use std::time::Duration;

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// A warning threshold was crossed.
    Warning,
    /// A critical threshold was crossed.
    Critical,
}

impl Severity {
    /// `warning` or `critical`, as the original names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!("severity {text:?}: give warning or critical")),
        }
    }
}

/// A pair of thresholds: at or above `warning` a warning, at or above `critical` a critical
/// alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// The warning threshold.
    pub warning: f64,
    /// The critical threshold.
    pub critical: f64,
}

impl Levels {
    /// The severity `value` calls for, and the threshold it crossed.
    pub fn crossed(&self, value: f64) -> Option<(Severity, f64)> {
        if value >= self.critical {
            Some((Severity::Critical, self.critical))
        } else if value >= self.warning {
            Some((Severity::Warning, self.warning))
        } else {
            None
        }
    }
}

/// When to alert: the original's three thresholds, and the store's health.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Thresholds {
    /// The block rate, in percent of checks (5 and 20).
    pub block_rate: Levels,
    /// Violations per minute since the last reading (50 and 200).
    pub violations_per_minute: Levels,
    /// The share of requests DDoS protection found suspicious, 0 to 1 (0.5 and 0.8).
    pub ddos_score: Levels,
    /// Store errors per minute since the last reading (1 and 60).
    pub store_errors_per_minute: Levels,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            block_rate: Levels {
                warning: 5.0,
                critical: 20.0,
            },
            violations_per_minute: Levels {
                warning: 50.0,
                critical: 200.0,
            },
            ddos_score: Levels {
                warning: 0.5,
                critical: 0.8,
            },
            store_errors_per_minute: Levels {
                warning: 1.0,
                critical: 60.0,
            },
        }
    }
}

/// A Slack incoming webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Slack {
    /// The webhook's URL (a secret).
    pub webhook_url: String,
    /// The channel (`#alerts`).
    pub channel: String,
    /// The name the message is posted under (`RateThrottle`).
    pub username: String,
}

/// A generic JSON webhook: the alert's payload, posted.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Where to post.
    pub url: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// With a secret, each body is signed: `X-RateThrottle-Signature: sha256=<hex>`, the
    /// HMAC-SHA256 of `<timestamp>.<body>` with `X-RateThrottle-Timestamp` (Unix seconds).
    pub secret: Option<String>,
}

/// Email over SMTP.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    /// The SMTP server.
    pub smtp_host: String,
    /// Its port (587).
    pub smtp_port: u16,
    /// STARTTLS, required when set (true); plain SMTP otherwise (a local relay).
    pub use_tls: bool,
    /// Log in with these when both are given.
    pub username: Option<String>,
    /// The password (a secret).
    pub password: Option<String>,
    /// The sender.
    pub from_address: String,
    /// The recipients.
    pub to_addresses: Vec<String>,
}

/// PagerDuty Events API v2.
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDuty {
    /// The integration's routing key (a secret).
    pub routing_key: String,
    /// The Events API endpoint (`https://events.pagerduty.com/v2/enqueue`).
    pub url: String,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Alerting: thresholds, a cooldown, the channels, and how deliveries are tried.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AlertSettings {
    /// Whether alerts are sent at all.
    pub enabled: bool,
    /// The same event at the same severity is sent once per cooldown (300 s), by the whole
    /// fleet when the cooldown is kept in a shared store.
    pub cooldown: Duration,
    /// When to alert.
    pub thresholds: Thresholds,
    /// Slack, when set.
    pub slack: Option<Slack>,
    /// A webhook, when set.
    pub webhook: Option<Webhook>,
    /// Email, when set.
    pub email: Option<Email>,
    /// PagerDuty, when set.
    pub pagerduty: Option<PagerDuty>,
    /// Each attempt's time limit (10 s).
    pub timeout: Duration,
    /// Attempts per channel (3): a failed one is retried after `backoff`, doubling.
    pub attempts: u32,
    /// The pause before the first retry (0.5 s).
    pub backoff: Duration,
    /// Alerts being delivered at once, at most (64); past it new ones are dropped and counted.
    pub max_in_flight: usize,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            enabled: true,
            cooldown: Duration::from_secs(300),
            thresholds: Thresholds::default(),
            slack: None,
            webhook: None,
            email: None,
            pagerduty: None,
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(500),
            max_in_flight: 64,
        }
    }
}

impl AlertSettings {
    /// The names of the channels set.
    pub fn channels(&self) -> Vec<&'static str> {
        [
            ("slack", self.slack.is_some()),
            ("webhook", self.webhook.is_some()),
            ("email", self.email.is_some()),
            ("pagerduty", self.pagerduty.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// Checks the settings: a clear message for the first problem.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.thresholds;
        for (name, levels) in [
            ("block_rate", t.block_rate),
            ("violations_per_minute", t.violations_per_minute),
            ("ddos_score", t.ddos_score),
            ("store_errors_per_minute", t.store_errors_per_minute),
        ] {
            if !(levels.warning >= 0.0 && levels.warning <= levels.critical) {
                return Err(format!(
                    "thresholds.{name}: the warning ({}) must be from 0 up to the critical ({})",
                    levels.warning, levels.critical
                ));
            }
        }
        if self.attempts == 0 {
            return Err("attempts must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be above 0".into());
        }
        if let Some(slack) = &self.slack {
            if slack.webhook_url.is_empty() {
                return Err("Slack webhook_url not configured".into());
            }
        }
        if let Some(webhook) = &self.webhook {
            if webhook.url.is_empty() {
                return Err("Webhook url not configured".into());
            }
        }
        if let Some(pagerduty) = &self.pagerduty {
            if pagerduty.routing_key.is_empty() {
                return Err("PagerDuty routing_key not configured".into());
            }
        }
        if let Some(email) = &self.email {
            if email.to_addresses.is_empty() {
                return Err("Email to_addresses is empty".into());
            }
        }
        Ok(())
    }
}
