//! The crate's error type.

use crate::rule::RuleError;
use crate::store::StoreError;

/// Everything that can go wrong in a [`Limiter`](crate::Limiter) call. A denial is not an
/// error: it is an `Ok(Status)` with `allowed == false`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rule named in a check does not exist.
    #[error("unknown rule {rule:?}; {}", known_rules(.known))]
    UnknownRule {
        /// The name asked for.
        rule: String,
        /// The names that exist, sorted.
        known: Vec<String>,
    },
    /// A rule could not be added because it is invalid.
    #[error(transparent)]
    InvalidRule(#[from] RuleError),
    /// A request's cost is zero or more than the rule could ever admit at once.
    #[error(
        "cost {cost} is not allowed for rule {rule:?}: it must be between 1 and the rule's capacity {capacity}"
    )]
    InvalidCost {
        /// The rule's name.
        rule: String,
        /// The cost asked for.
        cost: u64,
        /// The largest cost the rule admits (its burst, or its limit for windowed strategies).
        capacity: u64,
    },
    /// A per-call limit ([`Limiter::check_at_limit`](crate::Limiter::check_at_limit)) the rule
    /// cannot be decided at.
    #[error("limit {limit} is not allowed for rule {rule:?}: {reason}")]
    InvalidLimit {
        /// The rule's name.
        rule: String,
        /// The limit asked for.
        limit: u64,
        /// Why not.
        reason: &'static str,
    },
    /// The storage backend failed.
    #[error("rate limit storage failed: {0}")]
    Store(#[from] StoreError),
}

impl Error {
    /// Whether the storage backend is unreachable or too slow (the case for fail-open or
    /// fail-closed handling).
    pub fn is_store_unavailable(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_unavailable())
    }
}

fn known_rules(known: &[String]) -> String {
    if known.is_empty() {
        "no rules are defined yet; add one with Limiter::add_rule".to_owned()
    } else {
        format!("known rules: {}", known.join(", "))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
