//! The common case in plain doubles: `fast.lua` decides token_bucket, leaky_bucket, gcra,
//! fixed_window and sliding_counter checks for rules whose numbers stay far below 2^53, any
//! number of checks per call. Times travel as (seconds, nanoseconds) pairs, every other
//! quantity as an integer-valued double, so the script is exact without big integers.

use ratethrottle::clock::Nanos;
use ratethrottle::store::{Outcome, Query, RuleSpec, StoreError, StoreErrorKind};
use ratethrottle::strategy::{Compact, Params, State};

use crate::derive_decision;

/// The script; see its header for the arguments and the reply.
pub(crate) const SCRIPT: &str = concat!(
    include_str!("../lua/lists.lua"),
    include_str!("../lua/fast.lua")
);

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Every limit, capacity and product the script forms stays below this, so sums of a few of
/// them stay below 2^53.
const EXACT: u128 = 1 << 50;
/// Window lengths up to this (52 days) keep `start + 2 · window` in nanoseconds exact.
const LONGEST_WINDOW: u64 = 1 << 52;
/// Keys live this much longer than they can take to become idle, in Redis's own time: the
/// decision's clock (the caller's, with `TimeSource::Caller`) may run apart from it.
const MARGIN_MS: u64 = 1000;
/// Doubles per rule and per check in the script's arguments, and per check in its reply.
const RULE: usize = 8;
const CHECK: usize = 6;
const ANSWER: usize = 7;

/// Whether the script can decide checks of `rule` at `params` (its own, or with a per-call
/// limit): which of its strategies, if any.
pub(crate) fn kind(rule: &RuleSpec, params: &Params) -> Option<f64> {
    if u128::from(params.limit) >= EXACT {
        return None;
    }
    match rule.compact? {
        Compact::Tat if u128::from(params.capacity) * u128::from(params.window) < EXACT => {
            Some(1.0)
        }
        Compact::Tat => None,
        // Window starts are computed on (seconds, nanoseconds): whole seconds, or a divisor of
        // one second.
        window @ (Compact::FixedWindow | Compact::SlidingCounter)
            if params.window < LONGEST_WINDOW
                && (params.window.is_multiple_of(NANOS_PER_SECOND)
                    || NANOS_PER_SECOND.is_multiple_of(params.window)) =>
        {
            Some(if window == Compact::FixedWindow {
                2.0
            } else {
                3.0
            })
        }
        _ => None,
    }
}

/// `nanos` as the script's (seconds, nanoseconds).
fn split(nanos: u64) -> [f64; 2] {
    [
        (nanos / NANOS_PER_SECOND) as f64,
        (nanos % NANOS_PER_SECOND) as f64,
    ]
}

/// A key's time to live in milliseconds: `nanos` rounded up, plus the margin.
fn keep_ms(nanos: u64) -> f64 {
    (nanos.div_ceil(1_000_000) + MARGIN_MS) as f64
}

/// One check's part of the script's arguments: its rule's numbers and its own.
pub(crate) struct Request {
    rule: [f64; RULE],
    /// Everything but the rule's position, which the batch assigns.
    check: [f64; CHECK - 1],
}

impl Request {
    /// The request for `query`; `screen` asks the script to look up the list entries too.
    pub(crate) fn new(query: &Query<'_>, kind: f64, caller_time: bool, screen: bool) -> Self {
        let (rule, params) = (query.rule, &query.params);
        // A cost beyond the capacity is denied whatever it is: one more keeps numbers small.
        let most = match rule.compact {
            Some(Compact::Tat) => params.capacity,
            _ => params.limit,
        };
        let span = rule.idle_span;
        let [now_s, now_n] = if caller_time {
            split(query.now.as_nanos())
        } else {
            [-1.0, -1.0]
        };
        let [block_s, block_n] = split(rule.block);
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        Request {
            rule: [
                kind,
                params.limit as f64,
                params.window as f64,
                params.capacity as f64,
                block_s,
                block_n,
                keep_ms(span),
                keep_ms(span.max(rule.block)),
            ],
            check: [
                flag(screen),
                query.cost.min(most + 1) as f64,
                if query.refund {
                    2.0
                } else {
                    flag(query.consume)
                },
                now_s,
                now_n,
            ],
        }
    }
}

/// The script's two arguments for `requests`: each distinct rule once, then the checks.
pub(crate) fn encode<'a>(requests: impl Iterator<Item = &'a Request>) -> [Vec<u8>; 2] {
    let mut rules: Vec<[f64; RULE]> = Vec::new();
    let mut checks = Vec::new();
    for request in requests {
        let position = match rules.iter().position(|rule| rule == &request.rule) {
            Some(known) => known,
            None => {
                rules.push(request.rule);
                rules.len() - 1
            }
        };
        checks.extend(((position + 1) as f64).to_be_bytes());
        checks.extend(request.check.iter().flat_map(|value| value.to_be_bytes()));
    }
    let rules = rules.iter().flatten().flat_map(|value| value.to_be_bytes());
    [rules.collect(), checks]
}

/// A reply that does not read as the script's answer.
fn malformed(address: &str, what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Protocol,
        format!("redis at {address} sent an unexpected check reply ({what})"),
    )
}

/// The script's reply: the server's time, then [`ANSWER`] numbers per check.
pub(crate) struct Reply {
    numbers: Vec<i64>,
}

impl Reply {
    /// Reads the reply to `checks` checks.
    pub(crate) fn parse(
        numbers: Vec<i64>,
        checks: usize,
        address: &str,
    ) -> Result<Self, StoreError> {
        if numbers.len() != 2 + ANSWER * checks {
            return Err(malformed(address, "wrong length"));
        }
        Ok(Reply { numbers })
    }

