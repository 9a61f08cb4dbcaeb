//! Where limiter state lives: the [`Store`] trait and the in-process [`MemoryStore`].
//!
//! A store's whole job is to apply one decision atomically per key: screen the identifier
//! against the whitelist and blacklist, honour a temporary block, run the strategy and, on a
//! violation, start the block — all as one step, so concurrent checks never over-admit. The
//! [`Limiter`](crate::Limiter) does everything else (rules by name, metrics, violations).
//!
//! `RedisStore` (crate `ratethrottle-redis`) implements the same trait with the same math in Lua.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use crate::clock::{Nanos, duration_to_nanos};
use crate::rule::{Rule, Strategy};
use crate::strategy::{Compact, Decision, Params};

mod backed;
mod kv;
mod memory;

pub use backed::{BackedStore, KeyValueNow};
pub use kv::{KeyValueStats, KeyValueStore, SetMode, Value};
pub use memory::{MemoryStore, MemoryStoreConfig};

/// A validated rule in the form stores use. The [`Limiter`](crate::Limiter) builds one per rule.
#[derive(Debug)]
#[non_exhaustive]
pub struct RuleSpec {
    /// The rule's name (interned: it lives as long as the process).
    pub name: &'static str,
    /// The algorithm.
    pub strategy: Strategy,
    /// The numbers the algorithm needs.
    pub params: Params,
    /// The constant-size form of the strategy, `None` for sliding_window.
    pub compact: Option<Compact>,
    /// The block after a violation, in nanoseconds (0 = none).
    pub block: u64,
    /// The longest a key of this rule can take to become idle after a request, in nanoseconds
    /// (a full bucket's drain, or the windows its counts weigh in): what a store's keys must
    /// live past their last change ([`strategy::idle_span`](crate::strategy::idle_span)).
    pub idle_span: u64,
    /// A stable hash of the name, the strategy and the window: what the meaning of a key's
    /// state depends on. Stores key state by it, so a rule replaced with another strategy or
    /// window starts fresh instead of misreading old state, while a new `limit` or `burst`
    /// carries the state over (windowed strategies keep their counts; the bucket strategies
    /// keep the amount consumed, see [`strategy`](crate::strategy)); the same on every process and version.
    pub fingerprint: u64,
    /// The [`MemoryStore`]'s table of this rule's keys, after its first check there (with the
    /// store's id): no lookup by rule on the hot path.
    pub(crate) memory_table: OnceLock<(u64, Arc<memory::table::KeyTable>)>,
}

impl RuleSpec {
    /// The store form of `rule`, which must be valid.
    pub fn new(rule: &Rule) -> Self {
        let params = Params::of(rule);
        let mut hash = Fnv::default();
        hash.write(rule.name.as_bytes());
        hash.write(&[0xff]);
        hash.write(rule.strategy.as_str().as_bytes());
        hash.write(&params.window.to_le_bytes());
        RuleSpec {
            name: crate::intern::intern(&rule.name),
            strategy: rule.strategy,
            params,
            compact: Compact::of(rule.strategy),
            block: duration_to_nanos(rule.block_duration),
            idle_span: crate::strategy::idle_span(rule.strategy, &params),
            fingerprint: hash.0,
            memory_table: OnceLock::new(),
        }
    }
}

/// 64-bit FNV-1a: tiny, stable across processes and versions (unlike std's hashers).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One request for a decision.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Query<'a> {
    /// The rule to apply.
    pub rule: &'a Arc<RuleSpec>,
    /// Who is asking (already normalized by the limiter: at most 256 bytes).
    pub identifier: &'a str,
    /// The request's cost, `1..=params.capacity`.
    pub cost: u64,
    /// The numbers to decide with: the rule's own, or the rule's with a per-call limit
    /// ([`Query::with_limit`]). Stores decide with these, never with `rule.params`.
    pub params: Params,
    /// The time of the decision.
    pub now: Nanos,
    /// `true` to record the request; `false` to only look ([`Limiter::peek`](crate::Limiter::peek)).
    pub consume: bool,
    /// `true` to give back `cost` units instead ([`Limiter::refund`](crate::Limiter::refund)):
    /// the key's state becomes what it would be had `cost` fewer been admitted (never beyond a
    /// fresh key), and the outcome is a peek at it. Lists and blocks answer as for a check,
    /// and a blocked key is not refunded. `consume` is `false` with it.
    pub refund: bool,
}

impl<'a> Query<'a> {
    /// A query that records the request when admitted.
    pub fn new(rule: &'a Arc<RuleSpec>, identifier: &'a str, cost: u64, now: Nanos) -> Self {
        Query {
            rule,
            identifier,
            cost,
            params: rule.params,
            now,
            consume: true,
            refund: false,
        }
    }

    /// The same query decided at `limit` instead of the rule's limit (see
    /// [`Params::with_limit`]): the same key, state and strategy, so what was consumed under
    /// one limit counts under the next. For limits computed per client, such as the adaptive
    /// limiter's.
    pub fn with_limit(self, limit: u64) -> Self {
        Query {
            params: self.rule.params.with_limit(limit),
            ..self
        }
    }

