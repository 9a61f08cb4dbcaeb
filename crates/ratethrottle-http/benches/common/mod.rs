//! What the HTTP benches share: the routers they compare.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ratethrottle::{Limiter, Rule, Strategy};
use ratethrottle_http::{HeaderStyle, RateLimitLayer};
use ratethrottle_protect::analytics::{Analytics, AnalyticsSettings};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

/// The environment variable `name` as a number, or `default`.
pub(crate) fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// The variants, by name: bare axum first.
/// Abuse protection on top of the rule.
#[derive(Clone, Copy)]
enum Protect {
    None,
    Analytics,
}

pub(crate) fn apps() -> Vec<(&'static str, Router)> {
    let with = |headers: bool, style: HeaderStyle, protect: Protect| {
        // One per-IP rule that never denies: the cost measured is the check itself.
        let limiter = Limiter::in_memory();
        let rule = Rule::new("api", 1_000_000_000, Duration::from_secs(1))
            .strategy(Strategy::SlidingCounter);
        limiter.add_rule(rule).expect("a valid rule");
        let mut builder = RateLimitLayer::builder(limiter)
            .rule("api")
            .headers(headers)
            .header_style(style);
        builder = match protect {
            Protect::None => builder,
            Protect::Analytics => builder.analytics(Arc::new(
                Analytics::new(AnalyticsSettings::default()).expect("settings"),
            )),
        };
        hello().layer(builder.layer().expect("a valid policy"))
    };
    let ours = |headers: bool, style: HeaderStyle| with(headers, style, Protect::None);
    // A quota that never denies, keyed by peer IP (tower_governor's default).
    let governor = |headers: bool| {
        let mut builder = GovernorConfigBuilder::default();
        builder.per_nanosecond(1).burst_size(u32::MAX);
        // `use_headers` returns a builder of another type (its middleware adds the headers).
        if headers {
            let config = builder.use_headers().finish().expect("quota");
            hello().layer(GovernorLayer::new(Arc::new(config)))
        } else {
            let config = builder.finish().expect("quota");
            hello().layer(GovernorLayer::new(Arc::new(config)))
        }
    };
    vec![
        ("bare axum", hello()),
        ("ratethrottle (headers)", ours(true, HeaderStyle::Both)),
        (
            "ratethrottle (3 legacy headers)",
            ours(true, HeaderStyle::Legacy),
        ),
        ("ratethrottle (no headers)", ours(false, HeaderStyle::Both)),
        (
            "ratethrottle (no headers, analytics)",
            with(false, HeaderStyle::Both, Protect::Analytics),
        ),
        ("tower_governor", governor(false)),
        ("tower_governor (headers)", governor(true)),
    ]
}
