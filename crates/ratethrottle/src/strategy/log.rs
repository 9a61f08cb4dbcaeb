//! sliding_window: an exact log of admissions in `(now − window, now]`.

use std::collections::VecDeque;

use super::{Decision, Params};

/// The admissions of one key within the last window, oldest first, as `(time, cost)`.
///
/// Admissions at the same instant share one entry, and the costs in the log never exceed
/// `limit`, so it holds at most `limit` entries (bounded by
/// [`MAX_SLIDING_WINDOW_LIMIT`](crate::rule::MAX_SLIDING_WINDOW_LIMIT)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingLog {
    entries: VecDeque<(u64, u64)>,
    used: u64,
}

impl SlidingLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log of `entries` (`(time, cost)`, oldest first; entries at the same time are merged),
    /// e.g. as another store kept it.
    pub fn from_entries(entries: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut log = SlidingLog::new();
        for (at, cost) in entries {
            log.record(at, cost);
        }
        log
    }

    /// The admissions held, `(time, cost)`, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Forgets admissions that left the window ending at `now`. Returns whether anything is
    /// left.
    pub fn prune(&mut self, params: &Params, now: u64) -> bool {
        while let Some(&(at, cost)) = self.entries.front() {
            if at.saturating_add(params.window) > now {
                break;
            }
            self.entries.pop_front();
            self.used -= cost;
        }
        !self.entries.is_empty()
    }

    /// Decides a request of `cost` at `now`, first forgetting what left the window. Call
    /// [`SlidingLog::record`] to commit an admission.
    pub fn decide(&mut self, params: &Params, now: u64, cost: u64) -> Decision {
        self.prune(params, now);
        let used = self.used.saturating_add(cost);
        if used <= params.limit {
            return Decision {
                allowed: true,
                remaining: params.limit - used,
                reset_after: params.window,
                retry_after: None,
            };
        }
        let retry_after = (cost <= params.limit).then(|| {
            // The oldest admissions leave first; wait until enough of them have.
            let mut left = self.used;
            let mut at_time = now;
            for &(at, entry_cost) in &self.entries {
                left -= entry_cost;
                at_time = at.saturating_add(params.window);
                if left + cost <= params.limit {
                    break;
                }
            }
            at_time.saturating_sub(now)
        });
        Decision {
            allowed: false,
            remaining: params.limit.saturating_sub(self.used),
            reset_after: self.idle_at(params).saturating_sub(now),
            retry_after,
        }
    }

    /// Commits an admission of `cost` at `now` (after an allowed [`SlidingLog::decide`]).
    pub fn record(&mut self, now: u64, cost: u64) {
        self.used = self.used.saturating_add(cost);
        match self.entries.back_mut() {
            Some((at, entry_cost)) if *at == now => *entry_cost += cost,
            _ => self.entries.push_back((now, cost)),
        }
    }

    /// Gives back `amount` of the newest admissions (after forgetting what left the window
    /// ending at `now`).
    pub fn refund(&mut self, params: &Params, now: u64, amount: u64) {
        self.prune(params, now);
        let mut left = amount;
        while left > 0 {
            let Some((_, cost)) = self.entries.back_mut() else {
                break;
            };
            let taken = (*cost).min(left);
            *cost -= taken;
            self.used -= taken;
            left -= taken;
            if *cost == 0 {
                self.entries.pop_back();
            }
        }
    }

    /// When the newest admission leaves the window.
    pub fn idle_at(&self, params: &Params) -> u64 {
        self.entries
            .back()
            .map_or(0, |&(at, _)| at.saturating_add(params.window))
    }

    /// The number of entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
