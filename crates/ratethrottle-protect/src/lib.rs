//! Abuse protection for [`ratethrottle`]: [`ddos`] scores each client's traffic and says who
//! looks like an attacker; [`analytics`] keeps a bounded record of decisions and violations
//! and reports on it.
//!
//! The decision code is pure (functions of a client's summary, the settings and the time, under
//! the injected clock), and every client's state is bounded and updated in O(1) per request.

pub mod analytics;
pub mod ddos;
