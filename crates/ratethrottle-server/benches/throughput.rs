//! Decisions per second through `ratethrottle serve` against floors of the same shape, in one
//! process over loopback, rounds interleaved (`ROUNDS`, default 5; 1 s each), medians of the
//! per-round ratios:
//!
//! - `ShouldRateLimit` at 64 concurrent streams (4 connections) against a no-op tonic server
//!   of the same proto (answers OK at once), with the p99 latency of each;
//! - `POST /v1/check` at 64 concurrent requests against a bare axum handler that parses the
//!   same JSON request and answers a fixed JSON body.
//!
//! ```text
//! cargo bench -p ratethrottle-server --bench throughput
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use ratethrottle::{Limiter, Rule};
use ratethrottle_server::{RlsConfig, Server, ServerOptions};
use tonic::transport::Channel;

const STREAMS: usize = 64;

/// The floor: answers OK at once.
struct NoOp;

#[tonic::async_trait]
impl RateLimitService for NoOp {
    async fn should_rate_limit(
        &self,
        _: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..RateLimitResponse::default()
        }))
    }
}

fn request(i: usize) -> RateLimitRequest {
    RateLimitRequest {
        domain: "bench".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "client".into(),
                value: format!("c{}", i % 1000),
            }],
            ..RateLimitDescriptor::default()
        }],
        hits_addend: 1,
    }
}

/// Calls per second and the p99 latency (µs) for one round against `address`.
async fn rls_round(address: SocketAddr) -> (f64, f64) {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{address}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let mut client = RateLimitServiceClient::new(channels[i % 4].clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = i;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    client.should_rate_limit(request(n)).await.unwrap();
                    latencies.push(started.elapsed().as_micros() as f64);
                    n += STREAMS;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_by(f64::total_cmp);
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    (all.len() as f64, p99)
}

/// Requests per second of `POST url` with a check body for one round.
async fn http_round(client: &reqwest::Client, url: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(1);
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let body = format!(
                        r#"{{"rule":"api","identifier":"c{}"}}"#,
                        (i + done as usize * STREAMS) % 1000
                    );
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    response.bytes().await.unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64
}

/// The floor's request: the same JSON, parsed.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct CheckBody {
    rule: String,
    identifier: String,
    #[serde(default)]
    cost: Option<u64>,
}

/// wrk with a script posting check bodies (1,000 identifiers in turn).
#[derive(Clone)]
struct Wrk {
    script: Arc<tempfile::TempPath>,
}

impl Wrk {
    fn find() -> Option<Self> {
        let found = std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            return None;
        }
        let mut script = tempfile::Builder::new().suffix(".lua").tempfile().ok()?;
        std::io::Write::write_all(
            &mut script,
            br#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"rule":"api","identifier":"c' .. (n % 1000) .. '"}')
end
"#,
        )
        .ok()?;
        Some(Wrk {
            script: Arc::new(script.into_temp_path()),
        })
    }

    /// Requests per second over one second, 64 connections.
    async fn round(self, url: String) -> f64 {
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new("wrk")
                .args(["-t1", &format!("-c{STREAMS}"), "-d1s", "-s"])
                .arg(&*self.script)
                .arg(&url)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            text.lines()
                .find_map(|line| line.strip_prefix("Requests/sec:"))
                .and_then(|rate| rate.trim().parse().ok())
                .unwrap_or_else(|| panic!("no rate in wrk's output: {text}"))
        })
        .await
        .unwrap()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limiter = Limiter::in_memory();
        limiter
            .add_rule(Rule::new("api", u64::MAX / 4, Duration::from_secs(60)))
            .unwrap();
        let mut config = RlsConfig::default();
        config
            .add(
                "domain: bench\ndescriptors:\n  - key: client\n    rate_limit:\n      unit: second\n      requests_per_unit: 1000000000\n",
                "bench",
            )
            .unwrap();
        let options = ServerOptions {
            http: Some("127.0.0.1:0".parse().unwrap()),
            grpc: Some("127.0.0.1:0".parse().unwrap()),
            rls: Some(Arc::new(config)),
            ..ServerOptions::default()
        };
        let server = Server::bind(limiter, &options).await.unwrap();
        let (ours_http, ours_grpc) = (server.http_address(), server.grpc_address().unwrap());
        tokio::spawn(server.run(std::future::pending()));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let noop = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RateLimitServiceServer::new(NoOp))
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                ),
        );
        let bare = axum::Router::new().route(
            "/v1/check",
            axum::routing::post(|axum::Json(body): axum::Json<CheckBody>| async move {
                std::hint::black_box(body);
                axum::Json(serde_json::json!({"allowed": true, "remaining": 1}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, bare).await.unwrap() });

        rls_round(ours_grpc).await; // warm-up
        rls_round(noop).await;
        let (mut ratios, mut p99s) = (Vec::new(), (Vec::new(), Vec::new()));
        for _ in 0..rounds {
            let (floor, floor_p99) = rls_round(noop).await;
            let (ours, ours_p99) = rls_round(ours_grpc).await;
            println!("rls round: no-op {floor:.0}/s (p99 {floor_p99:.0} µs), ours {ours:.0}/s (p99 {ours_p99:.0} µs)");
            ratios.push(ours / floor);
            p99s.0.push(floor_p99);
            p99s.1.push(ours_p99);
        }
        println!(
            "ShouldRateLimit: ours / no-op tonic median {:.3} (min {:.3}); p99 median: no-op {:.0} µs, ours {:.0} µs",
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            median(p99s.0),
            median(p99s.1)
        );

        let client = reqwest::Client::new();
        let ours_url = format!("http://{ours_http}/v1/check");
        let bare_url = format!("http://{bare_address}/v1/check");
        // wrk (a process of its own, one thread) when installed; else reqwest in this process.
        let wrk = Wrk::find();
        let load = if wrk.is_some() { "wrk" } else { "reqwest (no wrk)" };
        let round = |url: String| {
            let (client, wrk) = (client.clone(), wrk.clone());
            async move {
                match wrk {
                    Some(wrk) => wrk.round(url).await,
                    None => http_round(&client, &url).await,
                }
            }
        };
        round(ours_url.clone()).await;
        round(bare_url.clone()).await;
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let floor = round(bare_url.clone()).await;
            let ours = round(ours_url.clone()).await;
            println!("http round ({load}): bare axum {floor:.0}/s, ours {ours:.0}/s");
            ratios.push(ours / floor);
        }
        println!(
            "/v1/check ({load}): ours / bare axum median {:.3} (min {:.3})",
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min)
        );
    });
}
