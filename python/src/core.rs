//! `NativeCore`: the engine behind `RateThrottleCore`. The Python class subclasses it and keeps
//! the original's Python-side attributes (`rules`, `whitelist`, `violation_callbacks`, ...).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compact_str::CompactString;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use ratethrottle::store::{MemoryStore, Store};
use ratethrottle::{Error, Limiter, Rule, RuleError, Scope, Strategy, Violation};
use ratethrottle_config::ConfiguredStore;

use crate::args::{Cost, Text};
use crate::clock::ManualClock;
use crate::errors::{Raise, engine_error, log};
use crate::runtime::{Ready, wait};
use crate::status::RateThrottleStatus;
use crate::store::NativeStore;

/// The engine: rules, lists, checks and metrics over one store.
#[pyclass(frozen, subclass, module = "ratethrottle._native")]
pub(crate) struct NativeCore {
    limiter: Limiter<ConfiguredStore>,
    /// Whether checks complete without waiting (the memory store): then they run on the
    /// caller's thread with the GIL held, which is cheaper than releasing it.
    at_once: bool,
    /// Checks naming no rule that exists, counted as denied (as the original does).
    unknown_rule_checks: AtomicU64,
    /// The last rule name checked, as Python passed it and as text: callers pass the same
    /// string object again and again, and recognising it skips converting it.
    last_rule: parking_lot::Mutex<Option<(Py<PyString>, CompactString)>>,
}

impl NativeCore {
    /// The Python status for the result of a check; runs the violation callbacks of a denial
    /// by the strategy.
    fn answer(
        &self,
        slf: &Bound<'_, Self>,
        identifier: &str,
        result: Result<ratethrottle::Status, Error>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<RateThrottleStatus>> {
        let py = slf.py();
        let status = match result {
            Ok(status) => {
                let limited = status.verdict == ratethrottle::Verdict::Limited;
                let out = RateThrottleStatus::from_status(status);
                if limited {
                    let out = Py::new(py, out)?;
                    self.report_violation(slf, identifier, &out, metadata)?;
                    return Ok(out);
                }
                out
            }
            Err(error @ Error::UnknownRule { .. }) => {
                self.unknown_rule_checks.fetch_add(1, Ordering::Relaxed);
                log(py, "error", &error.to_string());
                RateThrottleStatus::failure("unknown_rule", self.now_secs())
            }
            Err(error @ Error::InvalidCost { .. }) => {
                return Err(pyo3::exceptions::PyValueError::new_err(error.to_string()));
            }
            Err(error) => {
                // An outage is logged once per degraded period by the store, not per check.
                let level = if error.is_store_unavailable() {
                    "debug"
                } else {
                    "error"
                };
                log(py, level, &format!("rate limit check failed: {error}"));
                RateThrottleStatus::failure("storage_error", self.now_secs())
            }
        };
        Py::new(py, status)
    }

    /// The engine's limiter.
    pub(crate) fn limiter(&self) -> &Limiter<ConfiguredStore> {
        &self.limiter
    }

    /// Hands a violation to `self._report_violation` (Python) when callbacks are registered,
    /// with the engine's record of it (its time, block end and retry), which the engine's
    /// violation hook left on this thread as the check decided.
    pub(crate) fn report_violation(
        &self,
        slf: &Bound<'_, Self>,
        identifier: &str,
        status: &Py<RateThrottleStatus>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let rule = status.borrow(slf.py()).rule().map(str::to_owned);
        let recorded = LAST_VIOLATION
            .with(|slot| slot.borrow_mut().take())
            .filter(|violation| Some(violation.rule) == rule.as_deref());
        let Ok(callbacks) = slf.getattr(pyo3::intern!(slf.py(), "violation_callbacks")) else {
            return Ok(());
        };
        if callbacks.is_truthy()? {
            let py = slf.py();
            let recorded = recorded
                .map(|violation| violation_dict(py, &violation))
                .transpose()?;
            slf.call_method1(
                pyo3::intern!(py, "_report_violation"),
                (identifier, status, metadata, recorded),
            )?;
        }
        Ok(())
    }

    /// The rule name `name` as text, from the cache when it is the string object of the
    /// last call (the cache keeps that object alive, so its address cannot be reused).
    fn rule_name(&self, name: &Bound<'_, PyString>) -> PyResult<CompactString> {
        let mut last = self.last_rule.lock();
        if let Some((cached, text)) = last.as_ref()
            && cached.as_ptr() == name.as_ptr()
        {
            return Ok(text.clone());
        }
        let text = CompactString::from(name.to_cow()?);
        *last = Some((name.clone().unbind(), text.clone()));
        Ok(text)
    }

    fn now_secs(&self) -> u64 {
        self.limiter.now().as_nanos() / 1_000_000_000
    }

    fn empty_identifier(&self, py: Python<'_>) -> RateThrottleStatus {
        log(
            py,
            "warning",
            "Empty identifier provided to check_rate_limit",
        );
        RateThrottleStatus::failure("error", self.now_secs())
    }

    /// A check on this thread (the GIL released only while Redis is awaited).
    fn check_here(
        slf: &Bound<'_, Self>,
        identifier: &str,
        rule_name: &str,
        metadata: Option<&Bound<'_, PyAny>>,
        cost: u64,
    ) -> PyResult<Py<RateThrottleStatus>> {
        let this = slf.get();
        if identifier.is_empty() {
            return Py::new(slf.py(), this.empty_identifier(slf.py()));
        }
        let result = match this.limiter.check_now(identifier, rule_name, cost) {
            Some(result) => result,
            None => this.wait(slf.py(), this.limiter.check_n(identifier, rule_name, cost)),
        };
        this.answer(slf, identifier, result, metadata)
    }

    fn wait<F>(&self, py: Python<'_>, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        wait(py, self.at_once, future)
    }
}

fn rule_error(error: RuleError) -> PyErr {
    match error {
        RuleError::UnknownStrategy { .. } => Raise::StrategyNotFound.err(error.to_string()),
        other => Raise::InvalidRule.err(other.to_string()),
    }
}

fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Raise::InvalidRule.err(format!(
            "{what} must be a number of seconds >= 0, got {value}"
        ))
    })
}