    /// The same query, only looking.
    pub fn peek(self) -> Self {
        Query {
            consume: false,
            refund: false,
            ..self
        }
    }

    /// The same query, giving `cost` units back ([`Query::refund`]).
    pub fn refunding(self) -> Self {
        Query {
            consume: false,
            refund: true,
            ..self
        }
    }
}

/// What a store decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(C)]
pub enum Outcome {
    /// The identifier is whitelisted: admitted without counting.
    Whitelisted,
    /// The identifier is blacklisted, until the given time or for good.
    Blacklisted {
        /// When the entry expires, if it does.
        until: Option<Nanos>,
    },
    /// The (rule, identifier) pair is serving a block after a violation.
    Blocked {
        /// When the block ends.
        until: Nanos,
    },
    /// The strategy decided. For a peek, `decision.remaining` is the allowance before the
    /// request and `reset_after` describes the state as it is.
    Decided {
        /// The strategy's decision.
        decision: Decision,
        /// Set when this request was a violation and started a block ending then.
        blocked_until: Option<Nanos>,
    },
}

impl Outcome {
    /// Whether the request is admitted.
    #[inline]
    pub fn admits(&self) -> bool {
        match self {
            Outcome::Whitelisted => true,
            Outcome::Decided { decision, .. } => decision.allowed,
            Outcome::Blacklisted { .. } | Outcome::Blocked { .. } => false,
        }
    }

    /// Whether the strategy denied the request (a violation, as opposed to a list or a block).
    #[inline]
    pub fn is_violation(&self) -> bool {
        matches!(self, Outcome::Decided { decision, .. } if !decision.allowed)
    }
}

/// The two identifier lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Identifiers that bypass every rule.
    Whitelist,
    /// Identifiers that are always denied.
    Blacklist,
}

impl ListKind {
    /// `"whitelist"` or `"blacklist"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ListKind::Whitelist => "whitelist",
            ListKind::Blacklist => "blacklist",
        }
    }
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a whitelist or blacklist.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ListEntry {
    /// The identifier.
    pub identifier: String,
    /// When the entry expires, if it does.
    pub expires_at: Option<Nanos>,
}

impl ListEntry {
    /// An entry for `identifier`.
    pub fn new(identifier: impl Into<String>, expires_at: Option<Nanos>) -> Self {
        ListEntry {
            identifier: identifier.into(),
            expires_at,
        }
    }
}

/// The broad class of a [`StoreError`], which decides how callers react to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend cannot be reached (connection refused, closed, circuit open).
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// The backend answered something unexpected.
    Protocol,
    /// The backend refused us: wrong credentials, no permission, no such database. A
    /// configuration error when connecting; in a check, the fault policy answers as for any
    /// other failure.
    Refused,
    /// The operation does not apply to the value found (incrementing text, a sum past `i64`,
    /// an object a Redis store cannot hold). Not a failure of the backend.
    Invalid,
}

/// A failure of the storage backend.
#[derive(Debug)]
pub struct StoreError(Box<StoreErrorInner>);

/// Boxed, so results that may carry a `StoreError` stay small on the hot path.
#[derive(Debug)]
struct StoreErrorInner {
    kind: StoreErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    fallback: Option<Outcome>,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl StoreError {
    /// An error of `kind` with a message that says what failed, e.g.
    /// `redis at 127.0.0.1:6379 unreachable: connection refused`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError(Box::new(StoreErrorInner {
            kind,
            message: message.into(),
            source: None,
            fallback: None,
        }))
    }

    /// Attaches the answer the store's fault policy gives instead (fail open, or a decision in
    /// this process): the [`Limiter`](crate::Limiter) then answers with it, marked
    /// [`degraded`](crate::Status::degraded), instead of failing the check.
    #[must_use]
    pub fn with_fallback(mut self, outcome: Outcome) -> Self {
        self.0.fallback = Some(outcome);
        self
    }

    /// The fault policy's answer, when the store gave one (see [`StoreError::with_fallback`]).
    pub fn fallback(&self) -> Option<Outcome> {
        self.0.fallback
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// The class of the error.
    pub fn kind(&self) -> StoreErrorKind {
        self.0.kind
    }

    /// Whether the backend is unreachable, too slow or refusing us: the cases a fault policy
    /// (fail open, fail closed, fall back) handles.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self.0.kind,
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout | StoreErrorKind::Refused
        )
    }
}

