//! Rules ([`Rule`]), the algorithms they use ([`Strategy`]), what they count ([`Scope`]) and
//! rate strings ([`parse_rate`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::clock::duration_to_nanos;
use crate::identifier::elide;

/// The longest window or refill span a rule may have: 100 years. Beyond it nanosecond arithmetic
/// would approach the limits of `u64` time.
pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The largest `limit` a [`Strategy::SlidingWindow`] rule may have: its exact log keeps up to
/// `limit` entries per key. Use [`Strategy::SlidingCounter`] for larger limits.
pub const MAX_SLIDING_WINDOW_LIMIT: u64 = 100_000;

/// The longest rule name, in bytes.
pub const MAX_RULE_NAME_LEN: usize = 128;

/// Why a rule or a rate string is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The rule name is empty.
    #[error("rule name is empty; give every rule a name such as \"api\"")]
    EmptyName,
    /// The rule name is longer than [`MAX_RULE_NAME_LEN`].
    #[error("rule name is {len} bytes long; the limit is {MAX_RULE_NAME_LEN}")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The rule name contains a control character (a newline, NUL, ...).
    #[error(
        "rule name {name:?} contains a control character; use printable characters such as \"api\" or \"login-v2\""
    )]
    NameHasControl {
        /// The name, escaped and elided.
        name: String,
    },
    /// `limit` is zero.
    #[error("rule {rule:?}: limit must be at least 1 (use the blacklist to deny everything)")]
    ZeroLimit {
        /// The rule's name.
        rule: String,
    },
    /// `window` is zero.
    #[error("rule {rule:?}: window must be longer than zero")]
    ZeroWindow {
        /// The rule's name.
        rule: String,
    },
    /// `burst` is below `limit`.
    #[error("rule {rule:?}: burst {burst} is below limit {limit}; burst must be >= limit")]
    BurstBelowLimit {
        /// The rule's name.
        rule: String,
        /// The burst given.
        burst: u64,
        /// The limit given.
        limit: u64,
    },
    /// The window, or the time a full burst takes to refill, is longer than [`MAX_WINDOW`].
    #[error(
        "rule {rule:?}: the window or the time to refill the burst exceeds 100 years; use a shorter window or smaller burst"
    )]
    SpanTooLong {
        /// The rule's name.
        rule: String,
    },
    /// A sliding-window rule's limit is above [`MAX_SLIDING_WINDOW_LIMIT`].
    #[error(
        "rule {rule:?}: sliding_window keeps an exact log and allows at most {MAX_SLIDING_WINDOW_LIMIT} requests per window, got {limit}; use sliding_counter for large limits"
    )]
    LogTooLarge {
        /// The rule's name.
        rule: String,
        /// The limit given.
        limit: u64,
    },
    /// A rate string such as `"100/fortnight"` could not be parsed.
    #[error(
        "invalid rate {input:?}: {reason}; expected \"<count>/<unit>\" or \"<count> per <unit>\" with unit second, minute, hour, day or week (s, m, h, d, w; also ms), optionally with a multiple such as \"100/30s\""
    )]
    InvalidRate {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An unknown strategy name.
    #[error(
        "unknown strategy {input:?}; expected one of token_bucket, leaky_bucket, gcra, fixed_window, sliding_window, sliding_counter"
    )]
    UnknownStrategy {
        /// The text given.
        input: String,
    },
    /// An unknown scope name.
    #[error("unknown scope {input:?}; expected one of ip, user, endpoint, global")]
    UnknownScope {
        /// The text given.
        input: String,
    },
}

/// The algorithm a rule uses to decide. The crate README's *Strategies* section gives each one's
/// admission rule, state and `reset_after`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// A bucket of `burst` tokens refilled at `limit / window`; starts full.
    TokenBucket,
    /// A meter that drains at `limit / window` and holds at most `burst`.
    LeakyBucket,
    /// The generic cell rate algorithm: emission interval `window / limit`, tolerance from `burst`.
    Gcra,
    /// A counter per window aligned to Unix-epoch multiples of `window`.
    FixedWindow,
    /// An exact log of admissions in the last `window`.
    SlidingWindow,
    /// The previous window's count weighted by overlap plus the current count (the default).
    #[default]
    SlidingCounter,
}

impl Strategy {
    /// Every strategy, in documentation order.
    pub const ALL: [Strategy; 6] = [
        Strategy::TokenBucket,
        Strategy::LeakyBucket,
        Strategy::Gcra,
        Strategy::FixedWindow,
        Strategy::SlidingWindow,
        Strategy::SlidingCounter,
    ];

