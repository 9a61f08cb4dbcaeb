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
//! plus the remainder in scaled units (word 1, always `< limit`).

use super::{Decision, Params, State, ceil_div, narrow};

/// The scaled TAT stored in `state`.
#[inline]
fn scaled_tat(params: &Params, state: &State) -> u128 {
    u128::from(state.0[0]) * u128::from(params.limit) + u128::from(state.0[1])
}

/// Decides a request of `cost` at `now`.
#[inline]
pub fn decide(params: &Params, state: &State, now: u64, cost: u64) -> (Decision, State) {
    let limit = u128::from(params.limit);
    let window = u128::from(params.window);
    let capacity = u128::from(params.capacity) * window;
    let now_scaled = u128::from(now) * limit;
    let base = scaled_tat(params, state).max(now_scaled);
    let debt = base - now_scaled;
    let need = u128::from(cost) * window;
    let to_ns = |scaled: u128| narrow(ceil_div(scaled, limit)).saturating_sub(now);
    if debt + need <= capacity {
        let tat = base + need;
        let decision = Decision {
            allowed: true,
            remaining: narrow((capacity - debt - need) / window),
            reset_after: to_ns(tat),
            retry_after: None,
        };
        let state = State([narrow(tat / limit), narrow(tat % limit), 0]);
        (decision, state)
    } else {
        let decision = Decision {
            allowed: false,
            remaining: narrow(capacity.saturating_sub(debt) / window),
            reset_after: to_ns(base),
            retry_after: (need <= capacity).then(|| to_ns(base + need - capacity)),
        };
        (decision, *state)
    }
}

/// When the debt is paid off and the key is as good as fresh.
#[inline]
pub fn idle_at(params: &Params, state: &State) -> u64 {
    narrow(ceil_div(
        scaled_tat(params, state),
        u128::from(params.limit),
    ))
}
