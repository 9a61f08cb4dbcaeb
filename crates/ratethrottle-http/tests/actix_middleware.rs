//! The actix-web middleware on a real actix server.

use std::net::SocketAddr;
use std::sync::mpsc;

use actix_web::{App, HttpRequest, HttpServer, web};
use ratethrottle::Scope;
use ratethrottle::store::Store;
use ratethrottle_http::ClientIp;
use ratethrottle_http::actix::RateLimit;

use crate::support::*;

/// Runs an actix server with `rate_limit` on its own thread and system; its address.
pub(crate) fn serve_actix<S: Store>(rate_limit: RateLimit<S>) -> SocketAddr {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(rate_limit.clone())
                    .route("/", web::get().to(|| async { "hello" }))
                    .route("/users/{id}", web::get().to(|| async { "user" }))
                    .route(
                        "/whoami",
                        web::get().to(|request: HttpRequest| async move {
                            request
                                .peer_addr()
                                .map(|a| a.ip().to_string())
                                .unwrap_or_default()
                        }),
                    )
            })
            .workers(2)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
            sender.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    receiver.recv().unwrap()
}

#[tokio::test]
async fn over_the_limit_is_the_same_exact_429_as_with_axum() {
    let (limiter, _clock) = limiter([per_minute("api", 3)]);
    let base = serve_actix(
        RateLimit::builder(limiter)
            .rule("api")
            .middleware()
            .unwrap(),
    );
    let client = client_from("127.0.4.1");
    let first = get(&client, base, "/", &[]).await;
    assert_eq!((first.status, first.body.as_str()), (200, "hello"));
    assert_eq!(first.header("ratelimit"), "\"api\";r=2;t=60");
    assert_eq!(statuses(&client, base, "/", &[], 2).await, [200, 200]);
    let denied = get(&client, base, "/", &[]).await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("content-type"), "application/problem+json");
    assert_eq!(denied.rate_headers(), expected_429_headers());
    assert_eq!(denied.body, EXPECTED_429_BODY);
    let other = client_from("127.0.4.2");
    assert_eq!(get(&other, base, "/", &[]).await.status, 200);
}

#[tokio::test]
async fn blacklists_proxies_and_endpoints() {
    let (limiter, _clock) = limiter([
        per_minute("api", 2),
        per_minute("per_endpoint", 2).scope(Scope::Endpoint),
    ]);
    limiter.blacklist_add("198.51.100.66", None).await.unwrap();
    let rate_limit = RateLimit::builder(limiter.clone())
        .rule("api")
        .rule_for("/users", "per_endpoint")
        .client_ip(ClientIp::new().trust_proxies(["127.0.4.0/24"]))
        .middleware()
        .unwrap();
    let base = serve_actix(rate_limit);

    // Untrusted peer: its forwarded header is ignored.
    let direct = client_from("127.0.5.1");
    let spoof = [("x-forwarded-for", "198.51.100.66")];
    assert_eq!(get(&direct, base, "/", &spoof).await.status, 200);
    // Through our proxy: the forwarded client is the one blacklisted.
    let proxy = client_from("127.0.4.3");
    let banned = get(
        &proxy,
        base,
        "/",
        &[("x-forwarded-for", "6.6.6.6, 198.51.100.66")],
    )
    .await;
    assert_eq!(
        (banned.status, banned.body.as_str()),
        (403, EXPECTED_403_BODY)
    );
    // Endpoint scope uses actix's route pattern.
    assert_eq!(get(&direct, base, "/users/1", &[]).await.status, 200);
    assert_eq!(get(&proxy, base, "/users/2", &[]).await.status, 200);
    assert_eq!(get(&direct, base, "/users/3", &[]).await.status, 429);
    assert_eq!(
        remaining(&limiter, "GET /users/{id}", "per_endpoint").await,
        0
    );
}

#[tokio::test]
async fn concurrent_requests_admit_exactly_the_limit() {
    let (limiter, _clock) = limiter([per_minute("api", 30)]);
    let base = serve_actix(
        RateLimit::builder(limiter)
            .rule("api")
            .middleware()
            .unwrap(),
    );
    let counts = from_many_tasks(&[base], "127.0.6.1", 20, 5).await;
    assert_eq!(counts, (30, 70));
}

/// Issue 19 on actix: DDoS protection blocks an attacker (with escalating blocks once its
/// first ends) while a browser passes, and analytics record every decision and violation.
#[tokio::test]
async fn ddos_escalates_and_analytics_record_decisions() {
    use std::sync::Arc;
    use std::time::Duration;

    use ratethrottle::store::KeyValueStore;
    use ratethrottle_protect::analytics::{Analytics, AnalyticsSettings};
    use ratethrottle_protect::ddos::{DdosProtection, DdosSettings};

    let (limiter, clock) = limiter([per_minute("api", 3)]);
    let mut settings = DdosSettings::default();
    // No user agent (0.1) is suspicious here; three suspicious requests in 5 minutes block.
    settings.suspicious_threshold = 0.1;
    settings.block_duration = Duration::from_secs(60);
    let ddos = Arc::new(DdosProtection::new(settings).unwrap());
    let analytics = Arc::new(Analytics::new(AnalyticsSettings::default()).unwrap());
    let base = serve_actix(
        RateLimit::builder(limiter.clone())
            .rule("api")
            .ddos(ddos)
            .analytics(Arc::clone(&analytics))
            .middleware()
            .unwrap(),
    );
    let attacker = client_from("127.0.4.9");
    assert_eq!(
        statuses(&attacker, base, "/", &[], 4).await,
        [200, 200, 403, 403]
    );
    // The first block lasts 60 s. Still attacking after it, the client is blocked again at
    // once, for 120 s: its second offence, counted in the limiter's store.
    clock.advance(Duration::from_secs(61));
    assert_eq!(get(&attacker, base, "/", &[]).await.status, 403);
    clock.advance(Duration::from_secs(119));
    assert_eq!(get(&attacker, base, "/", &[]).await.status, 403);
    let key = ratethrottle_protect::ddos::offence_key("127.0.4.9");
    let offences = limiter.store().get(&key, limiter.now()).await.unwrap();
    assert_eq!(offences, Some(ratethrottle::store::Value::Int(2)));

    let browser = client_from("127.0.4.10");
    let agent = [("user-agent", "Mozilla/5.0")];
    assert_eq!(
        statuses(&browser, base, "/", &agent, 4).await,
        [200, 200, 200, 429]
    );
    let summary = analytics.summary();
    // The attacker's admitted requests (2), the blacklisted ones (4), the browser's 4.
    assert_eq!(summary.total_requests, 10);
    assert_eq!(summary.total_violations, 1);
    let top = analytics.top_violators(5, None, limiter.now());
    assert_eq!(top, [("127.0.4.10".to_owned(), 1)]);
    let rules = analytics.rule_statistics();
    assert_eq!((rules[0].1.allowed, rules[0].1.blocked), (5, 5));
}
