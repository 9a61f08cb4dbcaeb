//! [`AdaptiveSettings`]: the original's `AdaptiveRateLimiter` arguments, defaults and checks,
//! and [`AdaptiveError`].

use std::path::PathBuf;
use std::time::Duration;

use ratethrottle::{Rule, Strategy};

/// What can go wrong with the adaptive limiter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdaptiveError {
    /// A setting out of its range.
    #[error("adaptive.{key} must be {range}, got {got}")]
    Setting {
        /// The setting's name.
        key: &'static str,
        /// What is allowed, in words.
        range: &'static str,
        /// The value given.
        got: String,
    },
    /// A model file that cannot be read, or is not a model; nothing was loaded.
    #[error("cannot load the adaptive model from {path}: {reason}; the model is unchanged")]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model that cannot be written.
    #[error("cannot save the adaptive model to {path}: {source}")]
    Save {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The limiter refused the adaptive rule, or a check failed.
    #[error(transparent)]
    Limiter(#[from] ratethrottle::Error),
}

/// How the adaptive limiter learns and limits (the original's `AdaptiveRateLimiter`
/// arguments, with its defaults), plus the bounds this implementation adds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveSettings {
    /// The limit per `window` a client starts from (100).
    pub base_limit: u64,
    /// The window (60 s).
    pub window: Duration,
    /// How fast the learned request rate follows the traffic, 0 to 1 (0.1).
    pub learning_rate: f64,
    /// The z-score above which a request rate is anomalous (3.0).
    pub anomaly_threshold: f64,
    /// Whether trust scales the limit (true).
    pub trust_enabled: bool,
    /// The lowest multiple of `base_limit` a client can get (0.5).
    pub min_multiplier: f64,
    /// The highest multiple of `base_limit` a client can get (3.0).
    pub max_multiplier: f64,
    /// The name of the rule the limits are enforced under (`"adaptive"`).
    pub rule: String,
    /// The strategy enforcing them (sliding_counter, as the original).
    pub strategy: Strategy,
    /// The most clients with a profile; the least recently seen is forgotten first (100,000).
    pub max_profiles: usize,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        AdaptiveSettings {
            base_limit: 100,
            window: Duration::from_secs(60),
            learning_rate: 0.1,
            anomaly_threshold: 3.0,
            trust_enabled: true,
            min_multiplier: 0.5,
            max_multiplier: 3.0,
            rule: "adaptive".to_owned(),
            strategy: Strategy::SlidingCounter,
            max_profiles: 100_000,
        }
    }
}

impl AdaptiveSettings {
    /// The fewest profiles that may be kept.
    pub const MIN_PROFILES: usize = 100;

    /// Checks every setting; the first one out of range, named.
    pub fn validate(&self) -> Result<(), AdaptiveError> {
        let error = |key, range, got: String| Err(AdaptiveError::Setting { key, range, got });
        if self.base_limit == 0 {
            return error("base_limit", "at least 1", "0".to_owned());
        }
        if self.window.is_zero() {
            return error("window", "above 0 seconds", "0".to_owned());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            let got = self.learning_rate.to_string();
            return error("learning_rate", "above 0 and at most 1", got);
        }
        if !(self.anomaly_threshold > 0.0 && self.anomaly_threshold.is_finite()) {
            let got = self.anomaly_threshold.to_string();
            return error("anomaly_threshold", "above 0", got);
        }
        if !(self.min_multiplier > 0.0 && self.min_multiplier.is_finite()) {
            let got = self.min_multiplier.to_string();
            return error("min_multiplier", "above 0", got);
        }
        if !(self.max_multiplier >= self.min_multiplier && self.max_multiplier <= 1000.0) {
            let got = self.max_multiplier.to_string();
            return error("max_multiplier", "from min_multiplier up to 1000", got);
        }
        if self.max_profiles < Self::MIN_PROFILES {
            let got = self.max_profiles.to_string();
            return error("max_profiles", "at least 100", got);
        }
        // The highest adjusted limit must be one the strategy can enforce.
        let highest = self.base_limit as f64 * self.max_multiplier;
        let rule = self.as_rule();
        if let Err(reason) = rule.validate().map_err(|e| e.to_string()).and_then(|()| {
            rule.check_limit(highest.min(u64::MAX as f64) as u64)
                .map_err(str::to_owned)
        }) {
            return Err(AdaptiveError::Setting {
                key: "base_limit",
                range: "a limit its rule can enforce at max_multiplier",
                got: reason,
            });
        }
        Ok(())
    }

    /// The rule the adjusted limits are enforced under: `base_limit` per `window` with the
    /// strategy, no block after a violation (as the original: the next window decides).
    pub fn as_rule(&self) -> Rule {
        Rule::new(self.rule.clone(), self.base_limit, self.window)
            .strategy(self.strategy)
            .block_duration(Duration::ZERO)
    }
}

/// Where and how often the model is saved (the `adaptive.persistence` section).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Persistence {
    /// The model's file.
    pub path: PathBuf,
    /// How often it is saved while running (`None`: only when the saver stops).
    pub save_every: Option<Duration>,
    /// Load the file (when it exists) when starting.
    pub load_on_start: bool,
}

impl Persistence {
    /// Persistence to `path`, loaded on start and saved on stop only.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Persistence {
            path: path.into(),
            save_every: None,
            load_on_start: true,
        }
    }
}
