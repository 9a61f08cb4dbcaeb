//! The model file: what the adaptive limiter learned, as versioned JSON.
//!
//! Version `"2"` is the original's `"1.0"` format plus each profile's `anomaly_count` and
//! `last_offence`; files of either version load. A file is read and checked whole before
//! anything changes: a corrupt one is an error and leaves the model as it was.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::profile::{Profile, RATE_HISTORY};
use super::{AdaptiveError, AdaptiveLimiter, AdaptiveSettings, Stats};
use ratethrottle::store::Store;

/// The version written.
pub(crate) const VERSION: &str = "2";
/// The versions read.
const READABLE: [&str; 2] = ["1.0", "2"];

#[derive(Serialize, Deserialize)]
struct ModelFile {
    version: String,
    #[serde(default)]
    timestamp: f64,
    #[serde(default)]
    config: Option<ModelConfig>,
    profiles: Map<String, Value>,
    #[serde(default)]
    stats: Stats,
}

#[derive(Serialize, Deserialize)]
struct ModelConfig {
    base_limit: u64,
    window: f64,
    learning_rate: f64,
    anomaly_threshold: f64,
    trust_enabled: bool,
    min_multiplier: f64,
    max_multiplier: f64,
}

#[derive(Serialize, Deserialize)]
struct ModelProfile {
    identifier: String,
    first_seen: f64,
    last_seen: f64,
    request_count: u64,
    mean_rate: f64,
    std_rate: f64,
    trust_score: f64,
    violation_count: u64,
    #[serde(default)]
    good_behavior_days: u64,
    #[serde(default)]
    request_rates: Vec<f64>,
    #[serde(default)]
    metadata: Map<String, Value>,
    #[serde(default)]
    anomaly_count: u64,
    #[serde(default)]
    last_offence: Option<f64>,
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Seconds since the epoch as nanoseconds, if they are a time.
fn nanos_of(seconds: f64) -> Option<u64> {
    (0.0..1.8e10)
        .contains(&seconds)
        .then_some((seconds * 1e9) as u64)
}

impl ModelProfile {
    fn of(identifier: &str, profile: &Profile, settings: &AdaptiveSettings, now: u64) -> Self {
        let per_minute = super::profile::per_minute(settings);
        ModelProfile {
            identifier: identifier.to_owned(),
            first_seen: seconds(profile.first_seen),
            last_seen: seconds(profile.last_seen),
            request_count: profile.request_count,
            mean_rate: profile.mean_rate,
            std_rate: profile.std_rate,
            trust_score: profile.trust_score,
            violation_count: profile.violation_count,
            good_behavior_days: profile.good_behavior_days(now),
            request_rates: profile
                .rates
                .counts()
                .map(|c| c as f64 * per_minute)
                .collect(),
            metadata: profile.metadata(),
            anomaly_count: profile.anomaly_count,
            last_offence: (profile.last_offence > 0).then(|| seconds(profile.last_offence)),
        }
    }

    /// The profile, or what is wrong with it.
    fn into_profile(self, settings: &AdaptiveSettings) -> Result<Profile, String> {
        let time = |what: &str, value: f64| {
            nanos_of(value).ok_or_else(|| format!("{what} {value} is not a time in seconds"))
        };
        let first_seen = time("first_seen", self.first_seen)?;
        let last_seen = time("last_seen", self.last_seen)?;
        let finite = |what: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(value)
            } else {
                Err(format!("{what} {value} is not a non-negative number"))
            }
        };
        let trust_score = finite("trust_score", self.trust_score)?;
        if trust_score > 1.0 {
            return Err(format!("trust_score {trust_score} is above 1"));
        }
        let mut profile = Profile::new(first_seen);
        profile.last_seen = last_seen.max(first_seen);
        profile.request_count = self.request_count;
        profile.mean_rate = finite("mean_rate", self.mean_rate)?;
        profile.std_rate = finite("std_rate", self.std_rate)?;
        profile.trust_score = trust_score;
        profile.violation_count = self.violation_count;
        profile.anomaly_count = self.anomaly_count;
        profile.last_offence = match self.last_offence {
            Some(at) => time("last_offence", at)?,
            None => 0,
        };
        // Rates per minute back to counts per window.
        let per_window = settings.window.as_secs_f64() / 60.0;
        let skip = self.request_rates.len().saturating_sub(RATE_HISTORY);
        for rate in self.request_rates.into_iter().skip(skip) {
            let rate = finite("a request rate", rate)?;
            profile.rates.push((rate * per_window).round() as u64);
        }
        profile.merge_metadata(&self.metadata);
        Ok(profile)
    }
}

