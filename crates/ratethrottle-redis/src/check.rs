//! Checks `fast.lua` does not decide: one call of `check.lua` (with its own big integers), and
//! its reply read field by field into the decision, with the in-memory store's math.

use ratethrottle::clock::Nanos;
use ratethrottle::store::{ListKind, Outcome, Query, StoreError, StoreErrorKind};
use ratethrottle::strategy::{self, Compact, Decision, SlidingLog, State, peek_view};

use crate::keys::{hex, parse_seconds_nanos};
use crate::{RedisStore, fast};

/// The check script for everything `fast.lua` does not decide: exact integers, then the
/// decision.
pub(crate) const CHECK_SCRIPT: &str = concat!(
    include_str!("../lua/lists.lua"),
    include_str!("../lua/bignum.lua"),
    include_str!("../lua/check.lua")
);

impl RedisStore {
    /// Decides `query` in Redis; `screen_in_redis` when the process's copy of the lists is not
    /// fresh enough to screen the identifier.
    pub(crate) async fn decide(
        &self,
        query: Query<'_>,
        screen_in_redis: bool,
    ) -> Result<Outcome, StoreError> {
        let rule = query.rule;
        if let Some(kind) = fast::kind(rule, &query.params) {
            return self.decide_fast(query, kind, screen_in_redis).await;
        }
        let params = &query.params;
        let kind = match rule.compact {
            Some(Compact::Tat) => "tat",
            Some(Compact::FixedWindow) => "fixed",
            Some(Compact::SlidingCounter) => "counter",
            None => "log",
        };
        let now = if self.caller_time() {
            hex(query.now.as_nanos())
        } else {
            String::new()
        };
        let mut invocation = self.shared.script.prepare_invoke();
        invocation
            .key(self.state_key(rule, query.identifier))
            .key(self.list_key(ListKind::Whitelist, query.identifier))
            .key(self.list_key(ListKind::Blacklist, query.identifier))
            .arg(kind)
            .arg(now)
            .arg(hex(query.cost))
            .arg(match (query.refund, query.consume) {
                (true, _) => "2",
                (false, true) => "1",
                (false, false) => "0",
            })
            .arg(hex(rule.block))
            .arg(hex(params.limit))
            .arg(hex(params.window))
            .arg(hex(params.capacity));
        let mut connection = self.connection.clone();
        let reply: Vec<String> = self.run(invocation.invoke_async(&mut connection)).await?;
        Reply::new(&reply, &self.shared.address).outcome(&query)
    }
}

/// The script's answer, read field by field.
struct Reply<'a> {
    fields: &'a [String],
    address: &'a str,
}

impl<'a> Reply<'a> {
    fn new(fields: &'a [String], address: &'a str) -> Self {
        Reply { fields, address }
    }

