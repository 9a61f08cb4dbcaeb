//! Counters and the [`Metrics`] snapshot, plus the bounded history of [`Violation`]s.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use thread_local::ThreadLocal;

use crate::rule::Scope;

/// A snapshot of a limiter's counters, named as in the original library's `get_metrics()`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Checks made (peeks are not counted).
    pub total_requests: u64,
    /// Checks allowed, whitelisted ones included.
    pub allowed_requests: u64,
    /// Checks denied, for any reason (limit, block, blacklist).
    pub blocked_requests: u64,
    /// `blocked_requests` as a percentage of `total_requests` (0–100).
    pub block_rate: f64,
    /// Violations: denials by a strategy (each recorded as a [`Violation`]).
    pub violations: u64,
    /// Checks the store could not decide, included in the counts above: answered by its fault
    /// policy (admitted by `fail_open`, decided in this process by `fallback_memory`) or
    /// failed with a store error (`fail_closed`; counted as blocked, as callers refuse them).
    pub degraded_requests: u64,
    /// Calls from the store to its backend that failed (0 for the memory store).
    pub store_errors: u64,
    /// How many times the store's circuit breaker opened.
    pub store_circuit_opens: u64,
    /// Whether the store's circuit is open now (checks skip the backend).
    pub store_circuit_open: bool,
    /// Violation callbacks that panicked (caught; they did not affect the check).
    pub callback_panics: u64,
    /// Rules defined.
    pub active_rules: usize,
    /// Identifiers on the whitelist.
    pub whitelisted: u64,
    /// Identifiers on the blacklist (unexpired).
    pub blacklisted: u64,
    /// The most recent violations, newest last (at most 10; see
    /// [`Limiter::violations`](crate::Limiter::violations) for the whole history).
    pub recent_violations: Vec<Violation>,
    /// Counts per rule, sorted by name.
    pub rules: Vec<RuleMetrics>,
}

/// The counts of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleMetrics {
    /// The rule's name.
    pub rule: &'static str,
    /// Checks allowed under this rule.
    pub allowed: u64,
    /// Checks denied under this rule, for any reason.
    pub denied: u64,
    /// Denials by the strategy.
    pub violations: u64,
    /// Checks under this rule the store could not decide (included above).
    pub degraded: u64,
}

/// A request that exceeded its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// Who exceeded the limit (as stored: identifiers over 256 bytes are hashed).
    pub identifier: String,
    /// The rule exceeded.
    pub rule: &'static str,
    /// What the identifier stands for under this rule.
    pub scope: Scope,
    /// The rule's limit per window.
    pub limit: u64,
    /// The rule's window.
    pub window: Duration,
    /// The cost of the denied request.
    pub cost: u64,
    /// When it happened.
    pub at: SystemTime,
    /// How long until the request could be retried (including the block, if one started).
    pub retry_after: Duration,
    /// When the block that this violation started ends, if the rule blocks.
    pub blocked_until: Option<SystemTime>,
}

/// Which counter of a [`Counters`] to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Allowed = 0,
    Denied = 1,
    Violations = 2,
    Degraded = 3,
}

const COUNTS: [Count; 4] = [
    Count::Allowed,
    Count::Denied,
    Count::Violations,
    Count::Degraded,
];

/// Counts kept per thread: each thread bumps only its own, with a plain load and store (no
/// atomic read-modify-write on the hot path, no cache line shared between threads); a reader
/// sums them. A thread's counts outlive it (its slot passes to the next thread).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    per_thread: ThreadLocal<ThreadCounts>,
    /// Counts moved in from removed rules, so totals never go down.
    absorbed: [AtomicU64; 4],
    /// What the counts were at the last reset: [`Counters::get`] reports the difference, as
    /// another thread's count cannot be zeroed under it.
    baseline: [AtomicU64; 4],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct ThreadCounts([AtomicU64; 4]);

impl Counters {
    #[inline]
    pub(crate) fn add(&self, count: Count) {
        let counter = &self.per_thread.get_or_default().0[count as usize];
        // Only this thread writes this counter: a load and a store cannot lose an update.
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    fn total(&self, count: Count) -> u64 {
        let at = count as usize;
        self.per_thread
            .iter()
            .map(|counts| counts.0[at].load(Ordering::Relaxed))
            .sum::<u64>()
            + self.absorbed[at].load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self, count: Count) -> u64 {
        self.total(count)
            .saturating_sub(self.baseline[count as usize].load(Ordering::Relaxed))
    }

    /// Adds all of `other`'s counts to this one (used when a rule is removed, so totals never
    /// go down).
    pub(crate) fn absorb(&self, other: &Counters) {
        for count in COUNTS {
            self.absorbed[count as usize].fetch_add(other.get(count), Ordering::Relaxed);
        }
    }

    pub(crate) fn reset(&self) {
        for count in COUNTS {
            self.baseline[count as usize].store(self.total(count), Ordering::Relaxed);
        }
    }
}

/// The last `capacity` violations, oldest first.
#[derive(Debug)]
pub(crate) struct ViolationLog {
    capacity: usize,
    entries: Mutex<VecDeque<Violation>>,
}

impl ViolationLog {
    pub(crate) fn new(capacity: usize) -> Self {
        ViolationLog {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<Violation>> {
        // Every step leaves the deque whole, so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn push(&self, violation: Violation) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(violation);
    }

    /// The newest `n`, oldest first.
    pub(crate) fn latest(&self, n: usize) -> Vec<Violation> {
        let entries = self.entries();
        entries
            .iter()
            .skip(entries.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(i: u64) -> Violation {
        Violation {
            identifier: i.to_string(),
            rule: "r",
            scope: Scope::Ip,
            limit: 1,
            window: Duration::from_secs(1),
            cost: 1,
            at: SystemTime::UNIX_EPOCH,
            retry_after: Duration::ZERO,
            blocked_until: None,
        }
    }

    #[test]
    fn the_violation_log_keeps_the_newest() {
        let log = ViolationLog::new(3);
        for i in 0..10 {
            log.push(violation(i));
        }
        let ids: Vec<_> = log.latest(10).into_iter().map(|v| v.identifier).collect();
        assert_eq!(ids, ["7", "8", "9"]);
        assert_eq!(log.latest(1)[0].identifier, "9");
    }

    #[test]
    fn counters_sum_across_threads_and_survive_them() {
        let counters = Counters::default();
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counters.add(Count::Allowed);
                    }
                });
            }
        });
        assert_eq!(counters.get(Count::Allowed), 16_000);
        counters.reset();
        assert_eq!(counters.get(Count::Allowed), 0);
        counters.add(Count::Allowed);
        let removed = Counters::default();
        removed.add(Count::Denied);
        counters.absorb(&removed);
        assert_eq!(counters.get(Count::Allowed), 1);
        assert_eq!(counters.get(Count::Denied), 1);
    }
}