impl<S: Store> AdaptiveLimiter<S> {
    /// What was learned, as the model file's JSON.
    pub fn model_json(&self) -> String {
        let now = self.now();
        let settings = &self.settings;
        let mut profiles = Map::new();
        let mut stats = Stats::default();
        self.profiles.each_shard(|shard| {
            stats.add(&shard.data);
            for entry in shard.entries() {
                let profile = ModelProfile::of(&entry.id, &entry.value, settings, now);
                // Serializing plain numbers and strings cannot fail.
                let value = serde_json::to_value(profile).unwrap_or(Value::Null);
                profiles.insert(entry.id.to_string(), value);
            }
        });
        let model = ModelFile {
            version: VERSION.to_owned(),
            timestamp: seconds(now),
            config: Some(ModelConfig {
                base_limit: settings.base_limit,
                window: settings.window.as_secs_f64(),
                learning_rate: settings.learning_rate,
                anomaly_threshold: settings.anomaly_threshold,
                trust_enabled: settings.trust_enabled,
                min_multiplier: settings.min_multiplier,
                max_multiplier: settings.max_multiplier,
            }),
            profiles,
            stats,
        };
        serde_json::to_string_pretty(&model).unwrap_or_default()
    }

    /// Loads a model from its JSON (as [`AdaptiveLimiter::model_json`] writes, or the
    /// original's version 1.0): its profiles replace those of the same clients, its counts
    /// replace the counts. The whole text is checked first; on error nothing changes. The
    /// number of profiles loaded.
    pub fn load_model_json(&self, text: &str) -> Result<usize, String> {
        let model: ModelFile =
            serde_json::from_str(text).map_err(|e| format!("not a model file: {e}"))?;
        if !READABLE.contains(&model.version.as_str()) {
            return Err(format!(
                "unknown model version {:?} (this version reads {})",
                model.version,
                READABLE.join(" and ")
            ));
        }
        let mut profiles = Vec::with_capacity(model.profiles.len());
        for (identifier, value) in model.profiles {
            let profile: ModelProfile = serde_json::from_value(value)
                .map_err(|e| format!("profile {identifier:?}: {e}"))?;
            let profile = profile
                .into_profile(&self.settings)
                .map_err(|e| format!("profile {identifier:?}: {e}"))?;
            profiles.push((identifier, profile));
        }
        let loaded = profiles.len();
        for (identifier, profile) in profiles {
            self.profiles.insert(&identifier, profile);
        }
        // The counts replace the counts: all of them in the first shard.
        let mut stats = Some(model.stats);
        self.profiles
            .each_shard(|shard| shard.data = stats.take().unwrap_or_default());
        Ok(loaded)
    }

    /// Saves what was learned to `path` (its folder made if missing), atomically: a reader
    /// sees the old file or the new one, never half of one.
    pub fn export_model(&self, path: impl AsRef<Path>) -> Result<(), AdaptiveError> {
        let path = path.as_ref();
        let save = |source| AdaptiveError::Save {
            path: path.to_owned(),
            source,
        };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(save)?;
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(format!(".{}.partial", std::process::id()));
        std::fs::write(&partial, self.model_json()).map_err(save)?;
        std::fs::rename(&partial, path).map_err(|error| {
            let _ = std::fs::remove_file(&partial);
            save(error)
        })
    }

    /// Loads the model saved at `path` (see [`AdaptiveLimiter::load_model_json`]); the
    /// number of profiles loaded. A missing, unreadable or corrupt file is an error that
    /// names it, and nothing changes.
    pub fn load_model(&self, path: impl AsRef<Path>) -> Result<usize, AdaptiveError> {
        let path = path.as_ref();
        let model = |reason: String| AdaptiveError::Model {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| model(e.to_string()))?;
        self.load_model_json(&text).map_err(model)
    }
}
