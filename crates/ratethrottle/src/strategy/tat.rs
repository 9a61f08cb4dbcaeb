//! token_bucket, leaky_bucket and gcra: one algorithm over a theoretical arrival time (TAT).
//!
//! With `limit` per `window` and capacity `burst`, each unit of cost takes `window / limit` of
//! "time debt"; a request is admitted when the debt after it is at most `burst` units:
//!
//! - token bucket: tokens = `burst - debt`, refilled at `limit / window`, starts full;
//! - leaky bucket (as a meter): level = `debt`, drains at `limit / window`, holds `burst`;
//! - GCRA: emission interval `T = window / limit`, tolerance `τ = (burst - 1) · T`; admitted
//!   when `TAT - now ≤ τ`.
//!
//! To stay exact when `window / limit` is not a whole number of nanoseconds, time is scaled by
//! `limit`: one scaled unit is `1/limit` ns, a request of cost `c` adds `c · window` units, and
//! the capacity is `burst · window` units. [`State`] keeps the TAT as whole nanoseconds (word 0)
//! plus the remainder in scaled units (word 1, always `< limit`), and the `limit` it was written
//! under (word 2; 0 in states from before it was kept).
//!
//! The scaled debt is the amount consumed times `window`, whatever the limit: when a rule's
//! `limit` changes (a reload), the debt written under the old limit is read with it and carries
//! over unchanged — a client keeps exactly what it consumed, so lowering a limit never hands
//! out fresh allowance.

use super::{Decision, Params, State, div_ceil_wide, div_rem_wide, div_wide, narrow};

/// How far the TAT in `state` is ahead of `now`, in scaled units (`1/limit` ns). Working
/// relative to `now` keeps the numbers small, so divisions stay 64-bit in practice.
#[inline]
fn debt(params: &Params, state: &State, now: u64) -> u128 {
    let [tat, frac, written] = state.0;
    let limit = if written == 0 { params.limit } else { written };
    if tat >= now {
        u128::from(tat - now) * u128::from(limit) + u128::from(frac)
    } else {
        0
    }
}

/// Decides a request of `cost` at `now`.
#[inline]
pub fn decide(params: &Params, state: &State, now: u64, cost: u64) -> (Decision, State) {
    let window = u128::from(params.window);
    let capacity = u128::from(params.capacity) * window;
    let debt = debt(params, state, now);
    let need = u128::from(cost) * window;
    if debt + need <= capacity {
        let ahead = debt + need;
        let (whole, frac) = div_rem_wide(ahead, params.limit);
        let whole = narrow(whole);
        let decision = Decision {
            allowed: true,
            remaining: narrow(div_wide(capacity - ahead, params.window)),
            reset_after: whole + u64::from(frac > 0),
            retry_after: None,
        };
        let state = State([now.saturating_add(whole), frac, params.limit]);
        (decision, state)
    } else {
        let decision = Decision {
            allowed: false,
            remaining: narrow(div_wide(capacity.saturating_sub(debt), params.window)),
            reset_after: narrow(div_ceil_wide(debt, params.limit)),
            retry_after: (need <= capacity)
                .then(|| narrow(div_ceil_wide(debt + need - capacity, params.limit))),
        };
        (decision, *state)
    }
}

/// Gives back `amount` units: the state as if `amount` fewer had been admitted, never below a
/// fresh key (a refund cannot add allowance beyond the capacity).
#[inline]
pub fn refund(params: &Params, state: &State, now: u64, amount: u64) -> State {
    let debt = debt(params, state, now);
    let left = debt.saturating_sub(u128::from(amount) * u128::from(params.window));
    if left == 0 {
        return State::default();
    }
    let (whole, frac) = div_rem_wide(left, params.limit);
    State([now.saturating_add(narrow(whole)), frac, params.limit])
}

/// When the debt is paid off and the key is as good as fresh: the TAT. Left alone, a state's
/// debt drains at the limit it was written under, so that holds whatever limit reads the state
/// next (after a reload, or with a per-call limit). The signature matches the other strategies'.
#[inline]
pub fn idle_at(_params: &Params, state: &State, _now: u64) -> u64 {
    let [tat, frac, _] = state.0;
    tat.saturating_add(u64::from(frac > 0))
}
