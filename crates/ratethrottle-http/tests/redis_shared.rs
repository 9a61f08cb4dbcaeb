//! Two server instances sharing one limit through Redis, and Redis failing closed.

use std::time::Duration;

use ratethrottle::{Limiter, Rule};
use ratethrottle_http::RateLimitLayer;
use ratethrottle_http::actix::RateLimit;
use ratethrottle_redis::{FaultPolicy, RedisConfig, RedisStore};

use crate::actix_middleware::serve_actix;
use crate::server::RedisServer;
use crate::support::*;

async fn redis_limiter(
    server: &RedisServer,
    prefix: &str,
    policy: FaultPolicy,
) -> Limiter<RedisStore> {
    let config = RedisConfig::new(server.url())
        .key_prefix(format!("http-{}-{prefix}:", std::process::id()))
        .fault_policy(policy);
    let limiter = Limiter::builder()
        .store(RedisStore::with_config(config).await.unwrap())
        .build();
    let rule = Rule::new("api", 25, Duration::from_secs(3600)).block_duration(Duration::ZERO);
    limiter.add_rule(rule).unwrap();
    limiter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_limit() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    // Two processes' worth of limiters: separate stores, one Redis.
    let first = redis_limiter(server, "shared", FaultPolicy::FailOpen).await;
    let second = redis_limiter(server, "shared", FaultPolicy::FailOpen).await;
    let axum_base = serve_axum(
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .layer(RateLimitLayer::builder(first).rule("api").layer().unwrap()),
    )
    .await;
    let actix_base = serve_actix(RateLimit::builder(second).rule("api").middleware().unwrap());

    // Every other task through each server.
    let counts = from_many_tasks(&[axum_base, actix_base], "127.0.7.1", 10, 6).await;
    assert_eq!(counts, (25, 35));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_gives_503_only_when_failing_closed() {
    let Some(mut server) = RedisServer::dedicated() else {
        return;
    };
    let closed = redis_limiter(&server, "closed", FaultPolicy::FailClosed).await;
    let open = redis_limiter(&server, "open", FaultPolicy::FailOpen).await;
    let app = |limiter| {
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .layer(
                RateLimitLayer::builder(limiter)
                    .rule("api")
                    .layer()
                    .unwrap(),
            )
    };
    let closed_base = serve_axum(app(closed)).await;
    let open_base = serve_axum(app(open)).await;
    let client = client_from("127.0.7.2");
    assert_eq!(get(&client, closed_base, "/", &[]).await.status, 200);

    server.stop();
    let unavailable = get(&client, closed_base, "/", &[]).await;
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.header("retry-after"), "1");
    assert_eq!(
        unavailable.body,
        r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"rate limiting is unavailable; try again shortly","retry_after":1}"#
    );
    assert_eq!(get(&client, open_base, "/", &[]).await.status, 200);
}
