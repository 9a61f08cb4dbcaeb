//! [`PlainRequest`]: a request described by its parts, for adapters outside Rust (the Python
//! package's), which hand the [`Policy`](crate::Policy) what their framework knows.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::policy::{RequestView, sealed};

/// A request as plain data: what a [`Policy`](crate::Policy) reads of it.
///
/// ```
/// use ratethrottle::{Limiter, Rule};
/// use ratethrottle_http::{PlainRequest, PolicyBuilder};
/// use std::time::Duration;
///
/// let limiter = Limiter::in_memory();
/// limiter.add_rule(Rule::new("api", 1, Duration::from_secs(60)))?;
/// let policy = PolicyBuilder::<_, PlainRequest>::new(limiter).rule("api").build()?;
/// let request = PlainRequest::new("GET", "/").peer("203.0.113.7".parse()?);
/// assert!(policy.decide_now(&request).unwrap().rejection.is_none());
/// assert_eq!(policy.decide_now(&request).unwrap().rejection.unwrap().status, 429);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlainRequest {
    /// The method, like `GET`.
    pub method: String,
    /// The path, like `/users/42`.
    pub path: String,
    /// The matched route template, like `/users/{id}`, when the framework knows it.
    pub route: Option<String>,
    /// The headers, in the order received (names compared without case).
    pub headers: Vec<(String, String)>,
    /// The TCP peer's address, when known.
    pub peer: Option<IpAddr>,
    /// The user, for user-scoped rules (see [`PolicyBuilder::user`](crate::PolicyBuilder::user):
    /// a policy over plain requests reads this field unless it has its own way).
    pub user: Option<String>,
    /// A key the adapter chose for the client (its key function), counted instead of the
    /// address (and of the user) by IP- and user-scoped rules.
    pub client_key: Option<String>,
}

impl PlainRequest {
    /// A request of `method` on `path`, with nothing else known yet.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        PlainRequest {
            method: method.into(),
            path: path.into(),
            ..PlainRequest::default()
        }
    }

    /// With the TCP peer's address.
    #[must_use]
    pub fn peer(mut self, peer: IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// With a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl sealed::Sealed for PlainRequest {}

impl RequestView for PlainRequest {
    fn method(&self) -> &str {
        &self.method
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn route(&self) -> Option<Cow<'_, str>> {
        self.route.as_deref().map(Cow::Borrowed)
    }

    fn header_values(&self, name: &'static str) -> impl Iterator<Item = &[u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_bytes())
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_bytes())
    }

    fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    fn client_key(&self) -> Option<&str> {
        self.client_key.as_deref()
    }
}