/// `rule` as `RateThrottleRule` keyword arguments (whole seconds as `int`, as users write
/// them).
pub(crate) fn rule_kwargs<'py>(py: Python<'py>, rule: &Rule) -> PyResult<Bound<'py, PyDict>> {
    let seconds = |d: Duration| -> PyResult<Bound<'py, PyAny>> {
        Ok(if d.subsec_nanos() == 0 {
            d.as_secs().into_pyobject(py)?.into_any()
        } else {
            d.as_secs_f64().into_pyobject(py)?.into_any()
        })
    };
    let kwargs = PyDict::new(py);
    kwargs.set_item("name", &rule.name)?;
    kwargs.set_item("limit", rule.limit)?;
    kwargs.set_item("window", seconds(rule.window)?)?;
    kwargs.set_item("scope", rule.scope.as_str())?;
    kwargs.set_item("block_duration", seconds(rule.block_duration)?)?;
    kwargs.set_item("strategy", rule.strategy.as_str())?;
    kwargs.set_item("burst", rule.burst)?;
    Ok(kwargs)
}

thread_local! {
    /// The violation the engine recorded last on this thread: its hook runs as the check
    /// decides, on the thread that then builds the Python status.
    static LAST_VIOLATION: std::cell::RefCell<Option<Violation>> = const { std::cell::RefCell::new(None) };
}

fn violation_dict<'py>(py: Python<'py>, violation: &Violation) -> PyResult<Bound<'py, PyDict>> {
    let unix = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let dict = PyDict::new(py);
    dict.set_item("identifier", &violation.identifier)?;
    dict.set_item("rule_name", violation.rule)?;
    dict.set_item("timestamp", unix(violation.at))?;
    dict.set_item("limit", violation.limit)?;
    dict.set_item("cost", violation.cost)?;
    dict.set_item("blocked_until", violation.blocked_until.map(unix))?;
    dict.set_item(
        "retry_after",
        violation.retry_after.as_secs_f64().ceil() as u64,
    )?;
    dict.set_item("scope", violation.scope.as_str())?;
    Ok(dict)
}