    /// The snake_case name used in configuration files and by the original library.
    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::TokenBucket => "token_bucket",
            Strategy::LeakyBucket => "leaky_bucket",
            Strategy::Gcra => "gcra",
            Strategy::FixedWindow => "fixed_window",
            Strategy::SlidingWindow => "sliding_window",
            Strategy::SlidingCounter => "sliding_counter",
        }
    }

    /// Whether `burst` matters for this strategy (the bucket-shaped ones); the windowed
    /// strategies admit at most `limit` per window.
    pub const fn uses_burst(self) -> bool {
        matches!(
            self,
            Strategy::TokenBucket | Strategy::LeakyBucket | Strategy::Gcra
        )
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = RuleError;

    /// Parses the snake_case names, case-insensitively, with `-` or spaces for `_`; also
    /// `sliding_window_counter` and `sliding_log`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let normal = normalize_name(input);
        let found = match normal.as_str() {
            "token_bucket" => Strategy::TokenBucket,
            "leaky_bucket" => Strategy::LeakyBucket,
            "gcra" => Strategy::Gcra,
            "fixed_window" => Strategy::FixedWindow,
            "sliding_window" | "sliding_log" | "sliding_window_log" => Strategy::SlidingWindow,
            "sliding_counter" | "sliding_window_counter" => Strategy::SlidingCounter,
            _ => {
                return Err(RuleError::UnknownStrategy {
                    input: elide(input).into_owned(),
                });
            }
        };
        Ok(found)
    }
}

/// What a rule counts separately: the identifier the caller passes is interpreted as this.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One allowance per client IP address (the default).
    #[default]
    Ip,
    /// One allowance per authenticated user.
    User,
    /// One allowance per endpoint, shared by all clients.
    Endpoint,
    /// One allowance for everything.
    Global,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Ip, Scope::User, Scope::Endpoint, Scope::Global];

    /// The lowercase name used in configuration files and by the original library.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::User => "user",
            Scope::Endpoint => "endpoint",
            Scope::Global => "global",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = RuleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match normalize_name(input).as_str() {
            "ip" => Ok(Scope::Ip),
            "user" => Ok(Scope::User),
            "endpoint" => Ok(Scope::Endpoint),
            "global" => Ok(Scope::Global),
            _ => Err(RuleError::UnknownScope {
                input: elide(input).into_owned(),
            }),
        }
    }
}

fn normalize_name(input: &str) -> String {
    input
        .trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A rate-limiting policy: at most `limit` requests per `window`, decided by `strategy`.
///
/// Build one with [`Rule::new`] or [`Rule::from_rate`] and the consuming setters; a
/// [`Limiter`](crate::Limiter) validates it when it is added.
///
/// ```
/// use ratethrottle::{Rule, Scope, Strategy};
/// use std::time::Duration;
///
/// let rule = Rule::new("api", 100, Duration::from_secs(60))
///     .strategy(Strategy::TokenBucket)
///     .burst(150)
///     .scope(Scope::User)
///     .block_duration(Duration::ZERO);
/// assert_eq!(rule.burst, 150);
/// assert!(rule.validate().is_ok());
/// assert_eq!(Rule::from_rate("login", "5/minute")?.window, Duration::from_secs(60));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Rule {
    /// Unique name; checks refer to the rule by it.
    pub name: String,
    /// Requests admitted per `window` (the refill rate for the bucket strategies).
    pub limit: u64,
    /// The time span `limit` applies to.
    pub window: Duration,
    /// The algorithm; default [`Strategy::SlidingCounter`].
    pub strategy: Strategy,
    /// Bucket capacity for token_bucket, leaky_bucket and gcra; default `limit`, never below it.
    pub burst: u64,
    /// What the identifier passed to a check stands for; default [`Scope::Ip`].
    pub scope: Scope,
    /// How long an identifier is blocked after a violation; default 300 s, zero for no block.
    pub block_duration: Duration,
}

impl Rule {
    /// The default [`Rule::block_duration`]: five minutes, as in the original library.
    pub const DEFAULT_BLOCK_DURATION: Duration = Duration::from_secs(300);

