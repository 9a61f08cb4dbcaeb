//! What each layer adds to one request through axum, in process: the router is called in a
//! loop (no sockets, no kernel), so the figures are the middleware's own cost, free of the
//! network noise of the `http` bench. Same variants as that bench; rounds rotate through them
//! and each variant's figure is its median time per request; "added" is that minus bare
//! axum's median.
//!
//! ```text
//! cargo bench -p ratethrottle-http --bench in_process      # ~20 s
//! ROUNDS=9 REQUESTS=500000 cargo bench -p ratethrottle-http --bench in_process
//! ONLY='ratethrottle (no headers)' cargo bench -p ratethrottle-http --bench in_process  # to profile
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http_body_util::BodyExt;
use ratethrottle::{Limiter, Rule, Strategy};
use ratethrottle_http::{HeaderStyle, RateLimitLayer};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_service::Service;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// The variants, by name, as in the `http` bench.
fn apps() -> Vec<(&'static str, Router)> {
    let ours = |headers: bool, style: HeaderStyle| {
        let limiter = Limiter::in_memory();
        let rule = Rule::new("api", 1_000_000_000, Duration::from_secs(1))
            .strategy(Strategy::SlidingCounter);
        limiter.add_rule(rule).expect("a valid rule");
        let layer = RateLimitLayer::builder(limiter)
            .rule("api")
            .headers(headers)
            .header_style(style)
            .layer()
            .expect("a valid policy");
        hello().layer(layer)
    };
    let governor = |headers: bool| {
        let mut builder = GovernorConfigBuilder::default();
        builder.per_nanosecond(1).burst_size(u32::MAX);
        if headers {
            builder.use_headers();
        }
        let config = Arc::new(builder.finish().expect("quota"));
        hello().layer(GovernorLayer::new(config))
    };
    vec![
        ("bare axum", hello()),
        ("ratethrottle (headers)", ours(true, HeaderStyle::Both)),
        (
            "ratethrottle (3 legacy headers)",
            ours(true, HeaderStyle::Legacy),
        ),
        ("ratethrottle (no headers)", ours(false, HeaderStyle::Both)),
        ("tower_governor", governor(false)),
        ("tower_governor (headers)", governor(true)),
    ]
}

/// Nanoseconds per request for `requests` requests through `app`.
async fn time_per_request(app: &Router, requests: usize) -> f64 {
    let peer: SocketAddr = "203.0.113.7:4567".parse().expect("an address");
    let start = Instant::now();
    for _ in 0..requests {
        let mut request = http::Request::get("/")
            .body(axum::body::Body::empty())
            .expect("a request");
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut service = app.clone();
        let response = service.call(request).await.expect("infallible");
        assert_eq!(response.status(), 200, "every request is admitted");
        response.into_body().collect().await.expect("the body");
    }
    start.elapsed().as_nanos() as f64 / requests as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds = env_or("ROUNDS", 7).max(1);
    let requests = env_or("REQUESTS", 200_000).max(1);
    let only = std::env::var("ONLY").ok();
    let apps: Vec<_> = apps()
        .into_iter()
        .enumerate()
        .filter(|(at, (name, _))| *at == 0 || only.as_deref().is_none_or(|only| only == *name))
        .map(|(_, app)| app)
        .collect();
    for (_, app) in &apps {
        time_per_request(app, requests / 10).await; // warm up
    }
    let mut times = vec![Vec::new(); apps.len()];
    for round in 0..rounds {
        for k in 0..apps.len() {
            let at = (round + k) % apps.len();
            times[at].push(time_per_request(&apps[at].1, requests).await);
        }
    }
    let medians: Vec<f64> = times.into_iter().map(median).collect();
    let bare = medians[0];
    println!("| variant | ns per request (median of {rounds} rounds) | added to bare axum |");
    println!("|---|---:|---:|");
    for ((name, _), ns) in apps.iter().zip(&medians) {
        println!("| {name} | {ns:.0} | {:.0} |", ns - bare);
    }
}
