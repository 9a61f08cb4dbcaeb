//! The six strategies as pure functions of `(params, state, now, cost)`.
//!
//! No clock, no map, no I/O: a store keeps the state and hands in `now` (nanoseconds since the
//! Unix epoch). All arithmetic is in integers — nanoseconds, with `u128` intermediate products —
//! so there is no float drift and no overflow for any rule that passes [`Rule::validate`].
//!
//! - [`tat`]: token_bucket, leaky_bucket and gcra, which are one algorithm (a theoretical
//!   arrival time, "TAT") seen three ways. The TAT is kept exactly, as whole nanoseconds plus a
//!   remainder in units of `1/limit` ns, so `window / limit` never needs rounding.
//! - [`fixed_window`] and [`sliding_counter`]: counters in windows aligned to Unix-epoch multiples
//!   of the window.
//! - [`SlidingLog`]: the exact log of admissions for sliding_window.
//!
//! ```
//! use ratethrottle::strategy::{self, Params, State};
//! use ratethrottle::{Rule, Strategy};
//! use std::time::Duration;
//!
//! let rule = Rule::new("api", 2, Duration::from_secs(1)).strategy(Strategy::Gcra);
//! let params = Params::of(&rule);
//! let kind = strategy::Compact::of(rule.strategy).unwrap();
//! let now = 1_000_000_000;
//! let (first, state) = strategy::decide(kind, &params, &State::default(), now, 1);
//! let (second, state) = strategy::decide(kind, &params, &state, now, 1);
//! let (third, _) = strategy::decide(kind, &params, &state, now, 1);
//! assert!(first.allowed && second.allowed && !third.allowed);
//! assert_eq!(third.retry_after, Some(500_000_000)); // one emission interval
//! ```
//!
//! [`Rule::validate`]: crate::Rule::validate

use crate::clock::duration_to_nanos;
use crate::rule::{Rule, Strategy};

mod log;
pub mod tat;
mod window;

pub use log::SlidingLog;
pub use window::{fixed_window, sliding_counter};

/// The numbers a strategy needs from a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    /// Requests per window (the refill or drain rate for the bucket strategies).
    pub limit: u64,
    /// The most one key can hold: `burst` for the bucket strategies, `limit` otherwise.
    pub capacity: u64,
    /// The window in nanoseconds.
    pub window: u64,
}

impl Params {
    /// The parameters of `rule` (which should be valid).
    pub fn of(rule: &Rule) -> Self {
        Params {
            limit: rule.limit.max(1),
            capacity: rule.capacity().max(1),
            window: duration_to_nanos(rule.window).max(1),
        }
    }

    /// These parameters with `limit` (at least 1) in place of the limit, for a check with a
    /// per-call limit: the capacity keeps its ratio to the limit (a burst of 1.5× the limit
    /// stays 1.5× it, rounded down, never below the new limit) and the window is unchanged.
    ///
    /// ```
    /// use ratethrottle::strategy::Params;
    ///
    /// let params = Params { limit: 100, capacity: 150, window: 60_000_000_000 };
    /// assert_eq!(params.with_limit(40), Params { limit: 40, capacity: 60, ..params });
    /// assert_eq!(params.with_limit(1).capacity, 1);
    /// ```
    #[inline]
    #[must_use]
    pub fn with_limit(self, limit: u64) -> Self {
        let limit = limit.max(1);
        let capacity = if self.capacity == self.limit {
            // No burst (and every windowed strategy): no division on the hot path.
            limit
        } else {
            let scaled = u128::from(self.capacity) * u128::from(limit);
            narrow(div_wide(scaled, self.limit)).max(limit)
        };
        Params {
            limit,
            capacity,
            window: self.window,
        }
    }
}

/// What a strategy decided about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// How many unit-cost requests could still be admitted at this instant (after this one, if
    /// it was admitted and committed).
    pub remaining: u64,
    /// Nanoseconds until the key is back to its full allowance.
    pub reset_after: u64,
    /// For a denial, nanoseconds until the same request would be admitted; `None` when
    /// admitted, or when the cost exceeds the capacity and it never could be.
    pub retry_after: Option<u64>,
}

/// The state of one key for the constant-size strategies: three words whose meaning depends on
/// the strategy. All zeros is a fresh key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct State(pub [u64; 3]);