#[pymethods]
impl NativeCore {
    /// An engine over `storage` (an `InMemoryStorage`/`RedisStorage`, or a `NativeStore`;
    /// default: a new in-memory store). `clock` (a `ManualClock`) replaces the system clock.
    #[new]
    #[pyo3(signature = (storage = None, use_distributed_lists = true, *, clock = None))]
    fn new(
        storage: Option<&Bound<'_, PyAny>>,
        use_distributed_lists: bool,
        clock: Option<&Bound<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let _ = use_distributed_lists; // Lists always live in the store: shared when Redis.
        let native = match storage {
            None => None,
            Some(storage) => match storage.cast::<NativeStore>() {
                Ok(native) => Some(native.clone()),
                Err(_) => storage
                    .getattr("_native")
                    .ok()
                    .and_then(|n| n.cast_into::<NativeStore>().ok()),
            },
        };
        let store = match (storage, native) {
            (None, _) => ConfiguredStore::Memory(MemoryStore::new()),
            (Some(_), Some(native)) => {
                if let Some(clock) = clock {
                    native.get().adopt_clock(&clock.get().0);
                }
                native.get().store.clone()
            }
            // A user's StorageBackend (or anything with get, set and delete).
            (Some(storage), None) => crate::backend::PyBackend::store(storage)?,
        };
        let at_once = store.answers_at_once();
        let builder = Limiter::builder().store(store);
        let limiter = match clock {
            Some(clock) => builder.clock(clock.get().0.clone()).build(),
            None => builder.build(),
        };
        limiter.on_violation(|violation| {
            LAST_VIOLATION.with(|slot| *slot.borrow_mut() = Some(violation.clone()));
        });
        Ok(NativeCore {
            limiter,
            at_once,
            unknown_rule_checks: AtomicU64::new(0),
            last_rule: parking_lot::Mutex::new(None),
        })
    }

    /// Adds or replaces a rule; raises `InvalidRuleError` or `StrategyNotFoundError`.
    #[pyo3(signature = (name, limit, window, scope = "ip", block_duration = 300.0, strategy = "sliding_counter", burst = None))]
    #[allow(clippy::too_many_arguments)]
    fn _add_rule(
        &self,
        name: &str,
        limit: u64,
        window: f64,
        scope: &str,
        block_duration: f64,
        strategy: &str,
        burst: Option<u64>,
    ) -> PyResult<()> {
        let strategy: Strategy = strategy.parse().map_err(rule_error)?;
        let scope: Scope = scope.parse().map_err(rule_error)?;
        let mut rule = Rule::new(name, limit, seconds("window", window)?)
            .strategy(strategy)
            .scope(scope)
            .block_duration(seconds("block_duration", block_duration)?);
        if let Some(burst) = burst {
            rule = rule.burst(burst);
        }
        rule.validate().map_err(rule_error)?;
        self.limiter.add_rule(rule).map_err(engine_error)
    }

    /// Removes a rule; `False` if there was none of that name.
    fn _remove_rule(&self, name: &str) -> bool {
        self.limiter.remove_rule(name)
    }

