//! The HTTP helpers the Python framework adapters share with the Rust middleware.

use std::net::IpAddr;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use ratethrottle_http::{ClientIp, ForwardedHeader};

/// Finds a request's client key as the Rust middleware does: the TCP peer, unless the peer is
/// a trusted proxy; then the forwarded header, read from the right past trusted proxies.
/// IPv6 clients are grouped by their /64 (`ipv6_prefix`).
///
/// ```python
/// resolver = ClientIpResolver(trusted_proxies=["10.0.0.0/8"])
/// resolver.resolve("10.0.0.5", ["203.0.113.7, 198.51.100.2"])  # "198.51.100.2"
/// resolver.resolve("192.0.2.1", ["1.2.3.4"])                   # "192.0.2.1": not trusted
/// ```
#[pyclass(frozen, module = "ratethrottle._native")]
#[derive(Debug)]
pub(crate) struct ClientIpResolver {
    client_ip: ClientIp,
}

#[pymethods]
impl ClientIpResolver {
    /// `header`: `"x-forwarded-for"` (default), `"forwarded"` (RFC 7239) or `"x-real-ip"`.
    #[new]
    #[pyo3(signature = (trusted_proxies = Vec::new(), header = "x-forwarded-for", ipv6_prefix = 64))]
    fn new(trusted_proxies: Vec<String>, header: &str, ipv6_prefix: u8) -> PyResult<Self> {
        let header = match header.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ForwardedHeader::XForwardedFor,
            "forwarded" => ForwardedHeader::Forwarded,
            "x-real-ip" => ForwardedHeader::XRealIp,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown forwarded header {other:?}; expected \"x-forwarded-for\", \
                     \"forwarded\" or \"x-real-ip\""
                )));
            }
        };
        let client_ip = ClientIp::new()
            .trust_proxies(&trusted_proxies)
            .header(header)
            .ipv6_prefix(ipv6_prefix);
        client_ip
            .validate()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(ClientIpResolver { client_ip })
    }

    /// The lower-case name of the header to pass to `resolve` (WSGI: `HTTP_` + upper case).
    #[getter]
    fn header(&self) -> &'static str {
        self.client_ip.forwarded_header().name()
    }

    /// Whether any proxy is trusted (otherwise the header is never read).
    #[getter]
    fn trusts_proxies(&self) -> bool {
        self.client_ip.trusts_proxies()
    }

    /// The client key for a request from `peer` (an address, or `None`/`""` when unknown)
    /// carrying these values of the header. An unknown or malformed peer with no trusted
    /// address gives `default`.
    #[pyo3(signature = (peer, header_values = Vec::new(), default = "0.0.0.0"))]
    fn resolve(&self, peer: Option<&str>, header_values: Vec<String>, default: &str) -> String {
        let peer = peer.and_then(|p| parse_peer(p.trim()));
        self.client_ip
            .resolve(peer, header_values.iter().map(|v| v.as_bytes()))
            .map_or_else(|| default.to_owned(), |key| key.as_str().to_owned())
    }
}

impl ClientIpResolver {
    /// How the client is found.
    pub(crate) fn client_ip(&self) -> &ClientIp {
        &self.client_ip
    }
}

/// A peer address as frameworks report it: `203.0.113.7`, `::1`, `[::1]:8080`, `1.2.3.4:80`.
pub(crate) fn parse_peer(text: &str) -> Option<IpAddr> {
    text.parse()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}
