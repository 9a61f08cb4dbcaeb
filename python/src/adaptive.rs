//! `NativeAdaptive`: the engine under `ratethrottle.adaptive.AdaptiveRateLimiter` (crate
//! `ratethrottle-protect`), enforcing on a `NativeCore`'s limiter.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use ratethrottle::store::Store;
use ratethrottle_config::ConfiguredStore;
use ratethrottle_protect::adaptive::{
    AdaptiveDecision, AdaptiveError, AdaptiveLimiter, AdaptiveSettings, Anomaly, Persistence,
    Saver, UserProfile,
};
use serde_json::{Map, Value};

use crate::core::NativeCore;
use crate::errors::{Raise, log};
use crate::protect::unix;
use crate::runtime::wait;

/// A Python callable the engine's callback calls, settable at any time.
type Slot = Arc<Mutex<Option<Py<PyAny>>>>;

/// The adaptive limiter over a core's limiter.
#[pyclass(frozen, module = "ratethrottle._native")]
pub(crate) struct NativeAdaptive {
    adaptive: Arc<AdaptiveLimiter<ConfiguredStore>>,
    at_once: bool,
    on_anomaly: Slot,
    on_trust_change: Slot,
    /// Saves the model while running (`persist`).
    saver: Mutex<Option<Saver>>,
}

impl NativeAdaptive {
    /// The limiter, for the framework adapters' policies.
    pub(crate) fn limiter(&self) -> Arc<AdaptiveLimiter<ConfiguredStore>> {
        Arc::clone(&self.adaptive)
    }
}

/// The original's result dict: of a decision, or (`Err`) of a check the store could not
/// decide, refused without learning anything.
fn result<'py>(
    py: Python<'py>,
    decided: Result<&AdaptiveDecision, u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let (allowed, adjusted, remaining, trust, anomaly, confidence, reason, base, retry) =
        match decided {
            Ok(d) => (
                d.status.allowed,
                d.adjusted_limit,
                d.status.remaining,
                d.trust_score,
                d.anomaly_score,
                d.confidence,
                d.reason.as_str(),
                d.base_limit,
                d.retry_after_secs(),
            ),
            Err(base) => (false, base, 0, 0.5, 0.0, 0.0, "storage_error", base, 1),
        };
    dict.set_item(intern!(py, "allowed"), allowed)?;
    dict.set_item(intern!(py, "adjusted_limit"), adjusted)?;
    dict.set_item(intern!(py, "remaining"), remaining)?;
    dict.set_item(intern!(py, "trust_score"), trust)?;
    dict.set_item(intern!(py, "anomaly_score"), anomaly)?;
    dict.set_item(intern!(py, "confidence"), confidence)?;
    dict.set_item(intern!(py, "reason"), reason)?;
    dict.set_item(intern!(py, "base_limit"), base)?;
    dict.set_item(intern!(py, "retry_after"), retry)?;
    Ok(dict)
}

/// Calls the callable in `slot` with `args`, logging (not raising) what it raises, as the
/// original does.
fn call(
    slot: &Slot,
    what: &str,
    args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>,
) {
    Python::attach(|py| {
        let Some(callback) = slot.lock().as_ref().map(|c| c.clone_ref(py)) else {
            return;
        };
        let called = args(py).and_then(|args| callback.call1(py, args));
        if let Err(error) = called {
            log(py, "error", &format!("Error in {what} callback: {error}"));
        }
    });
}

fn anomaly_info<'py>(py: Python<'py>, anomaly: &Anomaly) -> PyResult<Bound<'py, PyDict>> {
    let info = PyDict::new(py);
    info.set_item("identifier", &anomaly.identifier)?;
    info.set_item("anomaly_score", anomaly.anomaly_score)?;
    info.set_item("current_rate", anomaly.current_rate)?;
    info.set_item("expected_rate", anomaly.expected_rate)?;
    info.set_item("timestamp", unix(anomaly.at))?;
    Ok(info)
}

