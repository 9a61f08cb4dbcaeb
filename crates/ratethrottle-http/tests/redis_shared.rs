//! Two server instances sharing one limit through Redis, and Redis failing closed.

use std::time::Duration;

use ratethrottle::{Limiter, Rule};
use ratethrottle_http::RateLimitLayer;
use ratethrottle_http::actix::RateLimit;
use ratethrottle_redis::{FaultPolicy, RedisConfig, RedisStore};

use crate::actix_middleware::serve_actix;
use crate::server::{RedisServer, limiter_on, redis_cli};
use crate::support::*;

/// A limiter of 25 per hour (no block) over a store of its own on `server`.
async fn redis_limiter(
    server: &RedisServer,
    prefix: &str,
    policy: FaultPolicy,
) -> Limiter<RedisStore> {
    let rule = Rule::new("api", 25, Duration::from_secs(3600)).block_duration(Duration::ZERO);
    limiter_on(server, &format!("http-{prefix}"), policy, rule).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_limit() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    // Two processes' worth of limiters: separate stores, one Redis.
    let first = redis_limiter(server, "shared", FaultPolicy::FailOpen).await;
    let second = redis_limiter(server, "shared", FaultPolicy::FailOpen).await;
    let axum_base = serve_axum(
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .layer(RateLimitLayer::builder(first).rule("api").layer().unwrap()),
    )
    .await;
    let actix_base = serve_actix(RateLimit::builder(second).rule("api").middleware().unwrap());

    // Every other task through each server.
    let counts = from_many_tasks(&[axum_base, actix_base], "127.0.7.1", 10, 6).await;
    assert_eq!(counts, (25, 35));
}

/// Two servers sharing a limit of 10 through Redis, 250 parallel requests a round: exactly 10
/// admitted in every round in which Redis decided every check. (A round where a check timed
/// out and `fail_open` admitted it shows in `degraded_requests`, and may admit more.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_two_servers_admit_exactly_the_limit() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let rounds: usize = std::env::var("RT_LOAD_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let limiters = [
        redis_limiter(server, "load", FaultPolicy::FailOpen).await,
        redis_limiter(server, "load", FaultPolicy::FailOpen).await,
    ];
    let rule = Rule::new("api", 10, Duration::from_secs(3600)).block_duration(Duration::ZERO);
    let mut bases = Vec::new();
    for limiter in &limiters {
        limiter.add_rule(rule.clone()).unwrap();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .layer(
                RateLimitLayer::builder(limiter.clone())
                    .rule("api")
                    .layer()
                    .unwrap(),
            );
        bases.push(serve_axum(app).await);
    }
    let degraded = || -> u64 {
        limiters
            .iter()
            .map(|limiter| limiter.metrics().degraded_requests)
            .sum()
    };
    let mut degraded_rounds = Vec::new();
    // The last round runs into a `CLIENT PAUSE`: checks time out, fail_open admits them, and
    // Redis still runs the ones it had received once the pause ends.
    for round in 0..=rounds {
        let ip: &'static str = format!("127.0.8.{}", round % 250 + 1).leak();
        let before = degraded();
        let client = client_from(ip);
        if round == rounds {
            redis_cli(server.port, &["client", "pause", "300"]);
        }
        let requests: Vec<_> = (0..250)
            .map(|i| {
                let (client, base) = (client.clone(), bases[i % 2]);
                tokio::spawn(async move { get(&client, base, "/", &[]).await.status })
            })
            .collect();
        let mut admitted = 0;
        for request in requests {
            let status = request.await.unwrap();
            assert!(status == 200 || status == 429, "status {status}");
            admitted += usize::from(status == 200);
        }
        let during = degraded() - before;
        if during == 0 {
            assert_eq!(admitted, 10, "round {round}: Redis decided every check");
        } else {
            degraded_rounds.push((round, admitted, during));
        }
        // Every admission past the limit is one the fault policy made, and is counted so.
        assert!(
            admitted as u64 <= 10 + during,
            "round {round}: {admitted} admitted, {during} degraded"
        );
        if round == rounds {
            assert!(during > 0, "the pause made checks time out");
        }
    }
    eprintln!(
        "{rounds} rounds of 250 requests; rounds with degraded (fail_open) answers: {degraded_rounds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_gives_503_only_when_failing_closed() {
    let Some(mut server) = RedisServer::dedicated() else {
        return;
    };
    let closed = redis_limiter(&server, "closed", FaultPolicy::FailClosed).await;
    let open = redis_limiter(&server, "open", FaultPolicy::FailOpen).await;
    let app = |limiter| {
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .layer(
                RateLimitLayer::builder(limiter)
                    .rule("api")
                    .layer()
                    .unwrap(),
            )
    };
    let closed_base = serve_axum(app(closed)).await;
    let open_base = serve_axum(app(open)).await;
    let client = client_from("127.0.7.2");
    assert_eq!(get(&client, closed_base, "/", &[]).await.status, 200);

    server.stop();
    let unavailable = get(&client, closed_base, "/", &[]).await;
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.header("retry-after"), "1");
    assert_eq!(
        unavailable.body,
        r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"rate limiting is unavailable; try again shortly","retry_after":1}"#
    );
    assert_eq!(get(&client, open_base, "/", &[]).await.status, 200);
}

/// Issue 19: a DDoS block made by server A is enforced by server B through Redis (B keeps no
/// copy of the lists here: `list_cache_ttl` zero; by default it sees the block within that
/// TTL), and the offence count is shared: B's next block of the same client is its second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ddos_block_made_by_one_server_is_enforced_by_another() {
    use std::sync::Arc;

    use ratethrottle_protect::ddos::{DdosProtection, DdosSettings, ban};

    let Some(server) = RedisServer::shared() else {
        return;
    };
    let prefix = format!("http-{}-ddos:", std::process::id());
    let mut limiters = Vec::new();
    for _ in 0..2 {
        let config = RedisConfig::new(server.url())
            .key_prefix(prefix.clone())
            .list_cache_ttl(Duration::ZERO);
        let limiter = Limiter::builder()
            .store(RedisStore::with_config(config).await.unwrap())
            .build();
        limiter
            .add_rule(Rule::new("api", 1000, Duration::from_secs(60)))
            .unwrap();
        limiters.push(limiter);
    }
    let mut settings = DdosSettings::default();
    settings.suspicious_threshold = 0.1;
    let mut bases = Vec::new();
    for limiter in &limiters {
        let ddos = Arc::new(DdosProtection::new(settings.clone()).unwrap());
        let layer = RateLimitLayer::builder(limiter.clone())
            .rule("api")
            .ddos(ddos)
            .layer()
            .unwrap();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .layer(layer);
        bases.push(serve_axum(app).await);
    }
    // Server A sees the attack (no user agent, three times) and blocks the client.
    let attacker = client_from("127.0.9.1");
    assert_eq!(
        statuses(&attacker, bases[0], "/", &[], 3).await,
        [200, 200, 403]
    );
    // Server B never saw it, and refuses it.
    assert_eq!(get(&attacker, bases[1], "/", &[]).await.status, 403);
    let agent = [("user-agent", "Mozilla/5.0")];
    let browser = client_from("127.0.9.2");
    assert_eq!(get(&browser, bases[1], "/", &agent).await.status, 200);
    // The offence count is the fleet's: lifted and blocked again from B, it is the second.
    limiters[1].blacklist_remove("127.0.9.1").await.unwrap();
    let second = ban(&limiters[1], &settings, "127.0.9.1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.offence, second.duration.as_secs()), (2, 7200));
    assert!(limiters[0].is_blacklisted("127.0.9.1").await.unwrap());
}
