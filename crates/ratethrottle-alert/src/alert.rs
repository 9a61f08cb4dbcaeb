//! An alert, and the bodies each channel is sent (the original's payloads).

use ratethrottle::clock::Nanos;
use serde_json::{Map, Value, json};

use crate::settings::{PagerDuty, Severity, Slack};

/// One alert: an event that crossed a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// How serious.
    pub severity: Severity,
    /// What happened (`block_rate_exceeded`, …).
    pub event: String,
    /// The rule concerned, if any.
    pub rule: String,
    /// The value read.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// When (ISO 8601, UTC).
    pub timestamp: String,
    /// More to say, shown with the alert.
    pub details: Map<String, Value>,
}

impl Alert {
    /// An alert of `event` at `severity` with `value` over `threshold`, at `now`.
    pub fn new(
        severity: Severity,
        event: impl Into<String>,
        value: f64,
        threshold: f64,
        now: Nanos,
    ) -> Self {
        Alert {
            severity,
            event: event.into(),
            rule: String::new(),
            value,
            threshold,
            timestamp: ratethrottle_protect::analytics::iso_timestamp(now),
            details: Map::new(),
        }
    }

    /// The same, about `rule`.
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = rule.into();
        self
    }

    /// The same, with `key: value` among the details.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    fn icon(&self) -> &'static str {
        match self.severity {
            Severity::Critical => "🔴",
            Severity::Warning => "🟡",
        }
    }

    /// `🔴 RateThrottle [CRITICAL] block_rate_exceeded`.
    pub fn title(&self) -> String {
        format!(
            "{} RateThrottle [{}] {}",
            self.icon(),
            self.severity.as_str().to_ascii_uppercase(),
            self.event
        )
    }

    /// `block_rate_exceeded — value 25.00 exceeded critical threshold 20.00 (rule: api)`.
    pub fn message(&self) -> String {
        let rule = if self.rule.is_empty() {
            String::new()
        } else {
            format!(" (rule: {})", self.rule)
        };
        format!(
            "{} — value {:.2} exceeded {} threshold {:.2}{rule}",
            self.event,
            self.value,
            self.severity.as_str(),
            self.threshold
        )
    }

    /// The payload a webhook receives, with the original's keys.
    pub fn payload(&self) -> Value {
        json!({
            "severity": self.severity.as_str(),
            "event": self.event,
            "rule": self.rule,
            "value": self.value,
            "threshold": self.threshold,
            "timestamp": self.timestamp,
            "icon": self.icon(),
            "title": self.title(),
            "message": self.message(),
            "details": self.details,
        })
    }

    /// The message Slack is posted.
    pub fn slack_body(&self, slack: &Slack) -> Value {
        let short =
            |title: &str, value: String| json!({"title": title, "value": value, "short": true});
        let mut fields = vec![
            short("Event", self.event.clone()),
            short("Severity", self.severity.as_str().to_ascii_uppercase()),
            short(
                "Value",
                format!("{}", (self.value * 1000.0).round() / 1000.0),
            ),
            short("Threshold", format!("{}", self.threshold)),
            json!({"title": "Time", "value": self.timestamp, "short": false}),
        ];
        for (key, value) in &self.details {
            fields.push(short(key, display(value)));
        }
        let color = match self.severity {
            Severity::Critical => "danger",
            Severity::Warning => "warning",
        };
        json!({
            "channel": slack.channel,
            "username": slack.username,
            "text": self.title(),
            "attachments": [{"color": color, "fields": fields}],
        })
    }

    /// The event PagerDuty is sent (Events API v2, `trigger`).
    pub fn pagerduty_body(&self, pagerduty: &PagerDuty) -> Value {
        let mut custom = Map::new();
        custom.insert("event".into(), json!(self.event));
        custom.insert("value".into(), json!(self.value));
        custom.insert("threshold".into(), json!(self.threshold));
        custom.extend(self.details.clone());
        json!({
            "routing_key": pagerduty.routing_key,
            "event_action": "trigger",
            "dedup_key": format!("ratethrottle:{}:{}", self.event, self.severity.as_str()),
            "payload": {
                "summary": self.message(),
                "severity": self.severity.as_str(),
                "source": "ratethrottle",
                "timestamp": self.timestamp,
                "custom_details": custom,
            },
        })
    }

    /// The text of the email.
    pub fn email_text(&self) -> String {
        let mut lines = vec![
            self.message(),
            String::new(),
            format!("Timestamp : {}", self.timestamp),
            format!("Event     : {}", self.event),
            format!(
                "Severity  : {}",
                self.severity.as_str().to_ascii_uppercase()
            ),
            format!("Value     : {:.4}", self.value),
            format!("Threshold : {:.4}", self.threshold),
        ];
        if !self.details.is_empty() {
            lines.push(String::new());
            lines.push("Details:".into());
            for (key, value) in &self.details {
                lines.push(format!("  {key}: {}", display(value)));
            }
        }
        lines.join("\n")
    }
}

/// A detail as text (strings without their quotes).
fn display(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
