//! Two axum servers sharing one connection limit through a real Redis.

use ratethrottle_redis::FaultPolicy;
use ratethrottle_ws::{WsGuard, WsLimits};

#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;
#[allow(dead_code, unreachable_pub)]
mod support;

use server::{RedisServer, limiter_on};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_connection_limit_exactly() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let limits = WsLimits {
        connections_per_window: 10,
        max_concurrent_connections: 1000,
        ..WsLimits::default()
    };
    let mut addresses = Vec::new();
    for _ in 0..2 {
        // Two processes' worth: separate stores and connections, one Redis.
        let [connect_rule, rest @ ..] = &limits.rules()[..] else {
            unreachable!()
        };
        let limiter = limiter_on(
            server,
            "ws-fleet",
            FaultPolicy::FailOpen,
            connect_rule.clone(),
        )
        .await;
        for rule in rest {
            limiter.add_rule(rule.clone()).unwrap();
        }
        let guard = WsGuard::builder(limiter).limits(&limits).build().unwrap();
        addresses.push(serve(guard).await);
    }
    let attempts: Vec<_> = (0..32)
        .map(|i| {
            let address = addresses[i % 2];
            tokio::spawn(async move { connect(address, "/ws", "fleet-client").await.map(drop) })
        })
        .collect();
    let mut opened = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => opened += 1,
            Err(status) => assert_eq!(status, 429),
        }
    }
    assert_eq!(
        opened, 10,
        "32 attempts through two servers, one limit of 10"
    );
}
