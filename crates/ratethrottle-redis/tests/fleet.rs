//! Many processes, one limit: OS processes sharing one Redis server admit exactly the limit,
//! and the server's own clock drives the default store.

use std::process::Command;
use std::time::Duration;

use ratethrottle::{Limiter, Rule, Strategy};
use ratethrottle_redis::{RedisConfig, RedisStore};

use crate::server::RedisServer;

const PROCESSES: usize = 8;
const CHECKS_PER_PROCESS: u64 = 200;
const LIMIT: u64 = 100;

/// The environment variable that turns `fleet_member` into a worker process.
const MEMBER: &str = "RATETHROTTLE_FLEET_MEMBER";

fn rule(strategy: Strategy) -> Rule {
    Rule::new("fleet", LIMIT, Duration::from_secs(3600))
        .strategy(strategy)
        .burst(LIMIT)
        .block_duration(Duration::ZERO)
}

/// A worker: `RATETHROTTLE_FLEET_MEMBER=url|prefix|strategy[|limit]` runs 200 concurrent
/// checks on one key (so the store batches them, several to a script call), at the per-call
/// `limit` when given, and prints how many were admitted. Without the variable (a normal test
/// run) it does nothing.
#[test]
fn fleet_member() {
    let Ok(spec) = std::env::var(MEMBER) else {
        return;
    };
    let mut parts = spec.split('|');
    let (url, prefix, strategy) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().parse::<Strategy>().unwrap(),
    );
    let at_limit: Option<u64> = parts.next().map(|limit| limit.parse().unwrap());
    let runtime = crate::runtime();
    let admitted = runtime.block_on(async {
        let config = RedisConfig::new(url)
            .key_prefix(prefix)
            .timeout(Duration::from_secs(5));
        let store = RedisStore::with_config(config).await.unwrap();
        let limiter = Limiter::builder().store(store).build();
        limiter.add_rule(rule(strategy)).unwrap();
        let checks: Vec<_> = (0..CHECKS_PER_PROCESS)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    match at_limit {
                        Some(limit) => limiter.check_at_limit("shared-key", "fleet", limit).await,
                        None => limiter.check("shared-key", "fleet").await,
                    }
                })
            })
            .collect();
        let mut admitted = 0;
        for check in checks {
            if check.await.unwrap().unwrap().allowed {
                admitted += 1;
            }
        }
        admitted
    });
    println!("ADMITTED {admitted}");
}

/// Runs `processes` workers per strategy on `server`, checking at `at_limit` when given, and
/// asserts that together they admitted exactly `expected`.
fn fleet_admits(
    server: &RedisServer,
    processes: usize,
    at_limit: Option<u64>,
    expected: u64,
    round: usize,
) {
    let exe = std::env::current_exe().unwrap();
    for strategy in Strategy::ALL {
        let prefix = format!(
            "fleet-{}-{round}-{strategy}-{at_limit:?}:",
            std::process::id()
        );
        let limit = at_limit
            .map(|limit| format!("|{limit}"))
            .unwrap_or_default();
        let workers: Vec<_> = (0..processes)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "fleet::fleet_member",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(
                        MEMBER,
                        format!("{}|{prefix}|{strategy}{limit}", server.url()),
                    )
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("the test binary runs as a worker")
            })
            .collect();
        // All started before any is waited for: they check at the same time.
        let workers: Vec<_> = workers
            .into_iter()
            .map(|worker| worker.wait_with_output().expect("a worker ends"))
            .collect();
        let admitted: u64 = workers
            .iter()
            .map(|output| {
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "worker failed: {stdout}{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                stdout
                    .lines()
                    .find_map(|line| line.split("ADMITTED ").nth(1))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no count from a worker: {stdout}"))
            })
            .sum();
        assert_eq!(
            admitted, expected,
            "{strategy}, round {round}, limit {at_limit:?}"
        );
    }
}

#[test]
fn eight_processes_admit_exactly_the_limit_for_every_strategy() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    for round in 0..3 {
        fleet_admits(server, PROCESSES, None, LIMIT, round);
    }
}

/// Issue 20: the adaptive limiter's per-call limit is exact across processes too, when they
/// pass the same value (the rule says 100; they all ask for 37).
#[test]
fn four_processes_admit_exactly_a_per_call_limit_for_every_strategy() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    for round in 0..2 {
        fleet_admits(server, 4, Some(37), 37, round);
    }
}

#[test]
fn the_servers_clock_drives_the_default_store() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    crate::runtime().block_on(async {
        let config = RedisConfig::new(server.url())
            .key_prefix(format!("server-clock-{}:", std::process::id()));
        let limiter = Limiter::builder()
            .store(RedisStore::with_config(config).await.unwrap())
            .build();
        for strategy in Strategy::ALL {
            let name = strategy.as_str();
            limiter
                .add_rule(Rule::new(name, 3, Duration::from_secs(60)).strategy(strategy))
                .unwrap();
            for _ in 0..3 {
                assert!(limiter.check("a", name).await.unwrap().allowed, "{name}");
            }
            let denied = limiter.check("a", name).await.unwrap();
            assert!(!denied.allowed, "{name}");
            let retry = denied.retry_after.unwrap();
            // The block ends at the server's time; the limiter's clock may differ a little.
            assert!(
                retry > Duration::ZERO && retry <= Duration::from_secs(301),
                "{name}: {retry:?}"
            );
            let blocked = limiter.check("a", name).await.unwrap();
            assert!(blocked.blocked, "{name}: the default 300 s block applies");
        }
    });
}
