//! What a check does while Redis is failing: the fault policy, and a circuit breaker so an
//! outage costs no waiting per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ratethrottle::store::{FaultPolicy, FaultStats, StoreError};

/// Consecutive failures that open the circuit.
const OPEN_AFTER: u32 = 3;
/// The first wait before probing Redis again; doubled on each failed probe up to the maximum.
const FIRST_COOLDOWN: Duration = Duration::from_millis(250);
const MAX_COOLDOWN: Duration = Duration::from_secs(2);

/// Closed: calls go to Redis. Open: calls fail at once until the cooldown ends, when one call
/// probes; its success closes the circuit, its failure reopens it for twice as long.
///
/// It also keeps the store's degraded periods: one starts with the first failure after a
/// success and ends with the next success; each is logged once as it starts and once as it
/// ends, with its counts.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// `host:port` (or the nodes), for the log.
    address: String,
    policy: FaultPolicy,
    state: Mutex<BreakerState>,
    /// Whether a degraded period is under way: read without the lock on every success.
    troubled: AtomicBool,
    errors: AtomicU64,
    degraded: AtomicU64,
    opens: AtomicU64,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    period: Option<Period>,
}

/// A degraded period under way: when it began and the counters then.
#[derive(Debug)]
struct Period {
    since: Instant,
    errors: u64,
    degraded: u64,
    opens: u64,
}

impl Breaker {
    pub(crate) fn new(address: String, policy: FaultPolicy) -> Self {
        Breaker {
            address,
            policy,
            state: Mutex::default(),
            troubled: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            degraded: AtomicU64::new(0),
            opens: AtomicU64::new(0),
        }
    }

    /// Whether a call may go to Redis now. When the cooldown is over, lets exactly one probe
    /// through (the others keep failing fast until it answers).
    pub(crate) fn allow(&self, now: Instant) -> Result<(), Duration> {
        if !self.troubled.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut state = self.state.lock();
        match state.open_until {
            None => Ok(()),
            Some(until) => {
                if now >= until {
                    state.open_until = Some(now + state.cooldown);
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
        }
    }

    /// Records a call that Redis answered: closes the circuit and ends a degraded period.
    #[inline]
    pub(crate) fn success(&self) {
        if !self.troubled.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock();
        if let Some(period) = state.period.take() {
            tracing::warn!(
                target: "ratethrottle::redis",
                "redis at {} is answering again after {:.1?}: {} checks were answered by {} \
                 meanwhile, {} calls failed, the circuit opened {} times",
                self.address,
                period.since.elapsed(),
                self.degraded.load(Ordering::Relaxed) - period.degraded,
                self.policy,
                self.errors.load(Ordering::Relaxed) - period.errors,
                self.opens.load(Ordering::Relaxed) - period.opens,
            );
        }
        *state = BreakerState::default();
        self.troubled.store(false, Ordering::Relaxed);
    }

    /// Records a failed call; `true` if it opened (or reopened) the circuit. The first failure
    /// after a success starts a degraded period (and logs it).
    pub(crate) fn failure(&self, now: Instant, error: &StoreError) -> bool {
        let mut state = self.state.lock();
        self.troubled.store(true, Ordering::Relaxed);
        let errors = self.errors.fetch_add(1, Ordering::Relaxed);
        if state.period.is_none() {
            state.period = Some(Period {
                since: now,
                errors,
                degraded: self.degraded.load(Ordering::Relaxed),
                opens: self.opens.load(Ordering::Relaxed),
            });
            tracing::warn!(
                target: "ratethrottle::redis",
                "{error}; checks are answered by {} until redis answers again",
                self.policy
            );
        }
        state.failures += 1;
        if state.failures < OPEN_AFTER {
            return false;
        }
        state.cooldown = if state.open_until.is_some() {
            (state.cooldown * 2).min(MAX_COOLDOWN)
        } else {
            self.opens.fetch_add(1, Ordering::Relaxed);
            FIRST_COOLDOWN
        };
        state.open_until = Some(now + state.cooldown);
        true
    }

    pub(crate) fn degraded(&self) {
        self.degraded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> FaultStats {
        let state = self.state.lock();
        let mut stats = FaultStats::default();
        stats.errors = self.errors.load(Ordering::Relaxed);
        stats.degraded = self.degraded.load(Ordering::Relaxed);
        stats.circuit_opens = self.opens.load(Ordering::Relaxed);
        stats.circuit_open = state.open_until.is_some();
        stats.degraded_now = state.period.is_some();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratethrottle::store::StoreErrorKind;

    fn breaker() -> Breaker {
        Breaker::new("127.0.0.1:6379".to_owned(), FaultPolicy::FailOpen)
    }

    fn error() -> StoreError {
        StoreError::new(
            StoreErrorKind::Unavailable,
            "redis at 127.0.0.1:6379 unreachable",
        )
    }

    #[test]
    fn the_circuit_opens_after_consecutive_failures_and_closes_on_success() {
        let breaker = breaker();
        let t0 = Instant::now();
        assert!(!breaker.failure(t0, &error()));
        assert!(!breaker.failure(t0, &error()));
        assert!(breaker.allow(t0).is_ok(), "still closed after two failures");
        assert!(breaker.stats().degraded_now);
        assert!(breaker.failure(t0, &error()), "the third opens it");
        assert_eq!(breaker.allow(t0), Err(FIRST_COOLDOWN), "open: fail fast");
        assert!(breaker.stats().circuit_open);
        breaker.success();
        assert!(breaker.allow(t0).is_ok());
        let stats = breaker.stats();
        assert_eq!(
            (stats.errors, stats.circuit_opens, stats.circuit_open),
            (3, 1, false)
        );
        assert!(!stats.degraded_now, "a success ends the degraded period");
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through_and_a_failed_probe_waits_longer() {
        let breaker = breaker();
        let t0 = Instant::now();
        for _ in 0..OPEN_AFTER {
            breaker.failure(t0, &error());
        }
        let t1 = t0 + FIRST_COOLDOWN;
        assert!(breaker.allow(t1).is_ok(), "the probe");
        assert!(breaker.allow(t1).is_err(), "only one probe at a time");
        assert!(breaker.failure(t1, &error()), "a failed probe reopens");
        assert_eq!(breaker.allow(t1), Err(FIRST_COOLDOWN * 2));
        let mut at = t1;
        for _ in 0..10 {
            at += MAX_COOLDOWN;
            assert!(breaker.allow(at).is_ok());
            breaker.failure(at, &error());
        }
        assert_eq!(breaker.allow(at), Err(MAX_COOLDOWN), "the wait is capped");
        assert_eq!(breaker.stats().circuit_opens, 1, "one outage, one opening");
    }
}
