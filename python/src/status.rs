//! `RateThrottleStatus`: the answer to a check, with the original's fields and methods.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use ratethrottle::{Status, Verdict};
use ratethrottle_http::{HeaderStyle, Rejection, RejectionKind};

/// What the original library reports for a whitelisted identifier: a limit that never binds.
const WHITELIST_ALLOWANCE: i64 = 999_999;
/// What it reports as the wait of a permanently blacklisted identifier (a day).
const BLACKLIST_RETRY_SECS: i64 = 86_400;

/// A response as Python gets it: `(status_code, [(header, value)], body)`.
type Response = (u16, Vec<(String, String)>, String);

/// A rule name: the engine's interned names need no copy.
#[derive(Clone, Debug, PartialEq)]
enum Name {
    Static(&'static str),
    Owned(String),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Owned(s) => s,
        }
    }
}

/// Current status of rate limiting for a request.
///
/// Fields as in the original: `allowed`, `remaining`, `limit`, `reset_time` (Unix seconds),
/// `retry_after` (seconds, when denied), `rule_name`, `blocked`, `strategy`. Statuses the engine
/// returns also know their `verdict`, `window` and the full HTTP header set.
#[pyclass(module = "ratethrottle._native")]
#[derive(Clone, Debug)]
pub(crate) struct RateThrottleStatus {
    #[pyo3(get, set)]
    allowed: bool,
    #[pyo3(get, set)]
    remaining: i64,
    #[pyo3(get, set)]
    limit: i64,
    #[pyo3(get, set)]
    reset_time: i64,
    #[pyo3(get, set)]
    retry_after: Option<i64>,
    rule_name: Option<Name>,
    #[pyo3(get, set)]
    blocked: bool,
    strategy: Option<Name>,
    /// Whether the store could not decide (Redis failing) and its fault policy answered
    /// (`fail_open`, `fallback_memory`), or the check failed with it (`storage_error`).
    #[pyo3(get, set)]
    degraded: bool,
    /// The engine's status, when the engine made this one.
    native: Option<Status>,
    /// Why no engine status: `"error"`, `"unknown_rule"`, `"storage_error"`.
    failure: Option<&'static str>,
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl RateThrottleStatus {
    /// The rule the status is for, if any.
    pub(crate) fn rule(&self) -> Option<&str> {
        self.rule_name.as_ref().map(Name::as_str)
    }
}

impl RateThrottleStatus {
    /// The status for the engine's answer, numbered as the original reports it.
    pub(crate) fn from_status(status: Status) -> Self {
        let now = clamp(status.checked_at.as_nanos() / 1_000_000_000);
        let verdict = status.verdict;
        let blacklist_retry = status
            .retry_after_secs()
            .map_or(BLACKLIST_RETRY_SECS, clamp);
        let mut out = RateThrottleStatus {
            allowed: status.allowed,
            remaining: clamp(status.remaining),
            limit: clamp(status.limit),
            reset_time: clamp(status.reset_at().as_secs_ceil()),
            retry_after: status.retry_after_secs().map(clamp),
            rule_name: Some(Name::Static(status.rule)),
            blocked: status.blocked,
            strategy: Some(Name::Static(status.strategy.as_str())),
            degraded: status.degraded,
            native: Some(status),
            failure: None,
        };
        match verdict {
            Verdict::Whitelisted => {
                out.remaining = WHITELIST_ALLOWANCE;
                out.limit = WHITELIST_ALLOWANCE;
                out.reset_time = now + 3600;
                out.strategy = None;
            }
            Verdict::Blacklisted => {
                let retry = blacklist_retry;
                out.remaining = 0;
                out.limit = 0;
                out.retry_after = Some(retry);
                out.reset_time = now + retry;
                out.strategy = None;
            }
            _ => {}
        }
        out
    }

