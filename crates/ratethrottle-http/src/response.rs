//! What a rejected request gets back: one place for 429, 403 and 503, whatever the framework.

use std::borrow::Cow;
use std::time::Duration;

use ratethrottle::{Status, Verdict};

/// Why a request was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A rule's limit is exceeded (429).
    Limited,
    /// The client serves a block after an earlier violation (429).
    Blocked,
    /// The client is blacklisted (403).
    Blacklisted,
    /// The request costs more than a rule ever admits at once (429, no `Retry-After`).
    TooCostly,
    /// The store is unavailable and its fault policy is `fail_closed` (503).
    Unavailable,
    /// The server cannot tell clients apart: an IP-scoped rule applies and the peer address is
    /// unknown (500). See [`UnknownPeer`](crate::UnknownPeer).
    UnknownPeer,
}

impl RejectionKind {
    /// The HTTP status code: 429, 403, 503 or 500.
    pub const fn status_code(self) -> u16 {
        match self {
            RejectionKind::Blacklisted => 403,
            RejectionKind::Unavailable => 503,
            RejectionKind::UnknownPeer => 500,
            _ => 429,
        }
    }

    /// The status code's reason phrase, used as the problem's `title`.
    pub const fn title(self) -> &'static str {
        match self {
            RejectionKind::Blacklisted => "Forbidden",
            RejectionKind::Unavailable => "Service Unavailable",
            RejectionKind::UnknownPeer => "Internal Server Error",
            _ => "Too Many Requests",
        }
    }
}

/// Which rate-limit headers responses carry (`Retry-After` always goes on a 429).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `X-RateLimit-Limit/Remaining/Reset` and the IETF `RateLimit-Policy`/`RateLimit`.
    #[default]
    Both,
    /// `X-RateLimit-Limit/Remaining/Reset` only, as the original Python library sends.
    Legacy,
    /// `RateLimit-Policy` and `RateLimit` only (draft-ietf-httpapi-ratelimit-headers).
    Ietf,
}

impl HeaderStyle {
    /// Whether a header named `name` (as [`Status::headers`] names them) is sent.
    pub fn includes(self, name: &str) -> bool {
        match self {
            HeaderStyle::Both => true,
            HeaderStyle::Legacy => !name.starts_with("RateLimit"),
            HeaderStyle::Ietf => !name.starts_with("X-RateLimit"),
        }
    }
}

/// A rejected request, as handed to a custom rejection hook
/// ([`PolicyBuilder::on_rejection`](crate::PolicyBuilder::on_rejection)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Rejection {
    /// Why.
    pub kind: RejectionKind,
    /// The deciding status (the most restrictive rule's); `None` for
    /// [`Unavailable`](RejectionKind::Unavailable) and [`TooCostly`](RejectionKind::TooCostly).
    pub status: Option<Status>,
    /// The client key the deciding rule counted (IP, user, endpoint or `global`).
    pub identifier: String,
    /// A sentence for the client.
    pub detail: String,
    /// The rate-limit headers the policy sends.
    pub header_style: HeaderStyle,
}

/// The seconds a client is told to wait while the store is down (fail-closed).
const UNAVAILABLE_RETRY_SECS: u64 = 1;

