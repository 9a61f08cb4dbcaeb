//! Unary calls per second through a tonic server with the layer against the same server
//! without it, driven by a tonic client in this process over loopback: 32 calls in flight on
//! 4 connections, 1 s per round, rounds interleaved (`ROUNDS`, default 7); the ratio is the
//! median of the per-round ratios.
//!
//! ```text
//! cargo bench -p ratethrottle-grpc --bench throughput
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratethrottle::{Limiter, Rule};
use ratethrottle_grpc::GrpcLimit;

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use support::{SAY, call, connect, serve, serve_bare};

/// Calls per second against `address` for one round.
async fn round(address: SocketAddr) -> f64 {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(connect(address).await);
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(1);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (channel, done) = (channels[i % 4].clone(), Arc::clone(&done));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if call(&channel, SAY, &[]).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limiter = Limiter::in_memory();
        limiter
            .add_rule(Rule::new("grpc", 1_000_000_000, Duration::from_secs(60)))
            .unwrap();
        let layer = GrpcLimit::builder(limiter).rule("grpc").build().unwrap();
        let limited = serve(layer, "127.0.0.1:0").await.0;
        let bare = serve_bare("127.0.0.1:0").await;
        round(bare).await;
        round(limited).await;
        let (mut bares, mut limiteds, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let b = round(bare).await;
            let l = round(limited).await;
            bares.push(b);
            limiteds.push(l);
            ratios.push(l / b);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!("| server | unary calls/s (median of {rounds} rounds) |");
        println!("|---|---:|");
        println!("| bare tonic | {:.0} |", median(bares));
        println!("| tonic + GrpcLimitLayer | {:.0} |", median(limiteds));
        println!("layer ÷ bare: {:.3}×", median(ratios));
    });
}
