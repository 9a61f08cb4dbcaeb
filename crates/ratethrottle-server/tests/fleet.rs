//! Two servers sharing one redis-server give exact limits together: over the HTTP API and
//! over the rate limit service.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use ratethrottle::Rule;
use ratethrottle_redis::FaultPolicy;
use ratethrottle_server::{RlsConfig, Server, ServerOptions};
use serde_json::{Value, json};

#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;

const DOMAIN: &str = "domain: fleet
descriptors:
  - key: tenant
    rate_limit:
      unit: hour
      requests_per_unit: 12
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_redis_admit_exactly_the_limit() {
    let Some(redis) = server::RedisServer::shared() else {
        return;
    };
    let mut https = Vec::new();
    let mut grpcs = Vec::new();
    for _ in 0..2 {
        let rule = Rule::new("api", 10, Duration::from_secs(3600)).block_duration(Duration::ZERO);
        let limiter = server::limiter_on(redis, "serve-fleet", FaultPolicy::FailOpen, rule).await;
        let mut config = RlsConfig::default();
        config.add(DOMAIN, "fleet").unwrap();
        let options = ServerOptions {
            http: Some("127.0.0.1:0".parse().unwrap()),
            grpc: Some("127.0.0.1:0".parse().unwrap()),
            rls: Some(Arc::new(config)),
            ..ServerOptions::default()
        };
        let server = Server::bind(limiter, &options).await.unwrap();
        https.push(server.http_address());
        grpcs.push(server.grpc_address().unwrap());
        tokio::spawn(server.run(std::future::pending()));
    }
    // HTTP: 32 concurrent clients through both servers, a limit of 10.
    let client = reqwest::Client::new();
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let (client, address) = (client.clone(), https[i % 2]);
            tokio::spawn(async move {
                let body: Value = client
                    .post(format!("http://{address}/v1/check"))
                    .json(&json!({"rule": "api", "identifier": "everyone"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                body["allowed"] == true
            })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        admitted += usize::from(call.await.unwrap());
    }
    assert_eq!(
        admitted, 10,
        "HTTP: 32 checks through two servers, one limit of 10"
    );

    // The rate limit service: 32 concurrent calls, 12 an hour.
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let address = grpcs[i % 2];
            tokio::spawn(async move {
                let mut client = RateLimitServiceClient::connect(format!("http://{address}"))
                    .await
                    .unwrap();
                let request = RateLimitRequest {
                    domain: "fleet".into(),
                    descriptors: vec![RateLimitDescriptor {
                        entries: vec![Entry {
                            key: "tenant".into(),
                            value: "acme".into(),
                        }],
                        ..RateLimitDescriptor::default()
                    }],
                    hits_addend: 1,
                };
                let response = client
                    .should_rate_limit(request)
                    .await
                    .unwrap()
                    .into_inner();
                response.overall_code == Code::Ok as i32
            })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        admitted += usize::from(call.await.unwrap());
    }
    assert_eq!(
        admitted, 12,
        "RLS: 32 calls through two servers, one limit of 12"
    );
}

/// The frames of a dashboard's event stream until one satisfies `done` (a guard of 20 s).
async fn frame_until(address: std::net::SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let mut response = reqwest::get(format!("http://{address}/dashboard/events"))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "server-sent events"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await else {
            break;
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                last = serde_json::from_str(data).unwrap();
                if done(&last) {
                    return last;
                }
            }
        }
    }
    panic!("no frame as expected; the last: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_the_fleet_through_its_telemetry() {
    use ratethrottle_redis::telemetry::{Telemetry, read_fleet};
    use ratethrottle_server::dashboard::Source;
    let Some(redis) = server::RedisServer::shared() else {
        return;
    };
    let rule = Rule::new("api", 3, Duration::from_secs(3600)).block_duration(Duration::ZERO);
    let mut limiters = Vec::new();
    for _ in 0..2 {
        let limiter = server::limiter_on(
            redis,
            "dashboard-fleet",
            FaultPolicy::FailOpen,
            rule.clone(),
        )
        .await;
        let telemetry = Telemetry::attach(&limiter, limiter.store());
        limiters.push((limiter, telemetry));
    }
    // One process's limiter admits 3 of 5 for x; the other's 2 for y. Each publishes.
    for (n, (limiter, telemetry)) in limiters.iter().enumerate() {
        for _ in 0..[5, 2][n] {
            limiter.check(["x", "y"][n], "api").await.unwrap();
        }
        telemetry.publish(limiter).await.unwrap();
    }
    // A server on the second shows the whole fleet; one reading its own limiter only its own.
    let (limiter, _) = &limiters[1];
    let store = limiter.store().clone();
    let options = ServerOptions {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerOptions::default()
    };
    let fleet = Server::bind(limiter.clone(), &options)
        .await
        .unwrap()
        .dashboard_source(Source::Fleet(Box::new(move || {
            let store = store.clone();
            Box::pin(async move { read_fleet(&store, 120).await })
        })));
    let address = fleet.http_address();
    tokio::spawn(fleet.run(std::future::pending()));
    let frame = frame_until(address, |f| f["totals"]["allowed"] == 5).await;
    assert_eq!(frame["source"], "fleet");
    assert_eq!(frame["totals"]["denied"], 2, "{frame}");
    assert_eq!(frame["rules"][0]["rule"], "api");
    assert_eq!(frame["top_limited"][0]["identifier"], "x", "{frame}");
    assert_eq!(
        frame["processes"].as_array().map(Vec::len),
        Some(1),
        "one process here"
    );
}