impl Rejection {
    /// The rejection of a denied check: 403 for a blacklisted client, else 429 (limited or
    /// blocked), with the standard `detail` sentence.
    ///
    /// ```
    /// # use ratethrottle::{Limiter, Rule};
    /// # use ratethrottle_http::{HeaderStyle, Rejection, RejectionKind};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let limiter = Limiter::in_memory();
    /// limiter.add_rule(Rule::new("api", 1, std::time::Duration::from_secs(60)))?;
    /// limiter.check("10.0.0.1", "api").await?;
    /// let denied = limiter.check("10.0.0.1", "api").await?;
    /// let rejection = Rejection::of_status(denied, "10.0.0.1", HeaderStyle::Both);
    /// assert_eq!(rejection.kind, RejectionKind::Limited);
    /// assert_eq!(rejection.default_response().status, 429);
    /// # Ok::<(), ratethrottle::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn of_status(
        status: Status,
        identifier: impl Into<String>,
        header_style: HeaderStyle,
    ) -> Self {
        let kind = match status.verdict {
            Verdict::Blacklisted => RejectionKind::Blacklisted,
            Verdict::Blocked => RejectionKind::Blocked,
            _ => RejectionKind::Limited,
        };
        Rejection {
            kind,
            detail: detail(kind, Some(&status)),
            status: Some(status),
            identifier: identifier.into(),
            header_style,
        }
    }

    /// A rejection with no status to describe: [`Unavailable`](RejectionKind::Unavailable) (the
    /// store failed under `fail_closed`) or a request rejected outright.
    pub fn of_kind(
        kind: RejectionKind,
        identifier: impl Into<String>,
        header_style: HeaderStyle,
    ) -> Self {
        Rejection {
            kind,
            detail: detail(kind, None),
            status: None,
            identifier: identifier.into(),
            header_style,
        }
    }

    /// Whole seconds until a retry can succeed (rounded up), if known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self.kind {
            RejectionKind::Unavailable => Some(UNAVAILABLE_RETRY_SECS),
            _ => self.status.as_ref()?.retry_after_secs(),
        }
    }

    /// The standard response: the status code, `Retry-After`, the rate-limit headers and an
    /// RFC 9457 problem body (`application/problem+json`):
    ///
    /// ```json
    /// {"type":"about:blank","title":"Too Many Requests","status":429,
    ///  "detail":"rate limit \"api\" exceeded: 10 requests per 60s; retry in 14s",
    ///  "rule":"api","retry_after":14}
    /// ```
    pub fn default_response(&self) -> RejectionResponse {
        let code = self.kind.status_code();
        let retry_after = self.retry_after_secs();
        let body = Problem {
            kind: "about:blank",
            title: self.kind.title(),
            status: code,
            detail: &self.detail,
            rule: self
                .status
                .as_ref()
                .filter(|_| self.kind != RejectionKind::Blacklisted)
                .map(|s| s.rule),
            retry_after,
        };
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut headers: Vec<(Cow<'static, str>, String)> = vec![(
            Cow::Borrowed("content-type"),
            "application/problem+json".to_owned(),
        )];
        match &self.status {
            // A blacklist has no limit to describe.
            Some(status) if self.kind != RejectionKind::Blacklisted => headers.extend(
                status
                    .headers()
                    .into_iter()
                    .filter(|(name, _)| self.header_style.includes(name))
                    .map(|(name, value)| (Cow::Borrowed(name), value)),
            ),
            _ => headers
                .extend(retry_after.map(|secs| (Cow::Borrowed("Retry-After"), secs.to_string()))),
        }
        RejectionResponse {
            status: code,
            headers,
            body,
        }
    }
}

/// An RFC 9457 problem, fields in the RFC's order.
#[derive(serde::Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

/// A framework-neutral response: what a rejection hook returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RejectionResponse {
    /// The HTTP status code (an invalid one becomes 429).
    pub status: u16,
    /// Header names and values (invalid ones are skipped and logged).
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The body.
    pub body: String,
}

impl RejectionResponse {
    /// A response with this status, no headers and this body.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        RejectionResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A response's header map, for [`write_headers`].
pub(crate) trait HeaderSink {
    /// Sets `name: value` (keeping a value already there unless `replace`); `false` if the
    /// name or value is not valid HTTP.
    fn set(&mut self, name: &str, value: String, replace: bool) -> bool;
}

/// Writes rate-limit or rejection headers, skipping (and logging) invalid ones.
pub(crate) fn write_headers(
    sink: &mut impl HeaderSink,
    headers: impl IntoIterator<Item = (Cow<'static, str>, String)>,
    replace: bool,
) {
    for (name, value) in headers {
        if !sink.set(&name, value, replace) {
            tracing::warn!(header = %name, "skipped an invalid response header");
        }
    }
}

/// The sentence in a rejection's `detail`.
/// What an [`UnknownPeer`](RejectionKind::UnknownPeer) rejection says: the fix.
pub(crate) const UNKNOWN_PEER_DETAIL: &str = "the server cannot tell clients apart: the peer address of the request is unknown. \
     With axum, serve `app.into_make_service_with_connect_info::<SocketAddr>()`; or build the layer with \
     `.unknown_peer(UnknownPeer::SharedBucket)` to count all such requests under one key";

pub(crate) fn detail(kind: RejectionKind, status: Option<&Status>) -> String {
    let Some(status) = status else {
        return match kind {
            RejectionKind::Unavailable => {
                "rate limiting is unavailable; try again shortly".to_owned()
            }
            RejectionKind::UnknownPeer => UNKNOWN_PEER_DETAIL.to_owned(),
            _ => "request rejected".to_owned(),
        };
    };
    let wait = match status.retry_after_secs() {
        Some(retry) => format!("retry in {retry}s"),
        None => "no retry will succeed".to_owned(),
    };
    match kind {
        RejectionKind::Blacklisted => "this client is blocked".to_owned(),
        RejectionKind::Blocked => format!(
            "blocked after exceeding rate limit {:?}; {wait}",
            status.rule
        ),
        _ => format!(
            "rate limit {:?} exceeded: {} requests per {}; {wait}",
            status.rule,
            status.limit,
            window_text(status.window)
        ),
    }
}

fn window_text(window: Duration) -> String {
    if window.subsec_nanos() == 0 {
        format!("{}s", window.as_secs())
    } else {
        format!("{}ms", window.as_millis())
    }
}
