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
