//! A failing Redis is visible, bounded and exact: credentials and databases Redis refuses are
//! errors at start, a Redis that is down at start is not, a paused Redis costs the call
//! timeout (not the connect timeout), TLS is named when its handshake fails, and degraded
//! answers are marked, counted and logged once per degraded period.

use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ratethrottle::store::StoreErrorKind;
use ratethrottle::{Limiter, Rule};
use ratethrottle_redis::{FaultPolicy, RedisConfig, RedisStore};

use crate::runtime;
use crate::server::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(50);
/// Headroom for a loaded CI machine.
const SLACK: Duration = Duration::from_millis(250);

/// Every line the store logs (through `tracing`), captured once per test binary.
static LOG: LazyLock<Arc<Mutex<Vec<String>>>> = LazyLock::new(|| {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || Capture(Arc::clone(&sink)))
        .init();
    lines
});

struct Capture(Arc<Mutex<Vec<String>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(bytes);
        self.0
            .lock()
            .unwrap()
            .extend(text.lines().map(str::to_owned));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured lines that contain every one of `parts`.
fn logged(parts: &[&str]) -> Vec<String> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .cloned()
        .collect()
}

fn config(url: String, policy: FaultPolicy) -> RedisConfig {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    RedisConfig::new(url)
        .key_prefix(format!("failures-{}-{n}:", std::process::id()))
        .timeout(TIMEOUT)
        .fault_policy(policy)
}

fn limiter(store: RedisStore) -> Limiter<RedisStore> {
    let limiter = Limiter::builder().store(store).build();
    limiter
        .add_rule(Rule::new("api", 2, Duration::from_secs(3600)).block_duration(Duration::ZERO))
        .unwrap();
    limiter
}