    fn malformed(&self, what: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::Protocol,
            format!(
                "redis at {} sent an unexpected check reply ({what}): {:?}",
                self.address, self.fields
            ),
        )
    }

    fn text(&self, at: usize) -> Result<&'a str, StoreError> {
        self.fields
            .get(at)
            .map(String::as_str)
            .ok_or_else(|| self.malformed("too short"))
    }

    /// A decimal count.
    fn count(&self, at: usize) -> Result<u64, StoreError> {
        self.text(at)?
            .parse()
            .map_err(|_| self.malformed("not a count"))
    }

    /// A hexadecimal number that fits in 128 bits.
    fn wide(&self, at: usize) -> Result<u128, StoreError> {
        u128::from_str_radix(self.text(at)?, 16).map_err(|_| self.malformed("not a number"))
    }

    /// A hexadecimal number that fits in 64 bits, or a time as `"seconds:nanoseconds"`.
    fn number(&self, at: usize) -> Result<u64, StoreError> {
        let text = self.text(at)?;
        if text.contains(':') {
            return parse_seconds_nanos(text)
                .map(Nanos::as_nanos)
                .ok_or_else(|| self.malformed("not a time"));
        }
        u64::try_from(self.wide(at)?).map_err(|_| self.malformed("number too large"))
    }

    /// A time field, `None` when empty.
    fn time(&self, at: usize) -> Result<Option<Nanos>, StoreError> {
        match self.text(at)? {
            "" => Ok(None),
            _ => Ok(Some(Nanos::from_nanos(self.number(at)?))),
        }
    }

    fn outcome(&self, query: &Query<'_>) -> Result<Outcome, StoreError> {
        let now = self.number(1)?;
        match self.text(0)? {
            "white" => Ok(Outcome::Whitelisted),
            "black" => Ok(Outcome::Blacklisted {
                until: self.time(2)?,
            }),
            "blocked" => Ok(Outcome::Blocked {
                until: self
                    .time(2)?
                    .ok_or_else(|| self.malformed("no block end"))?,
            }),
            "decided" => {
                let allowed = self.text(2)? == "1";
                let blocked_until = self.time(3)?;
                let decision = match query.rule.compact {
                    Some(kind) => self.compact_decision(kind, query, now)?,
                    None => self.log_decision(query, now)?,
                };
                // A refund's script answers for a look it leaves to the strategy here.
                if decision.allowed != allowed && !query.refund {
                    return Err(self.malformed("the script and the strategy disagree"));
                }
                Ok(Outcome::Decided {
                    decision,
                    blocked_until,
                })
            }
            _ => Err(self.malformed("unknown outcome")),
        }
    }

    /// The sliding_window decision from the log as the script read it before the request
    /// (its sum, its newest entry, and for a denial its oldest entries), with the in-memory
    /// math: the entries the script did not send are folded into one at the newest time,
    /// which the decision reads only for the sum and for when the key is idle.
    fn log_decision(&self, query: &Query<'_>, now: u64) -> Result<Decision, StoreError> {
        let used = self.count(4)?;
        let mut entries = Vec::new();
        let mut at = 6;
        while at + 1 < self.fields.len() {
            entries.push((self.number(at)?, self.count(at + 1)?));
            at += 2;
        }
        let listed: u64 = entries.iter().map(|&(_, cost)| cost).sum();
        if let Some(newest) = self.time(5)? {
            let rest = used
                .checked_sub(listed)
                .ok_or_else(|| self.malformed("log entries beyond its sum"))?;
            if rest > 0 {
                entries.push((newest.as_nanos(), rest));
            }
        }
        let mut log = SlidingLog::from_entries(entries);
        let params = &query.params;
        // After a refund the script sent the refunded log, looked at for one unit.
        let cost = if query.refund { 1 } else { query.cost };
        let decision = log.decide(params, now, cost);
        Ok(if query.consume {
            decision
        } else {
            peek_view(decision, cost, log.idle_at(params), now)
        })
    }

    /// The decision from the key's state before the request, with the in-memory math.
    fn compact_decision(
        &self,
        kind: Compact,
        query: &Query<'_>,
        now: u64,
    ) -> Result<Decision, StoreError> {
        let state = match kind {
            Compact::Tat => {
                let scaled = self.wide(4)?;
                let limit = u128::from(query.params.limit);
                let whole =
                    u64::try_from(scaled / limit).map_err(|_| self.malformed("TAT too large"))?;
                let frac = u64::try_from(scaled % limit).unwrap_or(0);
                State([whole, frac, 0])
            }
            Compact::FixedWindow => State([self.number(4)?, self.number(5)?, 0]),
            Compact::SlidingCounter => State([self.number(4)?, self.number(5)?, self.number(6)?]),
        };
        Ok(derive_decision(kind, query, &state, now))
    }
}

/// The decision for `query` at `now` from the key's state before it, with the in-memory math.
pub(crate) fn derive_decision(
    kind: Compact,
    query: &Query<'_>,
    state: &State,
    now: u64,
) -> Decision {
    let params = &query.params;
    if query.refund {
        // The script wrote the same refund; answer a look at the state after it.
        let after = strategy::refund(kind, params, state, now, query.cost);
        let (decision, _) = strategy::decide(kind, params, &after, now, 1);
        let idle = strategy::idle_at(kind, params, &after, now);
        return peek_view(decision, 1, idle, now);
    }
    let (decision, _) = strategy::decide(kind, params, state, now, query.cost);
    if query.consume {
        decision
    } else {
        let idle = strategy::idle_at(kind, params, state, now);
        peek_view(decision, query.cost, idle, now)
    }
}