    /// The outcome of check `index`, which asked `query`.
    pub(crate) fn outcome(
        &self,
        index: usize,
        query: &Query<'_>,
        address: &str,
    ) -> Result<Outcome, StoreError> {
        let bad = |what| malformed(address, what);
        let answer = &self.numbers[2 + ANSWER * index..2 + ANSWER * (index + 1)];
        let whole = |value: i64| u64::try_from(value).map_err(|_| bad("not a whole number"));
        let time = |seconds: i64, nanos: i64| -> Result<Option<Nanos>, StoreError> {
            if seconds < 0 {
                return Ok(None);
            }
            whole(seconds)?
                .checked_mul(NANOS_PER_SECOND)
                .and_then(|at| at.checked_add(whole(nanos).ok()?))
                .map(|at| Some(Nanos::from_nanos(at)))
                .ok_or_else(|| bad("time too large"))
        };
        let until = time(answer[1], answer[2])?;
        let allowed = match answer[0] {
            2 => return Ok(Outcome::Whitelisted),
            3 => return Ok(Outcome::Blacklisted { until }),
            4 => {
                let until = until.ok_or_else(|| bad("no block end"))?;
                return Ok(Outcome::Blocked { until });
            }
            1 => true,
            0 => false,
            _ => return Err(bad("unknown outcome")),
        };
        // The server's time comes first when it decided (0, 0 otherwise).
        let now = match time(self.numbers[0], self.numbers[1])? {
            Some(server) if server.as_nanos() > 0 => server.as_nanos(),
            _ => query.now.as_nanos(),
        };
        let kind = query
            .rule
            .compact
            .ok_or_else(|| bad("no compact strategy"))?;
        let start = time(answer[3], answer[4])?.map_or(0, Nanos::as_nanos);
        let state = match kind {
            // For buckets the fourth word is the limit the state was written under.
            Compact::Tat => State([start, whole(answer[5])?, whole(answer[6])?]),
            Compact::FixedWindow => State([start, whole(answer[5])?, 0]),
            Compact::SlidingCounter => State([start, whole(answer[5])?, whole(answer[6])?]),
        };
        let decision = derive_decision(kind, query, &state, now);
        // A refund's script answers 1; the look after it is the strategy's, here.
        if decision.allowed != allowed && !query.refund {
            return Err(bad("the script and the strategy disagree"));
        }
        Ok(Outcome::Decided {
            decision,
            blocked_until: until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratethrottle::{Rule, Strategy};
    use std::time::Duration;

    fn spec(strategy: Strategy, limit: u64, window: Duration) -> RuleSpec {
        RuleSpec::new(&Rule::new("r", limit, window).strategy(strategy))
    }

    fn kind(rule: &RuleSpec) -> Option<f64> {
        super::kind(rule, &rule.params)
    }

    #[test]
    fn ordinary_rules_take_the_fast_script() {
        let minute = Duration::from_secs(60);
        assert_eq!(kind(&spec(Strategy::Gcra, 100, minute)), Some(1.0));
        assert_eq!(
            kind(&spec(Strategy::FixedWindow, 10_000, minute)),
            Some(2.0)
        );
        let quarter = Duration::from_millis(250);
        assert_eq!(kind(&spec(Strategy::SlidingCounter, 5, quarter)), Some(3.0));
        assert_eq!(kind(&spec(Strategy::SlidingWindow, 5, minute)), None);
    }

    #[test]
    fn rules_beyond_exact_doubles_do_not() {
        let odd = Duration::from_millis(1500);
        assert_eq!(kind(&spec(Strategy::FixedWindow, 5, odd)), None);
        let year = Duration::from_secs(365 * 86_400);
        assert_eq!(kind(&spec(Strategy::TokenBucket, 1_000_000, year)), None);
        assert_eq!(kind(&spec(Strategy::SlidingCounter, 1 << 51, year)), None);
    }

    proptest::proptest! {
        /// Issue 15: whatever a server (or something posing as one) answers, reading it never
        /// panics: an outcome or a protocol error.
        #[test]
        fn any_reply_is_an_outcome_or_an_error(
            numbers in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<i64>(),
                    proptest::sample::select(vec![-1, 0, 1, 2, 3, 4, 5, 1_000_000_000, i64::MAX, i64::MIN]),
                ],
                2 + 3 * ANSWER,
            ),
            checks in 1usize..=3,
            which in 0usize..3,
            cost in 1u64..5,
            now in proptest::prelude::any::<u64>(),
        ) {
            let strategy = [Strategy::TokenBucket, Strategy::FixedWindow, Strategy::SlidingCounter][which];
            let rule = std::sync::Arc::new(spec(strategy, 5, Duration::from_secs(60)));
            let query = Query::new(&rule, "id", cost, Nanos::from_nanos(now));
            let reply = Reply::parse(numbers[..2 + checks * ANSWER].to_vec(), checks, "127.0.0.1:1")
                .expect("the right length");
            for index in 0..checks {
                if let Err(error) = reply.outcome(index, &query, "127.0.0.1:1") {
                    proptest::prop_assert_eq!(error.kind(), StoreErrorKind::Protocol);
                }
            }
        }
    }

    #[test]
    fn replies_of_the_wrong_size_are_refused() {
        let error = Reply::parse(vec![0; 3], 1, "127.0.0.1:1")
            .err()
            .expect("an error");
        assert_eq!(error.kind(), StoreErrorKind::Protocol);
    }
}