/// Checks until Redis decides again (a status not degraded), or panics after 15 s.
async fn until_recovered(limiter: &Limiter<RedisStore>, identifier: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(status) = limiter.peek(identifier, "api").await
            && !status.degraded
        {
            return;
        }
        assert!(Instant::now() < deadline, "redis was not used again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn credentials_and_databases_redis_refuses_are_errors_at_start() {
    let Some(mut server) = RedisServer::with_args("--requirepass s3cret") else {
        return;
    };
    let port = server.port;
    runtime().block_on(async {
        for policy in [
            FaultPolicy::FailOpen,
            FaultPolicy::FailClosed,
            FaultPolicy::FallbackMemory,
        ] {
            let error = RedisStore::with_config(config(server.url(), policy))
                .await
                .unwrap_err();
            assert_eq!(error.kind(), StoreErrorKind::Refused, "{policy}: {error}");
            assert!(error.to_string().contains("refused us"), "{error}");
            assert!(error.to_string().contains("NOAUTH"), "{error}");

            let wrong = format!("redis://:wrong@127.0.0.1:{port}");
            let error = RedisStore::with_config(config(wrong, policy))
                .await
                .unwrap_err();
            assert_eq!(error.kind(), StoreErrorKind::Refused, "{policy}: {error}");
            assert!(
                !error.to_string().contains("wrong@"),
                "no password: {error}"
            );
        }
        let no_such_db = format!("redis://:s3cret@127.0.0.1:{port}/99");
        let error = RedisStore::with_config(config(no_such_db, FaultPolicy::FailOpen))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Refused, "{error}");
        assert!(error.to_string().contains("DB index"), "{error}");

        // Accepted at start; later Redis comes back wanting another password: each policy
        // answers as for any other failure.
        let url = format!("redis://:s3cret@127.0.0.1:{port}");
        let open = limiter(
            RedisStore::with_config(config(url.clone(), FaultPolicy::FailOpen))
                .await
                .unwrap(),
        );
        let closed = limiter(
            RedisStore::with_config(config(url.clone(), FaultPolicy::FailClosed))
                .await
                .unwrap(),
        );
        let fallback = limiter(
            RedisStore::with_config(config(url, FaultPolicy::FallbackMemory))
                .await
                .unwrap(),
        );
        for limiter in [&open, &closed, &fallback] {
            assert!(!limiter.check("a", "api").await.unwrap().degraded);
        }
        server.stop();
        server.restart_with("--requirepass changed");
        let deadline = Instant::now() + Duration::from_secs(10);
        let refused = loop {
            match closed.check("a", "api").await {
                Err(error) if error.to_string().contains("refused us") => break error,
                _ => assert!(Instant::now() < deadline, "no refusal seen"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(refused.is_store_unavailable(), "503 under fail_closed");
        for _ in 0..3 {
            let status = open.check("a", "api").await.unwrap();
            assert!(status.allowed && status.degraded, "fail_open: {status}");
        }
        let decided: Vec<bool> = {
            let mut decided = Vec::new();
            for _ in 0..4 {
                let status = fallback.check("b", "api").await.unwrap();
                assert!(status.degraded, "{status}");
                decided.push(status.allowed);
            }
            decided
        };
        assert_eq!(
            decided,
            [true, true, false, false],
            "fallback limits locally"
        );

        // The password Redis wanted is back: every store uses Redis again.
        server.stop();
        server.restart_with("--requirepass s3cret");
        for limiter in [&open, &closed, &fallback] {
            until_recovered(limiter, "c").await;
        }
    });
}

#[test]
fn degraded_answers_are_marked_counted_and_logged_once_per_period() {
    let Some(mut server) = RedisServer::dedicated() else {
        return;
    };
    LazyLock::force(&LOG);
    runtime().block_on(async {
        let store = |policy| RedisStore::with_config(config(server.url(), policy));
        let open = limiter(store(FaultPolicy::FailOpen).await.unwrap());
        let closed = limiter(store(FaultPolicy::FailClosed).await.unwrap());
        let fallback = limiter(store(FaultPolicy::FallbackMemory).await.unwrap());
        for limiter in [&open, &closed, &fallback] {
            let status = limiter.check("a", "api").await.unwrap();
            assert!(status.allowed && !status.degraded, "{status}");
        }
        let port = format!("127.0.0.1:{}", server.port);
        let started = |policy: &str| {
            logged(&[&port, &format!("checks are answered by {policy} until")]).len()
        };
        let ended = |policy: &str| {
            logged(&[
                &port,
                "is answering again",
                &format!("answered by {policy}"),
            ])
            .len()
        };
        assert_eq!(started("fail_open"), 0, "nothing logged while healthy");

        server.stop();
        for _ in 0..10 {
            let status = open.check("a", "api").await.unwrap();
            assert!(status.allowed && status.degraded, "{status}");
            assert!(status.to_string().contains("degraded"), "{status}");
            let error = closed.check("a", "api").await.unwrap_err();
            assert!(error.is_store_unavailable(), "{error}");
        }
        let mut decided = Vec::new();
        for _ in 0..10 {
            let status = fallback.check("b", "api").await.unwrap();
            assert!(status.degraded, "{status}");
            decided.push(status.allowed);
        }
        assert_eq!(decided.iter().filter(|&&allowed| allowed).count(), 2);

        let metrics = open.metrics();
        assert_eq!(
            (
                metrics.total_requests,
                metrics.allowed_requests,
                metrics.degraded_requests
            ),
            (11, 11, 10)
        );
        assert!(
            metrics.store_errors >= 3 && metrics.store_circuit_open,
            "{metrics:?}"
        );
        assert_eq!(metrics.store_circuit_opens, 1);
        assert_eq!(metrics.rules[0].degraded, 10);
        let metrics = closed.metrics();
        assert_eq!(
            (
                metrics.total_requests,
                metrics.allowed_requests,
                metrics.blocked_requests,
                metrics.degraded_requests
            ),
            (11, 1, 10, 10),
            "fail_closed errors are counted as blocked"
        );
        let metrics = fallback.metrics();
        assert_eq!(
            (
                metrics.total_requests,
                metrics.allowed_requests,
                metrics.degraded_requests
            ),
            (11, 3, 10)
        );
        for policy in ["fail_open", "fail_closed", "fallback_memory"] {
            assert_eq!(
                started(policy),
                1,
                "{policy}: one line as the period starts"
            );
            assert_eq!(ended(policy), 0, "{policy}: not over yet");
        }

        server.restart();
        for limiter in [&open, &closed, &fallback] {
            until_recovered(limiter, "c").await;
            let status = limiter.check("c", "api").await.unwrap();
            assert!(!status.degraded, "{status}");
        }
        for policy in ["fail_open", "fail_closed", "fallback_memory"] {
            assert_eq!(started(policy), 1, "{policy}");
            assert_eq!(ended(policy), 1, "{policy}: one line as the period ends");
        }
        let end = logged(&[&port, "is answering again", "answered by fail_open"]);
        // The ten checks, and the peeks that waited for recovery.
        let answered: u64 = end[0]
            .split_once(" checks were answered")
            .and_then(|(before, _)| before.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {:?}", end[0]));
        assert!(answered >= 10, "{}", end[0]);
        assert!(!open.store().fault_stats().degraded_now);
    });
}

#[test]
fn a_redis_down_at_start_is_used_once_it_answers() {
    let port = RedisServer::unused_port();
    let url = format!("redis://127.0.0.1:{port}");
    runtime().block_on(async {
        let started = Instant::now();
        let required = config(url.clone(), FaultPolicy::FailOpen).require_connection(true);
        let error = RedisStore::with_config(required).await.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        assert!(error.to_string().contains("unreachable"), "{error}");

        let store = RedisStore::with_config(config(url.clone(), FaultPolicy::FailOpen))
            .await
            .expect("starts while redis is down");
        assert!(
            started.elapsed() < SLACK,
            "a refused port costs no retries: {:?}",
            started.elapsed()
        );
        let open = limiter(store);
        let status = open.check("a", "api").await.unwrap();
        assert!(status.allowed && status.degraded, "{status}");
        let closed = limiter(
            RedisStore::with_config(config(url, FaultPolicy::FailClosed))
                .await
                .unwrap(),
        );
        let error = closed.check("a", "api").await.unwrap_err();
        assert!(error.to_string().contains("not connected yet"), "{error}");

        let Some(_server) = RedisServer::at_port(port) else {
            return;
        };
        until_recovered(&open, "b").await;
        until_recovered(&closed, "b").await;
        let allowed: Vec<bool> = {
            let mut allowed = Vec::new();
            for _ in 0..3 {
                let status = closed.check("b", "api").await.unwrap();
                assert!(!status.degraded);
                allowed.push(status.allowed);
            }
            allowed
        };
        assert_eq!(allowed, [true, true, false], "the limit holds in redis");
    });
}

#[test]
fn a_paused_redis_costs_the_call_timeout_and_connecting_the_connect_timeout() {
    let Some(server) = RedisServer::dedicated() else {
        return;
    };
    runtime().block_on(async {
        let open = limiter(
            RedisStore::with_config(config(server.url(), FaultPolicy::FailOpen))
                .await
                .unwrap(),
        );
        assert!(!open.check("a", "api").await.unwrap().degraded);
        let pid = server.pid();
        signal("STOP", &pid);
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = Instant::now();
            let status = open.check("a", "api").await.unwrap();
            slowest = slowest.max(started.elapsed());
            assert!(status.allowed && status.degraded, "{status}");
        }
        assert!(slowest < TIMEOUT + SLACK, "slowest check {slowest:?}");

        let connect_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let required = config(server.url(), FaultPolicy::FailOpen)
            .connect_timeout(connect_timeout)
            .require_connection(true);
        let error = RedisStore::with_config(required).await.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        let lazy = config(server.url(), FaultPolicy::FailOpen).connect_timeout(connect_timeout);
        let store = RedisStore::with_config(lazy).await;
        let took = started.elapsed();
        signal("CONT", &pid);
        assert!(store.is_ok(), "a hanging redis at start is not fatal");
        assert!(
            took < 2 * connect_timeout + SLACK,
            "two connects took {took:?}"
        );
        until_recovered(&open, "b").await;
        until_recovered(&limiter(store.unwrap()), "b").await;
    });
}

/// Sends `signal` to the process `pid`: `STOP` makes a server that hangs with its connections
/// open, `CONT` resumes it.
fn signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn tls_to_a_plain_text_port_fails_fast_and_names_tls() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let required = config(url, FaultPolicy::FailOpen).require_connection(true);
    let started = Instant::now();
    let error = runtime()
        .block_on(RedisStore::with_config(required))
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(1) + SLACK,
        "{:?}",
        started.elapsed()
    );
}
