//! Two tonic servers sharing one limit through a real Redis, and Redis failing closed.

use std::time::Duration;

use ratethrottle::{Limiter, Rule};
use ratethrottle_grpc::GrpcLimit;
use ratethrottle_redis::{FaultPolicy, RedisStore};
use tonic::Code;

#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;
#[allow(dead_code)]
mod support;

use server::{RedisServer, limiter_on};
use support::*;

/// A limiter of 25 per hour (no block) over a store of its own on `server`.
async fn redis_limiter(
    server: &RedisServer,
    prefix: &str,
    policy: FaultPolicy,
) -> Limiter<RedisStore> {
    let rule = Rule::new("grpc", 25, Duration::from_secs(3600)).block_duration(Duration::ZERO);
    limiter_on(server, &format!("grpc-{prefix}"), policy, rule).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tonic_servers_share_one_limit_exactly() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let mut addresses = Vec::new();
    for _ in 0..2 {
        // Two processes' worth: separate stores, one Redis.
        let limiter = redis_limiter(server, "shared", FaultPolicy::FailOpen).await;
        let layer = GrpcLimit::builder(limiter).rule("grpc").build().unwrap();
        addresses.push(serve(layer, "127.0.0.1:0").await.0);
    }
    let channels = [connect(addresses[0]).await, connect(addresses[1]).await];
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let channel = channels[i % 2].clone();
            tokio::spawn(async move { call(&channel, SAY, &[]).await })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
        }
    }
    assert_eq!(
        admitted, 25,
        "60 calls through two servers, one limit of 25"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_closed_answers_unavailable() {
    let Some(mut server) = RedisServer::dedicated() else {
        return;
    };
    let closed = redis_limiter(&server, "closed", FaultPolicy::FailClosed).await;
    let open = redis_limiter(&server, "open", FaultPolicy::FailOpen).await;
    let closed = serve(
        GrpcLimit::builder(closed).rule("grpc").build().unwrap(),
        "127.0.0.1:0",
    )
    .await
    .0;
    let open = serve(
        GrpcLimit::builder(open).rule("grpc").build().unwrap(),
        "127.0.0.1:0",
    )
    .await
    .0;
    let (closed, open) = (connect(closed).await, connect(open).await);
    assert!(call(&closed, SAY, &[]).await.is_ok());
    server.stop();
    let unavailable = call(&closed, SAY, &[]).await.unwrap_err();
    assert_eq!(unavailable.code(), Code::Unavailable, "{unavailable:?}");
    assert!(call(&open, SAY, &[]).await.is_ok(), "failing open admits");
}
