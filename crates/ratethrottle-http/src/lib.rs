//! HTTP rate limiting for axum (feature `axum`, default), tower/hyper without axum (feature
//! `tower`) and actix-web (feature `actix`), on top of a [`ratethrottle::Limiter`].
//!
//! A [`PolicyBuilder`] says which rules apply to which requests, how the client is
//! identified (peer address, trusted proxies, users, endpoints) and what to do with the
//! answers; the framework adapters turn it into middleware. Rejections are `429 Too Many
//! Requests` (with `Retry-After`, `X-RateLimit-*` and the IETF `RateLimit`/`RateLimit-Policy`
//! headers and an `application/problem+json` body), `403 Forbidden` for blacklisted clients
//! and `503` only when the store fails under the `fail_closed` fault policy.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use ratethrottle::{Limiter, Rule, Scope};
//! use ratethrottle_http::{ClientIp, RateLimitLayer, Route};
//! use std::time::Duration;
//!
//! let limiter = Limiter::in_memory();
//! limiter.add_rule(Rule::new("per_ip", 100, Duration::from_secs(60)))?;
//! limiter.add_rule(Rule::new("everyone", 5_000, Duration::from_secs(1)).scope(Scope::Global))?;
//! limiter.add_rule(Rule::new("login", 5, Duration::from_secs(300)).scope(Scope::User))?;
//!
//! let layer = RateLimitLayer::builder(limiter)
//!     .rule("per_ip")
//!     .rule("everyone")
//!     .rule_for(Route::prefix("/login").method("POST"), "login")
//!     .client_ip(ClientIp::new().trust_proxies(["10.0.0.0/8"]))
//!     .user_header("x-user")
//!     .deduct_when(|status| status >= 400)
//!     .layer()?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/login", post(|| async { "welcome" }))
//!     .layer(layer);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Several rules per request are all checked (after the first rejection the rest are only
//! peeked, so a rejected request does not use up other limits); the most restrictive answer
//! speaks in the headers.
//!
//! ## Behavior
//! - The client address is the TCP peer unless the peer is a trusted proxy ([`ClientIp`]).
//!   With axum, serve with `into_make_service_with_connect_info::<SocketAddr>()`. Without a
//!   known peer, a request an IP-scoped rule applies to gets a 500 whose problem body names
//!   that fix (logged at ERROR once): otherwise all clients would share one allowance.
//!   [`UnknownPeer::SharedBucket`] chooses that sharing explicitly.
//! - Store failures follow the store's fault policy: fail-open and fallback policies answer
//!   normally, `fail_closed` gives `503` with `Retry-After: 1`. Other errors (a rule removed
//!   at run time) are logged and the rule is skipped.
//! - A panic in a user closure is caught and logged; the request gets the closure's default
//!   (cost 1, not exempt, no user, counted).
//! - Request and response bodies are never read or buffered (HTTP/1.1 and HTTP/2).
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a framework feature only the building blocks are compiled.
#![cfg_attr(not(any(feature = "tower", feature = "actix")), allow(dead_code))]

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix;
mod client_ip;
mod plain;
mod policy;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod response;
#[cfg(feature = "tower")]
mod tower;
mod user;

pub use client_ip::{ClientIp, ClientKey, ForwardedHeader};
pub use plain::PlainRequest;
pub use policy::{Decided, Policy, PolicyBuilder, RequestView, Route, UnknownPeer};
pub use response::{HeaderStyle, Rejection, RejectionKind, RejectionResponse};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use tower::{RateLimitLayer, RateLimitService, ResponseBody};

/// A mistake in the middleware's configuration, found by [`PolicyBuilder::build`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No rule was bound.
    #[error(
        "no rule is applied: call .rule(\"name\") or .rule_for(route, \"name\") on the builder"
    )]
    NoRules,
    /// A bound rule does not exist in the limiter (or another limiter error).
    #[error(transparent)]
    Limiter(#[from] ratethrottle::Error),
    /// A trusted proxy entry is not an address or network.
    #[error(
        "trusted proxy {value:?} is not an IP address or CIDR network (like \"10.0.0.0/8\" or \
         \"fd00::/8\")"
    )]
    InvalidNetwork {
        /// The entry.
        value: String,
    },
    /// An IPv6 prefix longer than 128 bits.
    #[error("IPv6 prefix /{bits} is too long: use 0 to 128 (default 64)")]
    InvalidIpv6Prefix {
        /// The length asked for.
        bits: u8,
    },
    /// DDoS settings out of range.
    #[error(transparent)]
    Ddos(#[from] ratethrottle_protect::ddos::SettingsError),
    /// Analytics settings out of range.
    #[error(transparent)]
    Analytics(#[from] ratethrottle_protect::analytics::AnalyticsError),
    /// Adaptive settings out of range, or a model file that cannot be loaded.
    #[error(transparent)]
    Adaptive(#[from] ratethrottle_protect::adaptive::AdaptiveError),
    /// A route prefix that does not start with `/`.
    #[error("route prefix {prefix:?} must start with '/'")]
    InvalidRoute {
        /// The prefix.
        prefix: String,
    },
    /// A header name that is not valid HTTP.
    #[error("{name:?} is not a valid HTTP header name")]
    InvalidHeaderName {
        /// The name.
        name: String,
    },
}

/// The README's examples, compiled (and run, unless marked `no_run`) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

/// The workspace README's Rust examples, compiled as doctests (this crate has every
/// dependency they use).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod workspace_readme {}
