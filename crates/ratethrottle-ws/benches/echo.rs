//! Messages per second through an axum echo server whose sockets pass the guard (size cap,
//! per-connection and per-client message rules, byte rule) against the same server echoing
//! without it, driven by tokio-tungstenite clients in this process over loopback: 8
//! connections, each sending a 64-byte message and waiting for its echo, 1 s per round,
//! rounds interleaved (`ROUNDS`, default 7); the ratio is the median of the per-round ratios.
//!
//! ```text
//! cargo bench -p ratethrottle-ws --bench echo
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ratethrottle::Limiter;
use ratethrottle_ws::{WsGuard, WsLimits};

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/mod.rs"]
mod support;

use support::{connect, next, say};

/// Echoed messages per second on `path` for one round.
async fn round(address: SocketAddr, path: &'static str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(1);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = connect(address, path, &format!("bench-{i}")).await.unwrap();
                let message = "m".repeat(64);
                let mut echoed = 0u64;
                while Instant::now() < deadline {
                    say(&mut client, &message).await;
                    assert_eq!(next(&mut client).await.unwrap().len(), 64);
                    echoed += 1;
                }
                echoed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64
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
        let limits = WsLimits {
            messages_per_window: 1 << 40,
            messages_per_connection: Some(1 << 40),
            bytes_per_window: Some(1 << 50),
            ..WsLimits::default()
        };
        let guard = WsGuard::with_limits(Limiter::in_memory(), &limits).unwrap();
        let address = support::serve(guard).await;
        round(address, "/plain").await; // warm-up
        round(address, "/ws").await;
        let mut ratios = Vec::new();
        let (mut plain_sum, mut guarded_sum) = (0.0, 0.0);
        for _ in 0..rounds {
            let plain = round(address, "/plain").await;
            let guarded = round(address, "/ws").await;
            println!("round: unguarded {plain:.0} msg/s, guarded {guarded:.0} msg/s");
            ratios.push(guarded / plain);
            plain_sum += plain;
            guarded_sum += guarded;
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "echo: unguarded {:.0} msg/s, guarded {:.0} msg/s (means); guarded/unguarded \
             median {:.3} (min {:.3}, max {:.3})",
            plain_sum / rounds as f64,
            guarded_sum / rounds as f64,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    });
}
