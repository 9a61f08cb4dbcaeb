//! Correct, fast rate limiting: six strategies, pluggable stores, whitelists and blacklists,
//! blocks after violations, violation callbacks and metrics.
//!
//! ```
//! use ratethrottle::{Limiter, Rule, Strategy};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let limiter = Limiter::in_memory();
//! limiter.add_rule(Rule::new("api", 100, Duration::from_secs(60)))?;
//! limiter.add_rule(Rule::from_rate("search", "10/second")?.strategy(Strategy::TokenBucket).burst(20))?;
//!
//! let status = limiter.check("203.0.113.7", "api").await?;
//! if status.allowed {
//!     println!("{} requests left", status.remaining);
//! } else {
//!     println!("retry in {:?}", status.retry_after);
//! }
//! for (name, value) in status.headers() {
//!     println!("{name}: {value}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The layers, each knowing only the one below it:
//!
//! - [`strategy`]: the pure math of token_bucket, leaky_bucket, gcra, fixed_window,
//!   sliding_window and sliding_counter, in integer nanoseconds;
//! - [`store`]: where state lives — the sharded [`MemoryStore`](store::MemoryStore) here, Redis
//!   in `ratethrottle-redis` — applying one decision atomically per key;
//! - [`Limiter`]: rules by name, lists, blocks, violations, callbacks and metrics.
//!
//! Time comes from a [`Clock`](clock::Clock); tests drive a [`ManualClock`](clock::ManualClock)
//! and never sleep.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
pub mod identifier;
mod intern;
mod limiter;
mod metrics;
mod rule;

mod status;
pub mod store;
pub mod strategy;

pub use error::{Error, Result};
pub use limiter::{DEFAULT_VIOLATION_HISTORY, Limiter, LimiterBuilder, RuleHandle};
pub use metrics::{Metrics, RuleMetrics, Violation};
pub use rule::{
    MAX_RULE_NAME_LEN, MAX_SLIDING_WINDOW_LIMIT, MAX_WINDOW, Rule, RuleError, Scope, Strategy,
    parse_rate,
};
pub use status::{HeaderValues, Status, Verdict};

/// The README's examples, compiled (and run, unless marked `no_run`) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
