//! Redis Sentinel: the store finds the master through Sentinel, and after a failover it finds
//! the new master and keeps limiting.

use std::time::{Duration, Instant};

use ratethrottle::{Limiter, Rule};
use ratethrottle_redis::{RedisConfig, RedisStore, TimeSource};

use crate::server::{SentinelSetup, redis_cli};

#[test]
fn the_store_follows_the_master_through_a_failover() {
    let Some(setup) = SentinelSetup::start() else {
        return;
    };
    crate::runtime().block_on(async {
        let config = RedisConfig::sentinel("mymaster", [setup.sentinel_url()])
            .time(TimeSource::Caller)
            .timeout(Duration::from_secs(1));
        let limiter = Limiter::builder()
            .store(RedisStore::with_config(config).await.unwrap())
            .build();
        limiter
            .add_rule(Rule::new("api", 1_000, Duration::from_secs(3600)))
            .unwrap();
        for expected in (996..1000).rev() {
            let status = limiter.check("a", "api").await.unwrap();
            assert_eq!(status.remaining, expected);
        }

        // Sentinel refuses until it has seen the replica in sync for a moment: ask until it
        // agrees.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = redis_cli(setup.sentinel.port, &["sentinel", "failover", "mymaster"]);
            if answer.contains("OK") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sentinel refused the failover: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Checks go on (fail-open while the master moves) and reach the new master, which
        // holds the replicated count.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = limiter.check("a", "api").await.unwrap();
            let stats = limiter.store().fault_stats();
            if stats.errors > 0 && !stats.circuit_open && status.remaining < 996 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never reached the new master: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(redis_cli(setup.replica.port, &["role"]).starts_with("master"));
    });
}