/// The strategies whose state is a constant-size [`State`] (all but sliding_window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compact {
    /// token_bucket, leaky_bucket and gcra.
    Tat,
    /// fixed_window.
    FixedWindow,
    /// sliding_counter.
    SlidingCounter,
}

impl Compact {
    /// The compact form of `strategy`, or `None` for [`Strategy::SlidingWindow`], which keeps a
    /// [`SlidingLog`].
    pub const fn of(strategy: Strategy) -> Option<Self> {
        match strategy {
            Strategy::TokenBucket | Strategy::LeakyBucket | Strategy::Gcra => Some(Compact::Tat),
            Strategy::FixedWindow => Some(Compact::FixedWindow),
            Strategy::SlidingCounter => Some(Compact::SlidingCounter),
            Strategy::SlidingWindow => None,
        }
    }
}

/// Decides a request of `cost` at `now` against `state`; returns the decision and the state to
/// keep if the request is admitted (a denial never changes the state).
#[inline]
pub fn decide(
    kind: Compact,
    params: &Params,
    state: &State,
    now: u64,
    cost: u64,
) -> (Decision, State) {
    match kind {
        Compact::Tat => tat::decide(params, state, now, cost),
        Compact::FixedWindow => fixed_window::decide(params, state, now, cost),
        Compact::SlidingCounter => sliding_counter::decide(params, state, now, cost),
    }
}

/// Gives back `amount` units to `state` at `now` (a refund of what was admitted): the state
/// as if `amount` fewer had been admitted, never beyond a fresh key.
#[inline]
pub fn refund(kind: Compact, params: &Params, state: &State, now: u64, amount: u64) -> State {
    match kind {
        Compact::Tat => tat::refund(params, state, now, amount),
        Compact::FixedWindow => fixed_window::refund(params, state, now, amount),
        Compact::SlidingCounter => sliding_counter::refund(params, state, now, amount),
    }
}

/// The time (ns since the epoch) from which `state` is equivalent to a fresh key and can be
/// forgotten.
#[inline]
pub fn idle_at(kind: Compact, params: &Params, state: &State, now: u64) -> u64 {
    match kind {
        Compact::Tat => tat::idle_at(params, state, now),
        Compact::FixedWindow => fixed_window::idle_at(params, state),
        Compact::SlidingCounter => sliding_counter::idle_at(params, state),
    }
}

/// The longest a key under `strategy` can take to become idle after a request, in nanoseconds:
/// a full bucket's drain (`capacity · window / limit`), two windows for sliding_counter (the
/// previous window's count weighs in the current one), else one window.
pub fn idle_span(strategy: Strategy, params: &Params) -> u64 {
    match Compact::of(strategy) {
        Some(Compact::Tat) => {
            let debt = u128::from(params.capacity) * u128::from(params.window);
            narrow(div_ceil_wide(debt, params.limit))
        }
        Some(Compact::SlidingCounter) => params.window.saturating_mul(2),
        _ => params.window,
    }
}

/// `a / b` for `b > 0`, with a 64-bit division when `a` fits (128-bit division is a slow
/// library call).
#[inline]
fn div_wide(a: u128, b: u64) -> u128 {
    match u64::try_from(a) {
        Ok(a) => u128::from(a / b),
        Err(_) => a / u128::from(b),
    }
}

/// `(a / b, a % b)` for `b > 0`, 64-bit when `a` fits.
#[inline]
fn div_rem_wide(a: u128, b: u64) -> (u128, u64) {
    match u64::try_from(a) {
        Ok(a) => (u128::from(a / b), a % b),
        Err(_) => (a / u128::from(b), narrow(a % u128::from(b))),
    }
}

/// `ceil(a / b)` for `b > 0`, 64-bit when `a` fits.
#[inline]
fn div_ceil_wide(a: u128, b: u64) -> u128 {
    let (quotient, remainder) = div_rem_wide(a, b);
    quotient + u128::from(remainder > 0)
}

/// Narrows a `u128` that is known to fit; saturates otherwise.
#[inline]
fn narrow(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;

/// The strategy's answer to a peek: `decide`'s result restated for a request not taken.
pub fn peek_view(decision: Decision, cost: u64, idle_at: u64, now: u64) -> Decision {
    Decision {
        remaining: if decision.allowed {
            decision.remaining + cost
        } else {
            decision.remaining
        },
        reset_after: idle_at.saturating_sub(now),
        ..decision
    }
}