    /// A denial without an engine answer, as the original reports it: `rule_name` is
    /// `"error"` (no identifier), `"unknown_rule"` or `"storage_error"`.
    pub(crate) fn failure(reason: &'static str, now_secs: u64) -> Self {
        RateThrottleStatus {
            allowed: false,
            remaining: 0,
            limit: 0,
            reset_time: clamp(now_secs),
            retry_after: None,
            rule_name: Some(Name::Static(reason)),
            blocked: true,
            strategy: None,
            degraded: reason == "storage_error",
            native: None,
            failure: Some(reason),
        }
    }

    fn to_rejection(&self, identifier: &str, style: HeaderStyle) -> Option<Rejection> {
        if self.allowed {
            return None;
        }
        Some(match (&self.native, self.failure) {
            (Some(status), _) => Rejection::of_status(status.clone(), identifier, style),
            (None, Some("storage_error")) => {
                Rejection::of_kind(RejectionKind::Unavailable, identifier, style)
            }
            (None, _) => Rejection::of_kind(RejectionKind::Limited, identifier, style),
        })
    }
}

pub(crate) fn header_style(style: &str) -> PyResult<HeaderStyle> {
    match style {
        "both" => Ok(HeaderStyle::Both),
        "legacy" => Ok(HeaderStyle::Legacy),
        "ietf" => Ok(HeaderStyle::Ietf),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "unknown header style {other:?}; expected \"both\", \"legacy\" or \"ietf\""
        ))),
    }
}

