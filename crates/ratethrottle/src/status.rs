//! The answer to a check ([`Status`]) and its HTTP headers.

use std::fmt::Write;
use std::time::Duration;

use crate::clock::Nanos;
use crate::rule::Strategy;

/// Why a check was allowed or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// The strategy admitted the request.
    Allowed,
    /// The identifier is whitelisted; nothing was counted.
    Whitelisted,
    /// The strategy denied the request: the limit is exceeded (HTTP 429).
    Limited,
    /// The identifier is serving a block after an earlier violation (HTTP 429).
    Blocked,
    /// The identifier is blacklisted (HTTP 403).
    Blacklisted,
}

impl Verdict {
    /// `"allowed"`, `"whitelisted"`, `"limited"`, `"blocked"` or `"blacklisted"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Whitelisted => "whitelisted",
            Verdict::Limited => "limited",
            Verdict::Blocked => "blocked",
            Verdict::Blacklisted => "blacklisted",
        }
    }
}

/// The result of a check: whether the request may proceed, and the numbers for the client.
///
/// ```
/// use ratethrottle::{Limiter, Rule};
/// use std::time::Duration;
///
/// # tokio_test_block_on(async {
/// let limiter = Limiter::in_memory();
/// limiter.add_rule(Rule::new("api", 2, Duration::from_secs(60)))?;
/// let status = limiter.check("10.0.0.1", "api").await?;
/// assert!(status.allowed);
/// assert_eq!((status.limit, status.remaining), (2, 1));
/// let headers = status.headers();
/// assert!(headers.contains(&("RateLimit-Policy", "\"api\";q=2;w=60".to_owned())));
/// # Ok::<(), ratethrottle::Error>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Unit requests that could still be admitted now (for a peek: before the request).
    pub remaining: u64,
    /// The rule's limit per window.
    pub limit: u64,
    /// The rule's window.
    pub window: Duration,
    /// Time until the allowance is full again.
    pub reset_after: Duration,
    /// For a denial, the exact wait until the same request would be admitted (including any
    /// block); `None` when allowed or when it never will be (a permanent blacklist entry).
    pub retry_after: Option<Duration>,
    /// The rule applied, or `"whitelist"` / `"blacklist"` when a list decided.
    pub rule: &'static str,
    /// The strategy of the rule applied.
    pub strategy: Strategy,
    /// Whether the client is blocked (temporarily after a violation, or blacklisted).
    pub blocked: bool,
    /// Why the request was allowed or denied.
    pub verdict: Verdict,
    /// When the check was made.
    pub checked_at: Nanos,
    /// Whether the store could not decide (its backend failing) and its fault policy answered
    /// instead: admitted by `fail_open`, or decided by this process alone under
    /// `fallback_memory`. Such statuses are counted in [`Metrics::degraded_requests`](crate::Metrics::degraded_requests).
    pub degraded: bool,
}

impl Status {
    /// When the allowance is full again.
    pub fn reset_at(&self) -> Nanos {
        self.checked_at.saturating_add(self.reset_after)
    }

    /// [`retry_after`](Status::retry_after) in whole seconds, rounded up (the `Retry-After`
    /// value).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(secs_ceil)
    }

    /// The HTTP headers describing this status:
    ///
    /// - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds, as
    ///   the original library);
    /// - `Retry-After` in whole seconds rounded up, when denied;
    /// - the IETF `RateLimit-Policy` (`"api";q=100;w=60`) and `RateLimit` (`"api";r=42;t=17`)
    ///   fields of draft-ietf-httpapi-ratelimit-headers, where `t` is the seconds until the
    ///   request could succeed (the retry wait when denied, else until the full reset).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let values = self.header_values();
        values
            .iter()
            .map(|(name, value)| (name, value.to_owned()))
            .collect()
    }

    /// The same headers as [`Status::headers`], written into one buffer: one allocation for
    /// all of them (adapters slice the buffer into header values without copying).
    ///
    /// ```
    /// # use ratethrottle::{Limiter, Rule};
    /// # use std::time::Duration;
    /// # tokio_test_block_on(async {
    /// # let limiter = Limiter::in_memory();
    /// # limiter.add_rule(Rule::new("api", 2, Duration::from_secs(60)))?;
    /// let status = limiter.check("10.0.0.1", "api").await?;
    /// let values = status.header_values();
    /// let (name, value) = values.iter().next().unwrap();
    /// assert_eq!((name, value), ("X-RateLimit-Limit", "2"));
    /// # Ok::<(), ratethrottle::Error>(())
    /// # }).unwrap();
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub fn header_values(&self) -> HeaderValues {
        let mut values = HeaderValues {
            text: String::with_capacity(96 + 2 * self.rule.len()),
            fields: [("", 0, 0); MAX_HEADERS],
            len: 0,
        };
        values.field("X-RateLimit-Limit", |v| v.number(self.limit));
        values.field("X-RateLimit-Remaining", |v| v.number(self.remaining));
        values.field("X-RateLimit-Reset", |v| {
            v.number(self.reset_at().as_secs_ceil())
        });
        if !self.allowed {
            if let Some(retry) = self.retry_after_secs() {
                values.field("Retry-After", |v| v.number(retry));
            }
        }
        values.field("RateLimit-Policy", |v| {
            v.sf_string(self.rule);
            v.text.push_str(";q=");
            v.number(self.limit);
            v.text.push_str(";w=");
            v.number(secs_ceil(self.window));
        });
        let until = match (self.allowed, self.retry_after) {
            (false, Some(retry)) => retry,
            _ => self.reset_after,
        };
        values.field("RateLimit", |v| {
            v.sf_string(self.rule);
            v.text.push_str(";r=");
            v.number(self.remaining);
            v.text.push_str(";t=");
            v.number(secs_ceil(until));
        });
        values
    }
}

