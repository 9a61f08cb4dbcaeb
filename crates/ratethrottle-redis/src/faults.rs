//! What a check does while Redis is failing: the fault policy, and a circuit breaker so an
//! outage costs no waiting per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What a check answers when Redis cannot (unreachable, timed out, circuit open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPolicy {
    /// Admit the request (as a fresh key would be), log and count it. Lists this process knows
    /// of still apply. The default: Redis being down never takes the site down.
    #[default]
    FailOpen,
    /// Return the error: the limiter's `check` fails with a store error whose
    /// [`is_store_unavailable`](ratethrottle::Error::is_store_unavailable) is true (HTTP 503).
    FailClosed,
    /// Decide in this process with an in-memory store until Redis is back: limits hold per
    /// process instead of per fleet.
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

/// Counts of the store's trouble since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Calls to Redis that failed (unreachable, timed out).
    pub errors: u64,
    /// Checks answered by the fault policy instead of Redis (admitted by `fail_open`, decided
    /// by `fallback_memory`, or refused by `fail_closed`).
    pub degraded: u64,
    /// How many times the circuit opened.
    pub circuit_opens: u64,
    /// Whether the circuit is open now (checks skip Redis until a probe succeeds).
    pub circuit_open: bool,
}

/// Consecutive failures that open the circuit.
const OPEN_AFTER: u32 = 3;
/// The first wait before probing Redis again; doubled on each failed probe up to the maximum.
const FIRST_COOLDOWN: Duration = Duration::from_millis(250);
const MAX_COOLDOWN: Duration = Duration::from_secs(10);

/// Closed: calls go to Redis. Open: calls fail at once until the cooldown ends, when one call
/// probes; its success closes the circuit, its failure reopens it for twice as long.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    state: Mutex<BreakerState>,
    errors: AtomicU64,
    degraded: AtomicU64,
    opens: AtomicU64,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
}

impl Breaker {
    /// Whether a call may go to Redis now. When the cooldown is over, lets exactly one probe
    /// through (the others keep failing fast until it answers).
    pub(crate) fn allow(&self, now: Instant) -> Result<(), Duration> {
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

    pub(crate) fn success(&self) {
        let mut state = self.state.lock();
        if state.open_until.is_some() {
            tracing::info!("redis is answering again: circuit closed");
        }
        *state = BreakerState::default();
    }

    /// Records a failed call; `true` if it opened (or reopened) the circuit.
    pub(crate) fn failure(&self, now: Instant) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock();
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
        FaultStats {
            errors: self.errors.load(Ordering::Relaxed),
            degraded: self.degraded.load(Ordering::Relaxed),
            circuit_opens: self.opens.load(Ordering::Relaxed),
            circuit_open: self.state.lock().open_until.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circuit_opens_after_consecutive_failures_and_closes_on_success() {
        let breaker = Breaker::default();
        let t0 = Instant::now();
        assert!(!breaker.failure(t0));
        assert!(!breaker.failure(t0));
        assert!(breaker.allow(t0).is_ok(), "still closed after two failures");
        assert!(breaker.failure(t0), "the third opens it");
        assert_eq!(breaker.allow(t0), Err(FIRST_COOLDOWN), "open: fail fast");
        assert!(breaker.stats().circuit_open);
        breaker.success();
        assert!(breaker.allow(t0).is_ok());
        let stats = breaker.stats();
        assert_eq!(
            (stats.errors, stats.circuit_opens, stats.circuit_open),
            (3, 1, false)
        );
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through_and_a_failed_probe_waits_longer() {
        let breaker = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..OPEN_AFTER {
            breaker.failure(t0);
        }
        let t1 = t0 + FIRST_COOLDOWN;
        assert!(breaker.allow(t1).is_ok(), "the probe");
        assert!(breaker.allow(t1).is_err(), "only one probe at a time");
        assert!(breaker.failure(t1), "a failed probe reopens");
        assert_eq!(breaker.allow(t1), Err(FIRST_COOLDOWN * 2));
        let mut at = t1;
        for _ in 0..10 {
            at += MAX_COOLDOWN;
            assert!(breaker.allow(at).is_ok());
            breaker.failure(at);
        }
        assert_eq!(breaker.allow(at), Err(MAX_COOLDOWN), "the wait is capped");
        assert_eq!(breaker.stats().circuit_opens, 1, "one outage, one opening");
    }

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
}