/// A place to keep limiter state. Every method that may do I/O returns a `Send` future.
///
/// ## Behavior
///
/// [`Store::check`] must be atomic per (rule, identifier): screen the lists, honour an active
/// block, decide with the strategy and, when consuming, record an admission or start the block
/// of a violation, with no other check of the same key in between. The conformance suite
/// (feature `conformance`) pins the semantics every store must share.
pub trait Store: Send + Sync + 'static {
    /// A short name for status output, e.g. `"memory"` or `"redis"`.
    fn kind(&self) -> &'static str;

    /// Decides `query` atomically (see the trait docs).
    fn check(&self, query: Query<'_>) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// Decides `query` like [`Store::check`] but without waiting, for a store that never needs
    /// to (the [`MemoryStore`]): the limiter then skips the future machinery on its hot path.
    /// `None` (the default) means "await [`Store::check`] instead".
    #[inline]
    fn check_at_once(&self, query: &Query<'_>) -> Option<Result<Outcome, StoreError>> {
        let _ = query;
        None
    }

    /// Whether [`Store::check_at_once`] always answers and every future of this store is
    /// ready when first polled (the [`MemoryStore`]). Adapters then decide inside the call
    /// that receives a request, with no task or allocation for the wait.
    #[inline]
    fn answers_at_once(&self) -> bool {
        false
    }

    /// Forgets the state and any block of `identifier` under `rule`.
    fn reset(
        &self,
        rule: &RuleSpec,
        identifier: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds `identifier` to `list` (replacing an existing entry's expiry).
    fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires_at: Option<Nanos>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes `identifier` from `list`; `true` if it was there.
    fn list_remove(
        &self,
        list: ListKind,
        identifier: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether `identifier` is on `list` at `now`.
    fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The unexpired entries of `list` at `now`.
    fn list_entries(
        &self,
        list: ListKind,
        now: Nanos,
    ) -> impl Future<Output = Result<Vec<ListEntry>, StoreError>> + Send;

    /// The number of unexpired entries on `list` as far as this process knows, without I/O
    /// (used by [`Limiter::metrics`](crate::Limiter::metrics)).
    fn list_len_hint(&self, list: ListKind, now: Nanos) -> u64;

    /// The backend's trouble so far, for a store that can fail (used by
    /// [`Limiter::metrics`](crate::Limiter::metrics)); `None` (the default) for one that cannot.
    fn fault_stats(&self) -> Option<FaultStats> {
        None
    }
}

/// What a check answers when a store's backend cannot (unreachable, timed out, refusing,
/// circuit open). Stores that can fail (the Redis store) take one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPolicy {
    /// Admit the request (as a fresh key would be), log and count it. Lists this process knows
    /// of still apply. The default: the backend being down never takes the site down.
    #[default]
    FailOpen,
    /// Return the error: the limiter's `check` fails with a store error whose
    /// [`is_store_unavailable`](crate::Error::is_store_unavailable) is true (HTTP 503).
    FailClosed,
    /// Decide in this process with an in-memory store until the backend is back: limits hold
    /// per process instead of per fleet.
    FallbackMemory,
}

impl FaultPolicy {
    /// `"fail_open"`, `"fail_closed"` or `"fallback_memory"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultPolicy::FailOpen => "fail_open",
            FaultPolicy::FailClosed => "fail_closed",
            FaultPolicy::FallbackMemory => "fallback_memory",
        }
    }
}

impl std::fmt::Display for FaultPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FaultPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "fail_open" => Ok(FaultPolicy::FailOpen),
            "fail_closed" => Ok(FaultPolicy::FailClosed),
            "fallback_memory" => Ok(FaultPolicy::FallbackMemory),
            _ => Err(format!(
                "unknown fault policy {text:?}; expected fail_open, fail_closed or fallback_memory"
            )),
        }
    }
}

/// Counts of a store's trouble with its backend since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Calls to the backend that failed (unreachable, timed out, refused).
    pub errors: u64,
    /// Checks answered by the fault policy instead of the backend (admitted by `fail_open`,
    /// decided by `fallback_memory`, or refused by `fail_closed`).
    pub degraded: u64,
    /// How many times the circuit opened.
    pub circuit_opens: u64,
    /// Whether the circuit is open now (checks skip the backend until a probe succeeds).
    pub circuit_open: bool,
    /// Whether a degraded period is under way: the last call failed and none has succeeded
    /// since.
    pub degraded_now: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_their_names() {
        for policy in [
            FaultPolicy::FailOpen,
            FaultPolicy::FailClosed,
            FaultPolicy::FallbackMemory,
        ] {
            assert_eq!(policy.as_str().parse::<FaultPolicy>(), Ok(policy));
        }
        let error = "fail_sometimes".parse::<FaultPolicy>().unwrap_err();
        assert!(error.contains("expected fail_open"), "{error}");
    }

    #[test]
    fn store_errors_keep_their_message_kind_and_cause() {
        let cause =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = StoreError::new(
            StoreErrorKind::Unavailable,
            "redis at 127.0.0.1:6379 unreachable: connection refused",
        )
        .with_source(cause);
        assert_eq!(
            error.to_string(),
            "redis at 127.0.0.1:6379 unreachable: connection refused"
        );
        assert!(error.is_unavailable());
        let source = std::error::Error::source(&error).expect("the cause is kept");
        assert_eq!(source.to_string(), "connection refused");
    }
}
