//! [`AdaptiveSummary`]: an adaptive limiter's figures as a process publishes them (fleet
//! telemetry) and as `ratethrottle stats` and `monitor` show them, merged across processes.

use serde::{Deserialize, Serialize};

use super::{AdaptiveLimiter, UserProfile};
use ratethrottle::store::Store;

/// One client's trust figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustFigure {
    /// The client.
    pub identifier: String,
    /// Its trust, 0 to 1.
    pub trust_score: f64,
    /// Its anomalous requests.
    pub anomaly_count: u64,
    /// Its requests over its limit.
    pub violation_count: u64,
    /// Its limit now.
    pub current_limit: u64,
}

impl TrustFigure {
    fn of(profile: &UserProfile) -> Self {
        TrustFigure {
            identifier: profile.identifier.clone(),
            trust_score: profile.trust_score,
            anomaly_count: profile.anomaly_count,
            violation_count: profile.violation_count,
            current_limit: profile.current_limit,
        }
    }
}

/// An adaptive limiter's figures: counts, trust across its profiles, and the least trusted
/// clients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdaptiveSummary {
    /// The base limit (the largest, when merged from processes that differ).
    pub base_limit: u64,
    /// Profiles kept.
    pub profiles: u64,
    /// Adaptive checks.
    pub total_requests: u64,
    /// Anomalous checks.
    pub anomalies_detected: u64,
    /// Profiles whose trust is below 0.3.
    pub low_trust: u64,
    /// The mean trust of the profiles (0 without any).
    pub mean_trust: f64,
    /// The least trusted clients, lowest first.
    pub least_trusted: Vec<TrustFigure>,
}

impl AdaptiveSummary {
    /// A summary published as JSON, or `None` for text that is not one.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Adds `other`'s figures (another process's): counts add up, the mean trust is weighted
    /// by profiles, and the least trusted lists merge, keeping `top`.
    pub fn merge(&mut self, other: &AdaptiveSummary, top: usize) {
        let profiles = self.profiles + other.profiles;
        if profiles > 0 {
            self.mean_trust = (self.mean_trust * self.profiles as f64
                + other.mean_trust * other.profiles as f64)
                / profiles as f64;
        }
        self.profiles = profiles;
        self.base_limit = self.base_limit.max(other.base_limit);
        self.total_requests += other.total_requests;
        self.anomalies_detected += other.anomalies_detected;
        self.low_trust += other.low_trust;
        self.least_trusted
            .extend(other.least_trusted.iter().cloned());
        self.least_trusted
            .sort_by(|a, b| a.trust_score.total_cmp(&b.trust_score));
        self.least_trusted.truncate(top);
    }
}

impl<S: Store> AdaptiveLimiter<S> {
    /// The figures now, with the `top` least trusted clients.
    pub fn summary(&self, top: usize) -> AdaptiveSummary {
        let stats = self.statistics();
        AdaptiveSummary {
            base_limit: self.settings.base_limit,
            profiles: stats.profiles,
            total_requests: stats.total_requests,
            anomalies_detected: stats.anomalies_detected,
            low_trust: stats.low_trust,
            mean_trust: stats.mean_trust,
            least_trusted: self
                .least_trusted(top)
                .iter()
                .map(TrustFigure::of)
                .collect(),
        }
    }

    /// [`AdaptiveLimiter::summary`] as JSON, for fleet telemetry
    /// (`TelemetryTask::report("adaptive", ...)`).
    pub fn summary_json(&self, top: usize) -> String {
        serde_json::to_string(&self.summary(top)).unwrap_or_default()
    }
}