const MAX_HEADERS: usize = 6;

/// A status's HTTP headers in one buffer ([`Status::header_values`]).
#[derive(Clone, Debug)]
pub struct HeaderValues {
    text: String,
    fields: [(&'static str, usize, usize); MAX_HEADERS],
    len: usize,
}

impl HeaderValues {
    /// The lower-case form of a header name these values use (`"X-RateLimit-Limit"` →
    /// `"x-ratelimit-limit"`), as HTTP/2 and gRPC metadata want it; `None` for another name.
    pub fn lower_case(name: &str) -> Option<&'static str> {
        Some(match name {
            "X-RateLimit-Limit" => "x-ratelimit-limit",
            "X-RateLimit-Remaining" => "x-ratelimit-remaining",
            "X-RateLimit-Reset" => "x-ratelimit-reset",
            "Retry-After" => "retry-after",
            "RateLimit-Policy" => "ratelimit-policy",
            "RateLimit" => "ratelimit",
            _ => return None,
        })
    }

    /// Appends the header `name`, its value written by `write`.
    fn field(&mut self, name: &'static str, write: impl FnOnce(&mut Self)) {
        let start = self.text.len();
        write(self);
        self.fields[self.len] = (name, start, self.text.len());
        self.len += 1;
    }

    fn number(&mut self, n: u64) {
        self.text.push_str(itoa::Buffer::new().format(n));
    }

    /// `text` as a structured-field string (RFC 8941 §3.3.3): printable ASCII, with `"` and
    /// `\` escaped and anything else replaced by `_`.
    fn sf_string(&mut self, text: &str) {
        self.text.push('"');
        for c in text.chars() {
            match c {
                '"' | '\\' => {
                    self.text.push('\\');
                    self.text.push(c);
                }
                ' '..='~' => self.text.push(c),
                _ => self.text.push('_'),
            }
        }
        self.text.push('"');
    }

    /// The headers as `(name, value)`, in [`Status::headers`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields[..self.len]
            .iter()
            .map(|&(name, start, end)| (name, &self.text[start..end]))
    }

    /// The buffer and each header's name and byte range in it.
    pub fn into_parts(
        self,
    ) -> (
        String,
        impl Iterator<Item = (&'static str, std::ops::Range<usize>)>,
    ) {
        let fields = self.fields;
        let ranges = fields
            .into_iter()
            .take(self.len)
            .map(|(name, start, end)| (name, start..end));
        (self.text, ranges)
    }
}

/// Whole seconds, rounded up.
pub(crate) fn secs_ceil(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = format!(
            "{} rule={} remaining={}/{} reset_after={:.3}s",
            self.verdict.as_str(),
            self.rule,
            self.remaining,
            self.limit,
            self.reset_after.as_secs_f64()
        );
        if let Some(retry) = self.retry_after {
            let _ = write!(line, " retry_after={:.3}s", retry.as_secs_f64());
        }
        if self.degraded {
            line.push_str(" (degraded: the store's fault policy answered)");
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> Status {
        Status {
            allowed: false,
            remaining: 0,
            limit: 100,
            window: Duration::from_secs(60),
            reset_after: Duration::from_millis(59_001),
            retry_after: Some(Duration::from_millis(16_200)),
            rule: "api",
            strategy: Strategy::default(),
            blocked: false,
            verdict: Verdict::Limited,
            checked_at: Nanos::from_secs(1_700_000_000),
            degraded: false,
        }
    }

    #[test]
    fn denied_headers_round_up_and_include_retry_after() {
        assert_eq!(
            denied().headers(),
            vec![
                ("X-RateLimit-Limit", "100".to_owned()),
                ("X-RateLimit-Remaining", "0".to_owned()),
                ("X-RateLimit-Reset", "1700000060".to_owned()),
                ("Retry-After", "17".to_owned()),
                ("RateLimit-Policy", "\"api\";q=100;w=60".to_owned()),
                ("RateLimit", "\"api\";r=0;t=17".to_owned()),
            ]
        );
    }

    #[test]
    fn allowed_headers_have_no_retry_after() {
        let status = Status {
            allowed: true,
            remaining: 42,
            retry_after: None,
            reset_after: Duration::from_secs(17),
            verdict: Verdict::Allowed,
            ..denied()
        };
        let headers = status.headers();
        assert!(headers.iter().all(|(name, _)| *name != "Retry-After"));
        assert!(headers.contains(&("RateLimit", "\"api\";r=42;t=17".to_owned())));
    }

    #[test]
    fn rule_names_are_escaped_as_structured_field_strings() {
        let values = Status {
            rule: r#"a"b\c é"#,
            ..denied()
        }
        .header_values();
        let policy = values.iter().find(|(name, _)| *name == "RateLimit-Policy");
        assert_eq!(policy.unwrap().1, r#""a\"b\\c _";q=100;w=60"#);
    }
}
