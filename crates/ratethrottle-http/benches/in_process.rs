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
use std::time::Instant;

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use tower_service::Service;

mod common;

use common::{apps, env_or};

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
    let rounds = env_or("ROUNDS", 7).max(1) as usize;
    let requests = env_or("REQUESTS", 200_000).max(1) as usize;
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