fn profile_dict<'py>(py: Python<'py>, profile: &UserProfile) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("identifier", &profile.identifier)?;
    dict.set_item("first_seen", unix(profile.first_seen))?;
    dict.set_item("last_seen", unix(profile.last_seen))?;
    dict.set_item("age_days", profile.age_days)?;
    dict.set_item("request_count", profile.request_count)?;
    dict.set_item("mean_rate", profile.mean_rate)?;
    dict.set_item("std_rate", profile.std_rate)?;
    dict.set_item("trust_score", profile.trust_score)?;
    dict.set_item("violation_count", profile.violation_count)?;
    dict.set_item("anomaly_count", profile.anomaly_count)?;
    dict.set_item("good_behavior_days", profile.good_behavior_days)?;
    dict.set_item("current_limit", profile.current_limit)?;
    let metadata = serde_json::to_string(&profile.metadata).unwrap_or_else(|_| "{}".into());
    dict.set_item("metadata", metadata)?;
    Ok(dict)
}

fn settings_error(error: AdaptiveError) -> PyErr {
    Raise::Configuration.err(error.to_string())
}

#[pymethods]
impl NativeAdaptive {
    /// An adaptive limiter enforcing on `core` (which gains the rule `rule`).
    #[new]
    #[pyo3(signature = (core, base_limit, window, learning_rate, anomaly_threshold, trust_enabled, min_multiplier, max_multiplier, max_profiles = 100_000, rule = "adaptive", strategy = "sliding_counter"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        core: &Bound<'_, NativeCore>,
        base_limit: u64,
        window: f64,
        learning_rate: f64,
        anomaly_threshold: f64,
        trust_enabled: bool,
        min_multiplier: f64,
        max_multiplier: f64,
        max_profiles: usize,
        rule: &str,
        strategy: &str,
    ) -> PyResult<Self> {
        if !(window.is_finite() && window > 0.0 && window < 1e12) {
            return Err(Raise::Configuration.err(format!(
                "adaptive.window must be a number of seconds above 0, got {window}"
            )));
        }
        let mut settings = AdaptiveSettings::default();
        settings.base_limit = base_limit;
        settings.window = Duration::from_secs_f64(window);
        settings.learning_rate = learning_rate;
        settings.anomaly_threshold = anomaly_threshold;
        settings.trust_enabled = trust_enabled;
        settings.min_multiplier = min_multiplier;
        settings.max_multiplier = max_multiplier;
        settings.max_profiles = max_profiles;
        settings.rule = rule.to_owned();
        settings.strategy = strategy
            .parse()
            .map_err(|e: ratethrottle::RuleError| Raise::Configuration.err(e.to_string()))?;
        let limiter = core.get().limiter().clone();
        let at_once = limiter.store().answers_at_once();
        let adaptive = AdaptiveLimiter::new(limiter, settings).map_err(settings_error)?;
        let (on_anomaly, on_trust_change): (Slot, Slot) = Default::default();
        let slot = Arc::clone(&on_anomaly);
        adaptive.on_anomaly(move |anomaly| {
            call(&slot, "on_anomaly", |py| {
                (anomaly_info(py, anomaly)?,).into_pyobject(py)
            });
        });
        let slot = Arc::clone(&on_trust_change);
        adaptive.on_trust_change(move |identifier, trust| {
            call(&slot, "on_trust_change", |py| {
                (identifier, trust).into_pyobject(py)
            });
        });
        Ok(NativeAdaptive {
            adaptive: Arc::new(adaptive),
            at_once,
            on_anomaly,
            on_trust_change,
            saver: Mutex::new(None),
        })
    }

    /// Sets (or clears, with `None`) the callable called with each anomaly's info dict.
    fn set_on_anomaly(&self, callback: Option<Py<PyAny>>) {
        *self.on_anomaly.lock() = callback;
    }

    /// Sets (or clears) the callable called with `(identifier, trust_score)`.
    fn set_on_trust_change(&self, callback: Option<Py<PyAny>>) {
        *self.on_trust_change.lock() = callback;
    }

    /// The rule the limits are enforced under.
    #[getter]
    pub(crate) fn rule(&self) -> &'static str {
        self.adaptive.rule().name()
    }

    /// One check: the original's result dict. `metadata` is a JSON object's text.
    #[pyo3(signature = (identifier, metadata = None))]
    fn check<'py>(
        &self,
        py: Python<'py>,
        identifier: &Bound<'py, PyString>,
        metadata: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let identifier = identifier.to_cow()?;
        let metadata: Option<Map<String, Value>> = match metadata {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                PyValueError::new_err(format!("request_metadata is not a JSON object: {e}"))
            })?),
            None => None,
        };
        let adaptive = &self.adaptive;
        let decided = match adaptive.check_now(&identifier, metadata.as_ref()) {
            Some(decided) => decided,
            None => wait(
                py,
                self.at_once,
                adaptive.check(&identifier, metadata.as_ref()),
            ),
        };
        match decided {
            Ok(decision) => result(py, Ok(&decision)),
            Err(error) => {
                // Only a store failing closed gets here (failing open is a degraded answer).
                log(py, "error", &format!("adaptive check failed: {error}"));
                result(py, Err(adaptive.settings().base_limit))
            }
        }
    }

    /// The limit `identifier` has now, learning nothing.
    fn limit_for(&self, identifier: &str) -> u64 {
        self.adaptive.limit_for(identifier)
    }

    /// Adds `adjustment` to the trust of `identifier`; its new trust, or `None` if unknown.
    fn update_trust_score(&self, identifier: &str, adjustment: f64) -> Option<f64> {
        self.adaptive.update_trust_score(identifier, adjustment)
    }

    /// The profile of `identifier` (times as Unix seconds, metadata as JSON text), or `None`.
    fn user_profile<'py>(
        &self,
        py: Python<'py>,
        identifier: &str,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.adaptive
            .user_profile(identifier)
            .map(|profile| profile_dict(py, &profile))
            .transpose()
    }

    /// The `count` least trusted profiles, lowest first.
    fn least_trusted<'py>(
        &self,
        py: Python<'py>,
        count: usize,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.adaptive
            .least_trusted(count)
            .iter()
            .map(|profile| profile_dict(py, profile))
            .collect()
    }

    /// Forgets `identifier`'s profile; `True` if it had one.
    fn reset_user(&self, identifier: &str) -> bool {
        self.adaptive.reset_user(identifier)
    }

    /// The counts and the profiles kept.
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.adaptive.statistics();
        let dict = PyDict::new(py);
        dict.set_item("total_requests", stats.total_requests)?;
        dict.set_item("anomalies_detected", stats.anomalies_detected)?;
        dict.set_item("limits_adjusted", stats.limits_adjusted)?;
        dict.set_item("users_tracked", stats.users_tracked)?;
        dict.set_item("profiles", stats.profiles)?;
        dict.set_item("low_trust", stats.low_trust)?;
        dict.set_item("mean_trust", stats.mean_trust)?;
        dict.set_item("callback_panics", stats.callback_panics)?;
        Ok(dict)
    }

    /// The model as JSON text.
    fn model_json(&self, py: Python<'_>) -> String {
        let adaptive = Arc::clone(&self.adaptive);
        py.detach(move || adaptive.model_json())
    }

    /// Loads a model's JSON text; the number of profiles loaded. Raises `ValueError` saying
    /// what is wrong (and changes nothing) for text that is not a model.
    fn load_model_json(&self, py: Python<'_>, text: &str) -> PyResult<usize> {
        let adaptive = Arc::clone(&self.adaptive);
        py.detach(move || adaptive.load_model_json(text))
            .map_err(PyValueError::new_err)
    }

    /// Keeps the model in `path`: loads it now when `load_on_start` and it exists (a corrupt
    /// file raises `ValueError`), saves it every `save_every` seconds (0: never) and when
    /// `stop_saving` is called. Replaces an earlier saver (which saves once more).
    fn persist(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        save_every: f64,
        load_on_start: bool,
    ) -> PyResult<()> {
        let mut persistence = Persistence::new(path);
        persistence.save_every = (save_every.is_finite() && save_every > 0.0)
            .then(|| Duration::from_secs_f64(save_every));
        persistence.load_on_start = load_on_start;
        let adaptive = Arc::clone(&self.adaptive);
        let saver = py
            .detach(move || adaptive.persist(persistence))
            .map_err(|error| PyValueError::new_err(error.to_string()))?;
        let previous = self.saver.lock().replace(saver);
        py.detach(move || drop(previous));
        Ok(())
    }

    /// Saves the model one last time and stops the saver (no-op without one).
    fn stop_saving(&self, py: Python<'_>) {
        let saver = self.saver.lock().take();
        py.detach(move || drop(saver));
    }

    /// Saves the model to `path` atomically (its folder made); `OSError` if it cannot.
    fn export_model(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let adaptive = Arc::clone(&self.adaptive);
        py.detach(move || adaptive.export_model(&path))
            .map_err(|error| PyOSError::new_err(error.to_string()))
    }
}
