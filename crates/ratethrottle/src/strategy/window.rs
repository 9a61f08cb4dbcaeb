//! The windowed strategies. Windows start at Unix-epoch multiples of the window length, so every
//! process (and Redis) agrees on where a window begins.

use super::{Decision, Params, State, div_wide, narrow};

/// The start of the window containing `now`.
#[inline]
fn window_start(params: &Params, now: u64) -> u64 {
    now - now % params.window
}

/// fixed_window: `count + cost <= limit` within the current window.
///
/// State: word 0 = window start, word 1 = count admitted in it.
pub mod fixed_window {
    use super::*;

    /// Decides a request of `cost` at `now`.
    #[inline]
    pub fn decide(params: &Params, state: &State, now: u64, cost: u64) -> (Decision, State) {
        let [start, count, _] = state.0;
        let current = window_start(params, now);
        // A state from a later window (the clock moved back) keeps counting in that window.
        let (start, count) = if start >= current {
            (start, count)
        } else {
            (current, 0)
        };
        let end_in = start.saturating_add(params.window).saturating_sub(now);
        // `checked_add`: a saturating sum could land exactly on a limit of `u64::MAX`.
        if let Some(used) = count.checked_add(cost).filter(|&used| used <= params.limit) {
            let decision = Decision {
                allowed: true,
                remaining: params.limit - used,
                reset_after: end_in,
                retry_after: None,
            };
            (decision, State([start, used, 0]))
        } else {
            let decision = Decision {
                allowed: false,
                remaining: params.limit.saturating_sub(count),
                reset_after: if count > 0 { end_in } else { 0 },
                retry_after: (cost <= params.limit).then_some(end_in),
            };
            (decision, *state)
        }
    }

    /// Gives back `amount` of the current window's count (a count of an ended window is gone
    /// already).
    #[inline]
    pub fn refund(params: &Params, state: &State, now: u64, amount: u64) -> State {
        let [start, count, _] = state.0;
        if start < window_start(params, now) {
            return *state;
        }
        State([start, count.saturating_sub(amount), 0])
    }

    /// When the window holding the count has ended.
    #[inline]
    pub fn idle_at(params: &Params, state: &State) -> u64 {
        let [start, count, _] = state.0;
        if count == 0 {
            0
        } else {
            start.saturating_add(params.window)
        }
    }
}

/// sliding_counter: `prev · (1 − elapsed/window) + cur + cost <= limit`.
///
/// Evaluated exactly as `prev · (window − elapsed) + (cur + cost) · window <= limit · window`.
/// State: word 0 = current window start, word 1 = previous window's count, word 2 = current
/// window's count.
pub mod sliding_counter {
    use super::*;

    /// The state rolled forward to the window containing `now`.
    #[inline]
    fn roll(params: &Params, state: &State, now: u64) -> (u64, u64, u64) {
        let [start, prev, cur] = state.0;
        let current = window_start(params, now);
        if start >= current {
            (start, prev, cur)
        } else if start.saturating_add(params.window) == current {
            (current, cur, 0)
        } else {
            (current, 0, 0)
        }
    }

    /// Decides a request of `cost` at `now`.
    ///
    /// `prev · (window − elapsed) + (cur + cost) · window <= limit · window` holds exactly when
    /// `cur + cost + ⌈prev · (window − elapsed) / window⌉ <= limit`, so the test and the
    /// remaining count are whole-request arithmetic once the previous window's weighted share
    /// is rounded up (no division at all while the previous window is empty).
    #[inline]
    pub fn decide(params: &Params, state: &State, now: u64, cost: u64) -> (Decision, State) {
        let (start, prev, cur) = roll(params, state, now);
        let elapsed = now.saturating_sub(start).min(params.window);
        let prev_share = if prev == 0 {
            0
        } else {
            let weighted = u128::from(prev) * u128::from(params.window - elapsed);
            narrow(div_wide(
                weighted + u128::from(params.window - 1),
                params.window,
            ))
        };
        let reset_after = |cur: u64| {
            let end = if cur > 0 {
                start.saturating_add(params.window.saturating_mul(2))
            } else if prev > 0 {
                start.saturating_add(params.window)
            } else {
                now
            };
            end.saturating_sub(now)
        };
        // `checked_add`: a saturating sum could land exactly on a limit of `u64::MAX`.
        let used = cur.checked_add(prev_share);
        let after = used.and_then(|used| used.checked_add(cost));
        if let Some(after) = after.filter(|&n| n <= params.limit) {
            let cur = cur + cost;
            let decision = Decision {
                allowed: true,
                remaining: params.limit - after,
                reset_after: reset_after(cur),
                retry_after: None,
            };
            (decision, State([start, prev, cur]))
        } else {
            let decision = Decision {
                allowed: false,
                remaining: params.limit.saturating_sub(used.unwrap_or(u64::MAX)),
                reset_after: reset_after(cur),
                retry_after: (cost <= params.limit)
                    .then(|| retry_at(params, start, prev, cur, cost).saturating_sub(now)),
            };
            (decision, *state)
        }
    }

    /// The earliest time a denied request of `cost` is admitted, given no other admissions.
    fn retry_at(params: &Params, start: u64, prev: u64, cur: u64, cost: u64) -> u64 {
        let window = u128::from(params.window);
        // Later in this window, as the previous window's weight fades:
        // prev · (window − e) <= (limit − cur − cost) · window.
        let room = cur
            .checked_add(cost)
            .and_then(|n| params.limit.checked_sub(n));
        if let Some(room) = room {
            if prev > 0 {
                let span = div_wide(u128::from(room) * window, prev);
                if span < window {
                    return start.saturating_add(narrow(window - span));
                }
            }
        }
        // In the next window, where `cur` becomes the previous count:
        // cur · (window − e) <= (limit − cost) · window.
        let next = start.saturating_add(params.window);
        if cur == 0 {
            return next;
        }
        let room = u128::from(params.limit - cost);
        let span = div_wide(room * window, cur);
        next.saturating_add(narrow(window.saturating_sub(span)))
    }

    /// Gives back `amount`: from the current window's count first, then the previous one's
    /// (what was admitted just before the window turned).
    #[inline]
    pub fn refund(params: &Params, state: &State, now: u64, amount: u64) -> State {
        let (start, prev, cur) = roll(params, state, now);
        let from_cur = cur.min(amount);
        let from_prev = prev.min(amount - from_cur);
        State([start, prev - from_prev, cur - from_cur])
    }

    /// When both counts have faded out.
    #[inline]
    pub fn idle_at(params: &Params, state: &State) -> u64 {
        let [start, prev, cur] = state.0;
        if cur > 0 {
            start.saturating_add(params.window.saturating_mul(2))
        } else if prev > 0 {
            start.saturating_add(params.window)
        } else {
            0
        }
    }
}
