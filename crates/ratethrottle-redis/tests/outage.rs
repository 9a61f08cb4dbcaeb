//! Redis going away mid-run: every fault policy answers as configured within the timeout, an
//! open circuit costs no waiting, and checks go back to Redis once it returns.

use std::time::{Duration, Instant};

use ratethrottle::{Limiter, Rule};
use ratethrottle_redis::{FaultPolicy, RedisConfig, RedisStore};

use crate::server::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(50);
/// Headroom for a loaded CI machine over the per-call timeout.
const SLACK: Duration = Duration::from_millis(150);

async fn limiter(server: &RedisServer, policy: FaultPolicy) -> Limiter<RedisStore> {
    let config = RedisConfig::new(server.url())
        .key_prefix(format!("outage-{}-{policy}:", std::process::id()))
        .timeout(TIMEOUT)
        .fault_policy(policy);
    let limiter = Limiter::builder()
        .store(RedisStore::with_config(config).await.unwrap())
        .build();
    limiter
        .add_rule(Rule::new("api", 2, Duration::from_secs(3600)).block_duration(Duration::ZERO))
        .unwrap();
    limiter
}

#[test]
fn every_policy_answers_within_the_timeout_and_recovers() {
    let Some(mut server) = RedisServer::dedicated() else {
        return;
    };
    crate::runtime().block_on(async {
        let open = limiter(&server, FaultPolicy::FailOpen).await;
        let closed = limiter(&server, FaultPolicy::FailClosed).await;
        let fallback = limiter(&server, FaultPolicy::FallbackMemory).await;
        open.blacklist_add("banned", None).await.unwrap();
        for limiter in [&open, &closed] {
            assert!(limiter.check("a", "api").await.unwrap().allowed);
        }
        assert!(fallback.check("a", "api").await.unwrap().allowed);

        server.stop();
        for round in 0..20 {
            let started = Instant::now();
            let status = open.check("a", "api").await.unwrap();
            assert!(status.allowed, "fail_open admits (round {round})");
            assert!(
                !open.check("banned", "api").await.unwrap().allowed,
                "known lists hold"
            );

            let error = closed.check("a", "api").await.unwrap_err();
            assert!(error.is_store_unavailable(), "fail_closed: {error}");
            assert!(error.to_string().contains("redis at 127.0.0.1:"), "{error}");

            let status = fallback.check("b", "api").await.unwrap();
            assert_eq!(
                status.allowed,
                round < 2,
                "fallback_memory limits locally (round {round})"
            );
            let took = started.elapsed();
            assert!(took < 5 * (TIMEOUT + SLACK), "round {round} took {took:?}");
        }
        for (name, limiter) in [
            ("open", &open),
            ("closed", &closed),
            ("fallback", &fallback),
        ] {
            let stats = limiter.store().fault_stats();
            assert!(stats.circuit_open, "{name}: {stats:?}");
            assert!(
                stats.errors >= 3 && stats.errors < 20,
                "{name}: the circuit stops the calls: {stats:?}"
            );
            assert!(stats.degraded >= 20, "{name}: {stats:?}");
        }
        // Open circuit: no waiting at all.
        let started = Instant::now();
        for _ in 0..100 {
            let _ = closed.check("a", "api").await;
        }
        assert!(
            started.elapsed() < TIMEOUT + SLACK,
            "{:?}",
            started.elapsed()
        );

        server.restart();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Redis's state survived nothing (no persistence): "a" is fresh again.
            match closed.check("a", "api").await {
                Ok(status) => {
                    assert!(status.allowed);
                    break;
                }
                Err(error) => {
                    assert!(Instant::now() < deadline, "no recovery: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        assert!(!closed.store().fault_stats().circuit_open);
    });
}
