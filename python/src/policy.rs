//! `NativePolicy`: the Rust middleware's decision (`ratethrottle_http::Policy`) for the Python
//! framework adapters, so a request gets the same answer through Flask as through axum.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use ratethrottle::Verdict;
use ratethrottle_config::ConfiguredStore;
use ratethrottle_http::{Decided, HeaderStyle, PlainRequest, Policy, PolicyBuilder, UnknownPeer};

use crate::adaptive::NativeAdaptive;
use crate::core::NativeCore;
use crate::errors::Raise;
use crate::http::{ClientIpResolver, parse_peer};
use crate::protect::NativeDdos;
use crate::runtime::{Ready, runtime};
use crate::status::RateThrottleStatus;

/// The rules a set of adapters applies, in order, with the client found as the resolver
/// finds it; `decide` answers one request.
#[pyclass(frozen, module = "ratethrottle._native")]
pub(crate) struct NativePolicy {
    policy: Arc<Policy<ConfiguredStore, PlainRequest>>,
    core: Py<NativeCore>,
}

/// The request the adapters describe.
fn request(
    method: &str,
    path: &str,
    route: Option<String>,
    peer: Option<&str>,
    forwarded: Vec<(String, String)>,
    user: Option<String>,
    key: Option<String>,
) -> PlainRequest {
    let mut request = PlainRequest::new(method, path);
    request.route = route;
    request.peer = peer.and_then(|p| parse_peer(p.trim()));
    request.headers = forwarded;
    request.user = user;
    request.client_key = key;
    request
}

impl NativePolicy {
    /// `(status, identifier, rejection, headers)` for Python, reporting the violation to the
    /// core's callbacks (with `metadata`) when the deciding answer is one.
    fn answer<'py>(
        core: &Bound<'py, NativeCore>,
        decided: Decided,
        metadata: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = core.py();
        let (status, identifier) = match decided.status {
            Some((status, identifier)) => {
                let limited = !status.allowed && status.verdict == Verdict::Limited;
                let out = Py::new(py, RateThrottleStatus::from_status(status))?;
                if limited && decided.rejection.is_some() {
                    core.get()
                        .report_violation(core, &identifier, &out, metadata)?;
                }
                (Some(out), Some(identifier))
            }
            None => (None, None),
        };
        let rejection = decided.rejection.map(|rejection| {
            let headers: Vec<(String, String)> = rejection
                .headers
                .into_iter()
                .map(|(name, value)| (name.into_owned(), value))
                .collect();
            (rejection.status, headers, rejection.body)
        });
        let headers = PyList::new(py, decided.headers)?;
        (status, identifier, rejection, headers).into_pyobject(py)
    }
}

#[pymethods]
impl NativePolicy {
    /// A policy checking `rules` of `core`, in order. `header_style`: "both", "legacy" or
    /// "ietf". A request whose peer is unknown counts under `0.0.0.0` (as the adapters
    /// always did). Raises `RuleNotFoundError` for a rule `core` does not have.
    /// With `ddos` (a `NativeDdos`), each request's client is analysed first and one it calls
    /// for blocking goes on `core`'s blacklist (403). With `adaptive` (a `NativeAdaptive`), its
    /// rule among `rules` is decided by it, at each client's learned limit.
    #[new]
    #[pyo3(signature = (core, rules, resolver, header_style = "both", headers_enabled = true, ddos = None, adaptive = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        core: &Bound<'_, NativeCore>,
        rules: Vec<String>,
        resolver: &Bound<'_, ClientIpResolver>,
        header_style: &str,
        headers_enabled: bool,
        ddos: Option<&Bound<'_, NativeDdos>>,
        adaptive: Option<&Bound<'_, NativeAdaptive>>,
    ) -> PyResult<Self> {
        let style = match header_style {
            "both" => HeaderStyle::Both,
            "legacy" => HeaderStyle::Legacy,
            "ietf" => HeaderStyle::Ietf,
            other => {
                return Err(Raise::Configuration.err(format!(
                    "Unknown header_style {other:?}; expected one of both, legacy, ietf"
                )));
            }
        };
        let limiter = core.get().limiter().clone();
        let adaptive_rule = adaptive.map(|adaptive| adaptive.get().rule());
        for rule in &rules {
            if limiter.rule(rule).is_none() && adaptive_rule != Some(rule.as_str()) {
                let known: Vec<String> = limiter.rules().into_iter().map(|r| r.name).collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                return Err(
                    Raise::RuleNotFound.err(format!("unknown rule {rule:?}; known rules: {known}"))
                );
            }
        }
        let mut builder = PolicyBuilder::<_, PlainRequest>::new(limiter)
            .client_ip(resolver.get().client_ip().clone())
            .unknown_peer(UnknownPeer::SharedBucket)
            .header_style(style)
            .headers(headers_enabled);
        for rule in rules {
            builder = builder.rule(rule);
        }
        if let Some(ddos) = ddos {
            builder = builder.ddos(ddos.get().protection());
        }
        if let Some(adaptive) = adaptive {
            builder = builder.adaptive_limiter(adaptive.get().limiter());
        }
        let policy = builder
            .build()
            .map_err(|e| Raise::Configuration.err(e.to_string()))?;
        Ok(NativePolicy {
            policy: Arc::new(policy),
            core: core.clone().unbind(),
        })
    }

    /// Decides one request: `(status, identifier, rejection, headers)`, where `rejection` is
    /// `(code, headers, body)` when the request is refused and `headers` the rate-limit
    /// headers for an admitted one. `forwarded`: the `(name, value)` pairs of the forwarded
    /// header (only read behind a trusted proxy); `key`: a key function's answer, which
    /// replaces the address and the user.
    #[pyo3(signature = (method, path, route = None, peer = None, forwarded = Vec::new(), user = None, key = None, metadata = None))]
    #[allow(clippy::too_many_arguments)]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        path: &str,
        route: Option<String>,
        peer: Option<&str>,
        forwarded: Vec<(String, String)>,
        user: Option<String>,
        key: Option<String>,
        metadata: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let request = request(method, path, route, peer, forwarded, user, key);
        let decided = match self.policy.decide_now(&request) {
            Some(decided) => decided,
            None => {
                let policy = Arc::clone(&self.policy);
                py.detach(|| runtime().block_on(async move { policy.decide(&request).await }))
            }
        };
        Self::answer(self.core.bind(py), decided, metadata)
    }

    /// `decide` as an awaitable that never blocks the event loop.
    #[pyo3(signature = (method, path, route = None, peer = None, forwarded = Vec::new(), user = None, key = None, metadata = None))]
    #[allow(clippy::too_many_arguments)]
    fn adecide<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        path: &str,
        route: Option<String>,
        peer: Option<&str>,
        forwarded: Vec<(String, String)>,
        user: Option<String>,
        key: Option<String>,
        metadata: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = request(method, path, route, peer, forwarded, user, key);
        if let Some(decided) = self.policy.decide_now(&request) {
            let answer = Self::answer(self.core.bind(py), decided, metadata.as_ref())?;
            return Ok(Bound::new(py, Ready::new(answer.into_any().unbind()))?.into_any());
        }
        let policy = Arc::clone(&self.policy);
        let core = self.core.clone_ref(py);
        let metadata = metadata.map(Bound::unbind);
        crate::runtime::spawn(py, async move {
            let decided = policy.decide(&request).await;
            Python::attach(|py| {
                Self::answer(
                    core.bind(py),
                    decided,
                    metadata.as_ref().map(|m| m.bind(py)),
                )
                .map(Bound::unbind)
            })
        })
    }
}