#[pymethods]
impl RateThrottleStatus {
    #[new]
    #[pyo3(signature = (allowed, remaining, limit, reset_time, retry_after=None, rule_name=None, blocked=false, strategy=None, degraded=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        allowed: bool,
        remaining: i64,
        limit: i64,
        reset_time: i64,
        retry_after: Option<i64>,
        rule_name: Option<String>,
        blocked: bool,
        strategy: Option<String>,
        degraded: bool,
    ) -> Self {
        RateThrottleStatus {
            allowed,
            remaining,
            limit,
            reset_time,
            retry_after,
            rule_name: rule_name.map(Name::Owned),
            blocked,
            strategy: strategy.map(Name::Owned),
            degraded,
            native: None,
            failure: None,
        }
    }

    /// The rule applied, `"whitelist"`/`"blacklist"` when a list decided, or what failed.
    #[getter]
    fn get_rule_name(&self) -> Option<&str> {
        self.rule_name.as_ref().map(Name::as_str)
    }

    #[setter]
    fn set_rule_name(&mut self, value: Option<String>) {
        self.rule_name = value.map(Name::Owned);
    }

    /// The rule's strategy (`"sliding_counter"`, ...), when a rule decided.
    #[getter]
    fn get_strategy(&self) -> Option<&str> {
        self.strategy.as_ref().map(Name::as_str)
    }

    #[setter]
    fn set_strategy(&mut self, value: Option<String>) {
        self.strategy = value.map(Name::Owned);
    }

    /// `"allowed"`, `"whitelisted"`, `"limited"`, `"blocked"`, `"blacklisted"`, or the failure
    /// (`"error"`, `"unknown_rule"`, `"storage_error"`); `None` for a status built by hand.
    #[getter]
    fn verdict(&self) -> Option<&'static str> {
        match (&self.native, self.failure) {
            (Some(status), _) => Some(status.verdict.as_str()),
            (None, failure) => failure,
        }
    }

    /// The rule's window in seconds, when a rule decided.
    #[getter]
    fn window(&self) -> Option<f64> {
        self.native.as_ref().map(|s| s.window.as_secs_f64())
    }

    /// Seconds until the allowance is full again, when the engine answered.
    #[getter]
    fn reset_after(&self) -> Option<f64> {
        self.native.as_ref().map(|s| s.reset_after.as_secs_f64())
    }

    /// The fields as a dict (for JSON responses), as the original.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("allowed", self.allowed)?;
        dict.set_item("remaining", self.remaining)?;
        dict.set_item("limit", self.limit)?;
        dict.set_item("reset_time", self.reset_time)?;
        dict.set_item("retry_after", self.retry_after)?;
        dict.set_item("rule_name", self.get_rule_name())?;
        dict.set_item("blocked", self.blocked)?;
        dict.set_item("strategy", self.get_strategy())?;
        dict.set_item("degraded", self.degraded)?;
        Ok(dict)
    }

    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` and, when known,
    /// `Retry-After`, as the original.
    fn to_headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("X-RateLimit-Limit", self.limit.to_string())?;
        dict.set_item("X-RateLimit-Remaining", self.remaining.to_string())?;
        dict.set_item("X-RateLimit-Reset", self.reset_time.to_string())?;
        if let Some(retry) = self.retry_after {
            dict.set_item("Retry-After", retry.to_string())?;
        }
        Ok(dict)
    }

    /// The rate-limit headers the Rust middleware sends with this status, as `(name, value)`
    /// pairs: `style` `"both"` (default), `"legacy"` (`X-RateLimit-*`) or `"ietf"`
    /// (`RateLimit-Policy`, `RateLimit`). `Retry-After` is included when denied.
    #[pyo3(signature = (style = "both"))]
    fn http_headers<'py>(&self, py: Python<'py>, style: &str) -> PyResult<Bound<'py, PyList>> {
        let style = header_style(style)?;
        let list = PyList::empty(py);
        match &self.native {
            Some(status) => {
                for (name, value) in status.header_values().iter() {
                    if name == "Retry-After" || style.includes(name) {
                        list.append((name, value))?;
                    }
                }
            }
            None => {
                for (name, value) in self.to_headers(py)?.iter() {
                    list.append(PyTuple::new(py, [name, value])?)?;
                }
            }
        }
        Ok(list)
    }

    /// For a denial, the response the Rust middleware sends: `(status_code, headers, body)`,
    /// with 429 (limited or blocked), 403 (blacklisted) or 503 (store down, fail-closed), the
    /// `Retry-After` and rate-limit headers and an RFC 9457 `application/problem+json` body.
    /// `detail` replaces the body's sentence. `None` when allowed.
    #[pyo3(signature = (identifier = "", style = "both", detail = None))]
    fn rejection(
        &self,
        identifier: &str,
        style: &str,
        detail: Option<String>,
    ) -> PyResult<Option<Response>> {
        let Some(mut rejection) = self.to_rejection(identifier, header_style(style)?) else {
            return Ok(None);
        };
        if let Some(detail) = detail {
            rejection.detail = detail;
        }
        let response = rejection.default_response();
        let headers = response
            .headers
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value))
            .collect();
        Ok(Some((response.status, headers, response.body)))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        let Ok(other) = other.cast::<RateThrottleStatus>() else {
            return false;
        };
        let other = other.borrow();
        (
            self.allowed,
            self.remaining,
            self.limit,
            self.reset_time,
            self.retry_after,
            self.get_rule_name(),
            self.blocked,
            self.get_strategy(),
        ) == (
            other.allowed,
            other.remaining,
            other.limit,
            other.reset_time,
            other.retry_after,
            other.get_rule_name(),
            other.blocked,
            other.get_strategy(),
        )
    }

    fn __repr__(&self) -> String {
        let text = |v: Option<&str>| v.map_or("None".to_owned(), |s| format!("{s:?}"));
        let py_bool = |b: bool| if b { "True" } else { "False" };
        format!(
            "RateThrottleStatus(allowed={}, remaining={}, limit={}, reset_time={}, retry_after={}, rule_name={}, blocked={}, strategy={}{})",
            py_bool(self.allowed),
            self.remaining,
            self.limit,
            self.reset_time,
            self.retry_after
                .map_or("None".to_owned(), |r| r.to_string()),
            text(self.get_rule_name()),
            py_bool(self.blocked),
            text(self.get_strategy()),
            if self.degraded { ", degraded=True" } else { "" },
        )
    }
}
