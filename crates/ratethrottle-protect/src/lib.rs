//! Abuse protection for [`ratethrottle`]: [`ddos`] scores each client's traffic and says who
//! looks like an attacker; [`adaptive`] gives each client a limit that follows its behaviour;
//! [`analytics`] keeps a bounded record of decisions and violations
//! and reports on it; [`slots`] bounds what each client holds at once.
//!
//! The decision code is pure (functions of a client's summary, the settings and the time, under
//! the injected clock), and every client's state is bounded and updated in O(1) per request.

pub mod adaptive;
pub mod analytics;
mod clients;
pub mod ddos;
pub mod slots;

/// A duration as whole nanoseconds, saturating at `u64::MAX`.
pub(crate) fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