    /// A rule admitting `limit` requests per `window`, with the defaults: sliding_counter,
    /// burst = limit, scope ip, and **a 300 s block after a violation** (as in the original
    /// library): a client that exceeds a "10/minute" rule is refused for five minutes. Add
    /// `.block_duration(Duration::ZERO)` to only limit, never block.
    ///
    /// ```
    /// use ratethrottle::Rule;
    /// use std::time::Duration;
    ///
    /// let rule = Rule::new("api", 10, Duration::from_secs(60));
    /// assert_eq!(rule.block_duration, Duration::from_secs(300));
    /// let no_block = rule.block_duration(Duration::ZERO);
    /// assert_eq!(no_block.block_duration, Duration::ZERO);
    /// ```
    pub fn new(name: impl Into<String>, limit: u64, window: Duration) -> Self {
        Rule {
            name: name.into(),
            limit,
            window,
            strategy: Strategy::default(),
            burst: limit,
            scope: Scope::default(),
            block_duration: Self::DEFAULT_BLOCK_DURATION,
        }
    }

    /// A rule from a rate string such as `"100/minute"` (see [`parse_rate`]), with the defaults
    /// of [`Rule::new`] — including the 300 s block after a violation.
    pub fn from_rate(name: impl Into<String>, rate: &str) -> Result<Self, RuleError> {
        let (limit, window) = parse_rate(rate)?;
        Ok(Rule::new(name, limit, window))
    }