    /// The engine's rules, in the order they were added, as `RateThrottleRule` keyword
    /// arguments.
    fn _rules<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.limiter
            .rules_as_added()
            .iter()
            .map(|rule| rule_kwargs(py, rule))
            .collect()
    }

    /// The rule `name` as `RateThrottleRule` keyword arguments, or `None`.
    fn _rule<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.limiter
            .rule(name)
            .map(|rule| rule_kwargs(py, &rule))
            .transpose()
    }

    /// The scope of the rule `name` (`"ip"`, `"user"`, ...), or `None`.
    fn _rule_scope(&self, name: &str) -> Option<&'static str> {
        self.limiter.scope_of(name).map(|s| s.as_str())
    }

    /// The identifiers on the whitelist (`whitelist=True`) or the blacklist, unexpired.
    fn _list_entries(&self, py: Python<'_>, whitelist: bool) -> PyResult<Vec<String>> {
        let kind = if whitelist {
            ratethrottle::store::ListKind::Whitelist
        } else {
            ratethrottle::store::ListKind::Blacklist
        };
        let entries = self
            .wait(py, self.limiter.list_entries(kind))
            .map_err(engine_error)?;
        Ok(entries.into_iter().map(|e| e.identifier).collect())
    }

    /// Checks one request of `identifier` under the rule `rule_name` and counts it if
    /// allowed. Never raises for a missing rule or a store failure: those return a denied
    /// status whose `rule_name` is `"unknown_rule"` or `"storage_error"` (as the original).
    /// `cost` counts the request as that many (1..=the rule's capacity; else `ValueError`).
    #[pyo3(signature = (identifier, rule_name, metadata = None, *, cost = Cost(1)))]
    fn check_rate_limit(
        slf: &Bound<'_, Self>,
        identifier: Text,
        rule_name: &Bound<'_, PyString>,
        metadata: Option<&Bound<'_, PyAny>>,
        cost: Cost,
    ) -> PyResult<Py<RateThrottleStatus>> {
        let rule_name = slf.get().rule_name(rule_name)?;
        Self::check_here(slf, &identifier, &rule_name, metadata, cost.0)
    }

    /// `check_rate_limit` as an awaitable. Against memory it is resolved at once; against
    /// Redis it runs on the Rust runtime and never blocks the event loop.
    #[pyo3(signature = (identifier, rule_name, metadata = None, *, cost = Cost(1)))]
    fn acheck_rate_limit<'py>(
        slf: &Bound<'py, Self>,
        identifier: Text,
        rule_name: Text,
        metadata: Option<Bound<'py, PyAny>>,
        cost: Cost,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (identifier, rule_name, cost) = (identifier.to_owned(), rule_name.to_owned(), cost.0);
        let py = slf.py();
        let this = slf.get();
        if this.at_once || identifier.is_empty() {
            let status = Self::check_here(slf, &identifier, &rule_name, metadata.as_ref(), cost)?;
            return Ok(Bound::new(py, Ready::new(status.into_any()))?.into_any());
        }
        // A Redis store answers at once for listed identifiers and by its fault policy: no
        // trip through the event loop then.
        if let Some(result) = this.limiter.check_now(&identifier, &rule_name, cost) {
            let status = this.answer(slf, &identifier, result, metadata.as_ref())?;
            return Ok(Bound::new(py, Ready::new(status.into_any()))?.into_any());
        }
        let core: Py<Self> = slf.clone().unbind();
        let limiter = this.limiter.clone();
        let metadata = metadata.map(Bound::unbind);
        crate::runtime::spawn(py, async move {
            let result = limiter.check_n(&identifier, &rule_name, cost).await;
            Python::attach(|py| {
                let core = core.bind(py);
                core.get().answer(
                    core,
                    &identifier,
                    result,
                    metadata.as_ref().map(|m| m.bind(py)),
                )
            })
        })
    }

    /// What a check would answer now, counting nothing; raises `RuleNotFoundError` for an
    /// unknown rule.
    fn peek(
        &self,
        py: Python<'_>,
        identifier: &str,
        rule_name: &str,
    ) -> PyResult<RateThrottleStatus> {
        let status = match self.limiter.peek_now(identifier, rule_name) {
            Some(status) => status,
            None => self.wait(py, self.limiter.peek(identifier, rule_name)),
        }
        .map_err(engine_error)?;
        Ok(RateThrottleStatus::from_status(status))
    }

    /// Forgets `identifier`'s state and block under `rule_name`; raises `RuleNotFoundError`
    /// for an unknown rule.
    fn reset(&self, py: Python<'_>, identifier: &str, rule_name: &str) -> PyResult<()> {
        self.wait(py, self.limiter.reset(identifier, rule_name))
            .map_err(engine_error)
    }

    fn _whitelist_add(&self, py: Python<'_>, identifier: &str) -> PyResult<()> {
        self.wait(py, self.limiter.whitelist_add(identifier))
            .map_err(engine_error)
    }

    fn _whitelist_remove(&self, py: Python<'_>, identifier: &str) -> PyResult<bool> {
        self.wait(py, self.limiter.whitelist_remove(identifier))
            .map_err(engine_error)
    }

    fn _is_whitelisted(&self, py: Python<'_>, identifier: &str) -> PyResult<bool> {
        self.wait(py, self.limiter.is_whitelisted(identifier))
            .map_err(engine_error)
    }

    #[pyo3(signature = (identifier, duration = None))]
    fn _blacklist_add(
        &self,
        py: Python<'_>,
        identifier: &str,
        duration: Option<f64>,
    ) -> PyResult<()> {
        // `add_to_blacklist` has checked it (None or 0: until removed); anything negative or
        // not finite that gets here is still refused by `seconds`, never made permanent.
        let duration = duration
            .filter(|d| *d != 0.0)
            .map(|d| seconds("duration", d))
            .transpose()?;
        self.wait(py, self.limiter.blacklist_add(identifier, duration))
            .map_err(engine_error)
    }

    fn _blacklist_remove(&self, py: Python<'_>, identifier: &str) -> PyResult<bool> {
        self.wait(py, self.limiter.blacklist_remove(identifier))
            .map_err(engine_error)
    }

    fn _is_blacklisted(&self, py: Python<'_>, identifier: &str) -> PyResult<bool> {
        self.wait(py, self.limiter.is_blacklisted(identifier))
            .map_err(engine_error)
    }

    /// The engine's counters, with the original's `get_metrics()` keys (violations as dicts).
    fn _metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let metrics = self.limiter.metrics();
        let unknown = self.unknown_rule_checks.load(Ordering::Relaxed);
        let total = metrics.total_requests + unknown;
        let blocked = metrics.blocked_requests + unknown;
        let dict = PyDict::new(py);
        dict.set_item("total_requests", total)?;
        dict.set_item("allowed_requests", metrics.allowed_requests)?;
        dict.set_item("blocked_requests", blocked)?;
        let rate = if total == 0 {
            0.0
        } else {
            blocked as f64 * 100.0 / total as f64
        };
        dict.set_item("block_rate", rate)?;
        dict.set_item("total_violations", metrics.violations)?;
        let recent = PyList::empty(py);
        for violation in &metrics.recent_violations {
            recent.append(violation_dict(py, violation)?)?;
        }
        dict.set_item("recent_violations", recent)?;
        dict.set_item("active_rules", metrics.active_rules)?;
        dict.set_item("whitelisted_count", metrics.whitelisted)?;
        dict.set_item("blacklisted_count", metrics.blacklisted)?;
        dict.set_item("callback_panics", metrics.callback_panics)?;
        dict.set_item("degraded_requests", metrics.degraded_requests)?;
        dict.set_item("store_errors", metrics.store_errors)?;
        dict.set_item("store_circuit_opens", metrics.store_circuit_opens)?;
        dict.set_item("store_circuit_open", metrics.store_circuit_open)?;
        let per_rule = PyDict::new(py);
        for rule in &metrics.rules {
            let counts = PyDict::new(py);
            counts.set_item("allowed", rule.allowed)?;
            counts.set_item("denied", rule.denied)?;
            counts.set_item("violations", rule.violations)?;
            counts.set_item("degraded", rule.degraded)?;
            per_rule.set_item(rule.rule, counts)?;
        }
        dict.set_item("rules", per_rule)?;
        Ok(dict)
    }

    fn _reset_metrics(&self) {
        self.limiter.reset_metrics();
        self.unknown_rule_checks.store(0, Ordering::Relaxed);
    }

    /// `"memory"` or `"redis"`.
    #[getter]
    fn _store_kind(&self) -> &'static str {
        self.limiter.store().kind()
    }

    /// The time on the engine's clock, in Unix seconds.
    fn _now(&self) -> f64 {
        self.limiter.now().as_nanos() as f64 / 1e9
    }
}
