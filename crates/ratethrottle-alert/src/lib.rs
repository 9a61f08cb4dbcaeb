//! Monitoring and alerts for ratethrottle: a [`Monitor`] takes periodic snapshots of a limiter
//! (logged, written as JSON), and a [`Dispatcher`] reads a limiter's figures ([`Reading`]), checks
//! them against [`Thresholds`] (block rate, violations per minute, the DDoS detection rate,
//! store errors, circuit openings), and sends each alert to Slack, a webhook (JSON, signed
//! with HMAC-SHA256 when given a secret), email over SMTP (STARTTLS) and PagerDuty Events v2.
//!
//! - **Once per cooldown, fleet-wide:** each event and severity is claimed in the limiter's
//!   store with an atomic set-if-absent (`SET NX` on Redis), so N processes send one alert.
//! - **Never in the way:** deliveries run in the background, each channel with a time limit
//!   and retries with backoff; a claim no channel honoured is given back.
//! - **Every endpoint configurable**, PagerDuty's included, so a test can receive them.
//!
//! The payloads are the original library's (`severity`, `event`, `rule`, `value`,
//! `threshold`, `timestamp`, `icon`, `title`, `message`, `details`).

mod alert;
mod channel;
mod dispatcher;
mod monitor;
mod settings;

pub use alert::Alert;
pub use channel::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use dispatcher::{AlertStatistics, Dispatcher, Outcome, Reading, cooldown_key};
pub use monitor::{Monitor, MonitorSettings, MonitorTask, limiter_json};
pub use settings::{
    AlertSettings, Email, Levels, PAGERDUTY_EVENTS_URL, PagerDuty, Severity, Slack, Thresholds,
    Webhook,
};