    /// Sets the strategy.
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the burst capacity (must be at least `limit`).
    #[must_use]
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }

    /// Sets the scope.
    #[must_use]
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Sets how long violators are blocked; [`Duration::ZERO`] disables blocking.
    #[must_use]
    pub fn block_duration(mut self, block_duration: Duration) -> Self {
        self.block_duration = block_duration;
        self
    }

    /// The largest cost a single request may have: `burst` for the bucket strategies, `limit`
    /// for the windowed ones.
    pub fn capacity(&self) -> u64 {
        if self.strategy.uses_burst() {
            self.burst
        } else {
            self.limit
        }
    }

    /// Whether checks of this rule can be decided at `limit` instead of its own limit (see
    /// [`Limiter::check_at_limit`](crate::Limiter::check_at_limit)); why not, otherwise.
    pub fn check_limit(&self, limit: u64) -> Result<(), &'static str> {
        if limit == 0 {
            return Err("a limit must be at least 1");
        }
        if self.strategy == Strategy::SlidingWindow && limit > MAX_SLIDING_WINDOW_LIMIT {
            return Err(
                "sliding_window keeps a log of admissions and enforces at most 100000 per window",
            );
        }
        Ok(())
    }

    /// Checks that the rule can be enforced exactly.
    pub fn validate(&self) -> Result<(), RuleError> {
        let rule = || self.name.clone();
        if self.name.is_empty() {
            return Err(RuleError::EmptyName);
        }
        if self.name.len() > MAX_RULE_NAME_LEN {
            return Err(RuleError::NameTooLong {
                len: self.name.len(),
            });
        }
        if self.name.chars().any(char::is_control) {
            return Err(RuleError::NameHasControl {
                name: elide(&self.name).into_owned(),
            });
        }
        if self.limit == 0 {
            return Err(RuleError::ZeroLimit { rule: rule() });
        }
        if self.window.is_zero() {
            return Err(RuleError::ZeroWindow { rule: rule() });
        }
        if self.burst < self.limit {
            return Err(RuleError::BurstBelowLimit {
                rule: rule(),
                burst: self.burst,
                limit: self.limit,
            });
        }
        // The time a full burst takes to drain: burst * window / limit.
        let window = u128::from(duration_to_nanos(self.window));
        let span = u128::from(self.capacity()) * window / u128::from(self.limit);
        if self.window > MAX_WINDOW || span > MAX_WINDOW.as_nanos() {
            return Err(RuleError::SpanTooLong { rule: rule() });
        }
        if self.strategy == Strategy::SlidingWindow && self.limit > MAX_SLIDING_WINDOW_LIMIT {
            return Err(RuleError::LogTooLarge {
                rule: rule(),
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// Parses a rate such as `"100/minute"` into `(limit, window)`.
///
/// Accepts `<count>/<unit>` and `<count> per <unit>`, with spaces anywhere around the parts;
/// units `second`, `minute`, `hour`, `day`, `week` in full, plural or short (`s`, `sec`, `m`,
/// `min`, `h`, `hr`, `d`, `w`) and `ms`; and a multiple before the unit (`"100/30s"`,
/// `"20/5m"`, `"10 per 2 hours"`).
///
/// ```
/// use ratethrottle::parse_rate;
/// use std::time::Duration;
///
/// assert_eq!(parse_rate("100/minute")?, (100, Duration::from_secs(60)));
/// assert_eq!(parse_rate("  100 / sec ")?, (100, Duration::from_secs(1)));
/// assert_eq!(parse_rate("20/5m")?, (20, Duration::from_secs(300)));
/// assert_eq!(parse_rate("100 per hour")?, (100, Duration::from_secs(3600)));
/// assert!(parse_rate("100/fortnight").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_rate(input: &str) -> Result<(u64, Duration), RuleError> {
    let fail = |reason: &str| RuleError::InvalidRate {
        input: elide(input).into_owned(),
        reason: reason.to_owned(),
    };
    let text = input.trim().to_ascii_lowercase();
    let (count, period) = match text.split_once('/') {
        Some(parts) => parts,
        None => match text.split_once(" per ") {
            Some(parts) => parts,
            None => return Err(fail("missing \"/\" or \" per \" between count and unit")),
        },
    };
    let count = count.trim();
    if count.is_empty() {
        return Err(fail("missing the count before the unit"));
    }
    let limit: u64 = count.parse().map_err(|_| {
        // The original's sentence first, then what is wrong with this count.
        let digits = count.strip_prefix(['-', '+']).unwrap_or(count);
        let reason = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if count.starts_with('-') {
                format!("Limit must be positive: count {} is negative", elide(count))
            } else {
                format!(
                    "Limit must be positive: count {} is too large (at most {})",
                    elide(count),
                    u64::MAX
                )
            }
        } else {
            format!("count {:?} is not a whole number", elide(count))
        };
        fail(&reason)
    })?;
    if limit == 0 {
        return Err(fail("Limit must be positive: count must be at least 1"));
    }
    let period = period.trim();
    let digits = period
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(period.len());
    let (multiple, unit) = period.split_at(digits);
    let multiple: u64 = if multiple.is_empty() {
        1
    } else {
        multiple
            .parse()
            .map_err(|_| fail(&format!("multiple {:?} is too large", elide(multiple))))?
    };
    if multiple == 0 {
        return Err(fail("the multiple before the unit must be at least 1"));
    }
    let unit = unit.trim();
    let unit_nanos: u64 = match unit {
        "ms" | "msec" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        "w" | "wk" | "week" | "weeks" => 604_800_000_000_000,
        "" => return Err(fail("missing the time unit")),
        other => return Err(fail(&format!("unknown time unit {:?}", elide(other)))),
    };
    let window = multiple
        .checked_mul(unit_nanos)
        .filter(|&n| u128::from(n) <= MAX_WINDOW.as_nanos())
        .ok_or_else(|| fail("the window is longer than 100 years"))?;
    Ok((limit, Duration::from_nanos(window)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_call_limit_is_checked_against_the_strategy() {
        let log = Rule::new("log", 10, Duration::from_secs(60)).strategy(Strategy::SlidingWindow);
        assert_eq!(log.check_limit(MAX_SLIDING_WINDOW_LIMIT), Ok(()));
        let reason = log.check_limit(MAX_SLIDING_WINDOW_LIMIT + 1).unwrap_err();
        assert!(
            reason.contains(&MAX_SLIDING_WINDOW_LIMIT.to_string()),
            "{reason}"
        );
        assert!(log.check_limit(0).is_err());
        let counter = Rule::new("c", 10, Duration::from_secs(60));
        assert_eq!(counter.check_limit(u64::MAX), Ok(()));
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parses_every_documented_rate_form() {
        let cases = [
            ("100/minute", 100, secs(60)),
            ("10/second", 10, secs(1)),
            ("1000/hour", 1000, secs(3600)),
            ("5/day", 5, secs(86_400)),
            ("10000/day", 10_000, secs(86_400)),
            ("100/min", 100, secs(60)),
            ("100/s", 100, secs(1)),
            ("100/m", 100, secs(60)),
            ("100/h", 100, secs(3600)),
            ("100/d", 100, secs(86_400)),
            ("10/seconds", 10, secs(1)),
            ("100/sec", 100, secs(1)),
            ("2000/hr", 2000, secs(3600)),
            ("75/m", 75, secs(60)),
            ("  100 / minute ", 100, secs(60)),
            ("100 per minute", 100, secs(60)),
            ("100/30s", 100, secs(30)),
            ("20/5m", 20, secs(300)),
            ("10 per 2 hours", 10, secs(7200)),
            ("3/1w", 3, secs(604_800)),
            ("50/250ms", 50, Duration::from_millis(250)),
            ("100/MINUTE", 100, secs(60)),
        ];
        for (input, limit, window) in cases {
            assert_eq!(parse_rate(input), Ok((limit, window)), "{input}");
        }
    }

    #[test]
    fn rejects_bad_rates_naming_what_was_expected() {
        for (input, reason) in [
            ("100/fortnight", "unknown time unit \"fortnight\""),
            ("100", "missing \"/\""),
            ("/minute", "missing the count"),
            ("abc/minute", "not a whole number"),
            ("0/minute", "at least 1"),
            ("-5/minute", "Limit must be positive: count -5 is negative"),
            (
                "18446744073709551616/second",
                "Limit must be positive: count 18446744073709551616 is too large",
            ),
            ("100/", "missing the time unit"),
            ("100/0s", "multiple before the unit must be at least 1"),
            ("100/99999999999999999999s", "too large"),
            ("100/999999d", "longer than 100 years"),
        ] {
            let message = parse_rate(input).unwrap_err().to_string();
            assert!(message.contains(reason), "{input}: {message}");
            assert!(message.contains("expected \"<count>/<unit>\""), "{message}");
        }
    }

    #[test]
    fn defaults_match_the_original_library() {
        let rule = Rule::new("api", 100, secs(60));
        assert_eq!(rule.strategy, Strategy::SlidingCounter);
        assert_eq!(rule.burst, 100);
        assert_eq!(rule.scope, Scope::Ip);
        assert_eq!(rule.block_duration, secs(300));
    }

    #[test]
    fn validation_names_the_problem() {
        let base = Rule::new("api", 10, secs(60));
        assert_eq!(
            Rule::new("", 10, secs(1)).validate(),
            Err(RuleError::EmptyName)
        );
        assert!(matches!(
            Rule::new("api", 0, secs(1)).validate(),
            Err(RuleError::ZeroLimit { .. })
        ));
        assert!(matches!(
            Rule::new("api", 1, Duration::ZERO).validate(),
            Err(RuleError::ZeroWindow { .. })
        ));
        let err = base.clone().burst(5).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule \"api\": burst 5 is below limit 10; burst must be >= limit"
        );
        assert!(matches!(
            Rule::new("api", 1, secs(60))
                .strategy(Strategy::TokenBucket)
                .burst(u64::MAX)
                .validate(),
            Err(RuleError::SpanTooLong { .. })
        ));
        assert!(matches!(
            Rule::new("api", 1_000_000, secs(60))
                .strategy(Strategy::SlidingWindow)
                .validate(),
            Err(RuleError::LogTooLarge { .. })
        ));
        assert!(matches!(
            Rule::new("x".repeat(200), 1, secs(1)).validate(),
            Err(RuleError::NameTooLong { len: 200 })
        ));
        for name in ["api\nX-Injected: 1", "a\0b", "tab\there"] {
            let error = Rule::new(name, 1, secs(1)).validate().unwrap_err();
            assert!(
                matches!(error, RuleError::NameHasControl { .. }),
                "{name:?}"
            );
            assert!(!error.to_string().contains('\n'), "{error}");
        }
        assert!(base.validate().is_ok());
    }

    #[test]
    fn huge_inputs_are_elided_in_messages() {
        let rate = format!("1/{}", "x".repeat(10_000_000));
        let message = parse_rate(&rate).unwrap_err().to_string();
        assert!(message.len() < 1_000, "{} bytes", message.len());
        assert!(message.contains("(10000002 bytes)"), "{message}");
        let strategy = "y".repeat(1_000_000).parse::<Strategy>().unwrap_err();
        assert!(strategy.to_string().len() < 1_000);
    }

    #[test]
    fn strategy_and_scope_round_trip_through_their_names() {
        for strategy in Strategy::ALL {
            assert_eq!(strategy.to_string().parse::<Strategy>(), Ok(strategy));
        }
        for scope in Scope::ALL {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
        assert_eq!(
            "Token-Bucket".parse::<Strategy>(),
            Ok(Strategy::TokenBucket)
        );
        assert_eq!(
            "sliding_window_counter".parse::<Strategy>(),
            Ok(Strategy::SlidingCounter)
        );
        let err = "fastest".parse::<Strategy>().unwrap_err().to_string();
        assert!(err.contains("expected one of token_bucket"), "{err}");
        assert!("galaxy".parse::<Scope>().is_err());
    }
}
