//! The tower layer in an axum app.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, request::Parts};
use axum::routing;
use ratethrottle::{Limiter, Scope};
use ratethrottle_http::{
    ClientIp, ForwardedHeader, HeaderStyle, PolicyBuilder, RateLimitLayer, RejectionKind,
    RejectionResponse, Route, UnknownPeer,
};

use crate::support::*;

fn app<S: ratethrottle::store::Store>(layer: RateLimitLayer<S>) -> Router {
    Router::new()
        .route("/", routing::get(|| async { "hello" }))
        .route("/users/{id}", routing::get(|| async { "user" }))
        .route("/health", routing::get(|| async { "ok" }))
        .route(
            "/login",
            routing::post(|parts: Parts| async move {
                match parts.headers.get("x-password").map(|v| v.as_bytes()) {
                    Some(b"right") => (StatusCode::OK, "welcome"),
                    _ => (StatusCode::UNAUTHORIZED, "wrong password"),
                }
            }),
        )
        .route(
            "/stream",
            routing::get(|| async {
                let chunks = (0..100).map(|i| Ok::<_, std::io::Error>(format!("chunk {i:03}\n")));
                Body::new(chunked_body(chunks))
            }),
        )
        .layer(layer)
}

/// A body sent one chunk at a time.
struct Chunks<I>(I);

fn chunked_body<I>(items: I) -> Chunks<I> {
    Chunks(items)
}

impl<I> axum::body::HttpBody for Chunks<I>
where
    I: Iterator<Item = Result<String, std::io::Error>> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let next = self.0.next();
        std::task::Poll::Ready(next.map(|item| item.map(|s| http_body::Frame::data(s.into()))))
    }
}

async fn serve(
    builder: PolicyBuilder<ratethrottle::store::MemoryStore, Parts>,
) -> std::net::SocketAddr {
    serve_axum(app(builder.layer().unwrap())).await
}

#[tokio::test]
async fn a_client_over_its_limit_gets_an_exact_429_others_carry_on() {
    let (limiter, _clock) = limiter([per_minute("api", 3)]);
    let base = serve(RateLimitLayer::builder(limiter).rule("api")).await;
    let alice = client_from("127.0.0.2");

    let first = get(&alice, base, "/", &[]).await;
    assert_eq!((first.status, first.body.as_str()), (200, "hello"));
    assert_eq!(
        first.rate_headers(),
        [
            "x-ratelimit-limit: 3",
            "x-ratelimit-remaining: 2",
            &format!("x-ratelimit-reset: {}", START + 60),
            "ratelimit-policy: \"api\";q=3;w=60",
            "ratelimit: \"api\";r=2;t=60",
        ]
    );
    assert_eq!(statuses(&alice, base, "/", &[], 2).await, [200, 200]);
    let denied = get(&alice, base, "/", &[]).await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("content-type"), "application/problem+json");
    assert_eq!(denied.rate_headers(), expected_429_headers());
    assert_eq!(denied.body, EXPECTED_429_BODY);

    let bob = client_from("127.0.0.3");
    assert_eq!(
        statuses(&bob, base, "/", &[], 4).await,
        [200, 200, 200, 429]
    );
}

#[tokio::test]
async fn blacklisted_clients_get_403_and_whitelisted_ones_no_limit() {
    let (limiter, _clock) = limiter([per_minute("api", 1)]);
    limiter.blacklist_add("127.0.0.4", None).await.unwrap();
    limiter.whitelist_add("127.0.0.5").await.unwrap();
    let base = serve(RateLimitLayer::builder(limiter).rule("api")).await;

    let banned = get(&client_from("127.0.0.4"), base, "/", &[]).await;
    assert_eq!(banned.status, 403);
    assert_eq!(banned.header("content-type"), "application/problem+json");
    assert_eq!(banned.body, EXPECTED_403_BODY);
    assert!(
        banned.rate_headers().is_empty(),
        "{:?}",
        banned.rate_headers()
    );

    let friend = client_from("127.0.0.5");
    assert_eq!(statuses(&friend, base, "/", &[], 5).await, [200; 5]);
    assert!(get(&friend, base, "/", &[]).await.rate_headers().is_empty());
}

#[tokio::test]
async fn a_block_after_a_violation_says_so_and_lasts() {
    let rule = per_minute("api", 1).block_duration(Duration::from_secs(600));
    let (limiter, clock) = limiter([rule]);
    let base = serve(RateLimitLayer::builder(limiter).rule("api")).await;
    let client = client_from("127.0.0.6");
    assert_eq!(statuses(&client, base, "/", &[], 2).await, [200, 429]);
    clock.advance(Duration::from_secs(120));
    let blocked = get(&client, base, "/", &[]).await;
    assert_eq!(blocked.status, 429);
    assert_eq!(blocked.header("retry-after"), "480");
    assert_eq!(
        blocked.json()["detail"],
        "blocked after exceeding rate limit \"api\"; retry in 480s"
    );
}

#[tokio::test]
async fn spoofed_forwarded_headers_from_untrusted_peers_are_ignored() {
    let (limiter, _clock) = limiter([per_minute("api", 2)]);
    let builder = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .client_ip(ClientIp::new().trust_proxies(["10.0.0.0/8"]));
    let base = serve(builder).await;
    let client = client_from("127.0.0.7");
    let mut codes = Vec::new();
    for i in 0..4 {
        let spoof = format!("203.0.113.{i}");
        codes.push(
            get(&client, base, "/", &[("x-forwarded-for", &spoof)])
                .await
                .status,
        );
    }
    assert_eq!(codes, [200, 200, 429, 429]);
    assert_eq!(remaining(&limiter, "203.0.113.0", "api").await, 2);
}

#[tokio::test]
async fn trusted_proxy_chains_resolve_to_the_right_most_untrusted_address() {
    let (limiter, _clock) = limiter([per_minute("api", 2)]);
    let builder = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .client_ip(ClientIp::new().trust_proxies(["127.0.0.0/8", "10.0.0.0/8"]));
    let base = serve(builder).await;
    let proxy = client_from("127.0.0.8");
    // The client forged "6.6.6.6"; our proxies (10.x) appended what they saw.
    let chain = [("x-forwarded-for", "6.6.6.6, 198.51.100.9, 10.1.1.1")];
    assert_eq!(
        statuses(&proxy, base, "/", &chain, 3).await,
        [200, 200, 429]
    );
    assert_eq!(remaining(&limiter, "198.51.100.9", "api").await, 0);
    assert_eq!(remaining(&limiter, "6.6.6.6", "api").await, 2);
    // Another client behind the same proxy has its own allowance.
    let other = [("x-forwarded-for", "198.51.100.10")];
    assert_eq!(get(&proxy, base, "/", &other).await.status, 200);
    // A malformed header falls back safely (to the proxy's own address), never a 500.
    let garbage = [("x-forwarded-for", "not-an-ip, also bad")];
    assert_eq!(get(&proxy, base, "/", &garbage).await.status, 200);
    assert_eq!(remaining(&limiter, "127.0.0.8", "api").await, 1);
}

#[tokio::test]
async fn ipv6_clients_share_a_limit_per_64() {
    let (limiter, _clock) = limiter([per_minute("api", 2)]);
    let builder = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .client_ip(
            ClientIp::new()
                .trust_proxies(["127.0.0.1"])
                .header(ForwardedHeader::Forwarded),
        );
    let base = serve(builder).await;
    let proxy = client_from("127.0.0.1");
    let from = |address: &'static str| [("forwarded", address)];
    assert_eq!(
        get(&proxy, base, "/", &from("for=\"[2001:db8:1:2::1]\""))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&proxy, base, "/", &from("for=\"[2001:db8:1:2::ffff]:443\""))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&proxy, base, "/", &from("for=\"[2001:db8:1:2:3::9]\""))
            .await
            .status,
        429
    );
    assert_eq!(
        get(&proxy, base, "/", &from("for=\"[2001:db8:1:3::1]\""))
            .await
            .status,
        200
    );
    assert_eq!(remaining(&limiter, "2001:db8:1:2::/64", "api").await, 0);
}

#[tokio::test]
async fn user_endpoint_and_global_scopes_pick_their_keys() {
    let (limiter, _clock) = limiter([
        per_minute("per_user", 2).scope(Scope::User),
        per_minute("per_endpoint", 3).scope(Scope::Endpoint),
        per_minute("everyone", 100).scope(Scope::Global),
    ]);
    let user = RateLimitLayer::builder(limiter.clone())
        .rule_for("/health", "per_user")
        .rule_for("/users", "per_endpoint")
        .rule("everyone")
        .user_header("x-user");
    let base = serve(user).await;
    let one = client_from("127.0.1.1");
    let two = client_from("127.0.1.2");

    // user: by header, whatever the address; without one, by address.
    let alice = [("x-user", "alice")];
    assert_eq!(statuses(&one, base, "/health", &alice, 2).await, [200, 200]);
    assert_eq!(get(&two, base, "/health", &alice).await.status, 429);
    assert_eq!(
        statuses(&two, base, "/health", &[], 3).await,
        [200, 200, 429]
    );

    // endpoint: the route template, across clients and ids.
    assert_eq!(get(&one, base, "/users/1", &[]).await.status, 200);
    assert_eq!(get(&two, base, "/users/2", &[]).await.status, 200);
    assert_eq!(get(&one, base, "/users/3", &[]).await.status, 200);
    assert_eq!(get(&two, base, "/users/4", &[]).await.status, 429);
    assert_eq!(
        remaining(&limiter, "GET /users/{id}", "per_endpoint").await,
        0
    );

    // global: the seven admitted requests above, from both clients; the three rejected by
    // an earlier rule spent nothing here.
    assert_eq!(remaining(&limiter, "global", "everyone").await, 100 - 7);
}

#[tokio::test]
async fn jwt_subjects_identify_users() {
    let (limiter, _clock) = limiter([per_minute("per_user", 1).scope(Scope::User)]);
    let base = serve(
        RateLimitLayer::builder(limiter.clone())
            .rule("per_user")
            .user_jwt_subject(),
    )
    .await;
    // {"sub":"carol"} and {"sub":"dave"}, unsigned.
    let carol = [("authorization", "Bearer e30.eyJzdWIiOiJjYXJvbCJ9.c2ln")];
    let dave = [("authorization", "Bearer e30.eyJzdWIiOiJkYXZlIn0.c2ln")];
    let client = client_from("127.0.1.3");
    assert_eq!(statuses(&client, base, "/", &carol, 2).await, [200, 429]);
    assert_eq!(get(&client, base, "/", &dave).await.status, 200);
    assert_eq!(remaining(&limiter, "carol", "per_user").await, 0);
}

#[tokio::test]
async fn the_most_restrictive_rule_speaks_and_a_rejection_spends_no_other_limit() {
    let (limiter, _clock) = limiter([per_minute("wide", 100), per_minute("narrow", 2)]);
    let base = serve(
        RateLimitLayer::builder(limiter.clone())
            .rule("narrow")
            .rule("wide"),
    )
    .await;
    let client = client_from("127.0.1.4");
    let first = get(&client, base, "/", &[]).await;
    assert_eq!(first.header("ratelimit-policy"), "\"narrow\";q=2;w=60");
    assert_eq!(first.header("x-ratelimit-remaining"), "1");
    assert_eq!(statuses(&client, base, "/", &[], 3).await, [200, 429, 429]);
    // "wide" counted only the two admitted requests.
    assert_eq!(remaining(&limiter, "127.0.1.4", "wide").await, 98);
}

#[tokio::test]
async fn shadow_mode_counts_but_never_rejects() {
    let (limiter, _clock) = limiter([per_minute("api", 1)]);
    limiter.blacklist_add("127.0.1.5", None).await.unwrap();
    let base = serve(
        RateLimitLayer::builder(limiter.clone())
            .rule("api")
            .shadow(true),
    )
    .await;
    let client = client_from("127.0.1.5");
    let replies = [
        get(&client, base, "/", &[]).await,
        get(&client, base, "/", &[]).await,
    ];
    assert!(
        replies
            .iter()
            .all(|r| r.status == 200 && r.rate_headers().is_empty())
    );
    let other = client_from("127.0.1.6");
    assert_eq!(statuses(&other, base, "/", &[], 3).await, [200; 3]);
    let metrics = limiter.metrics();
    assert_eq!((metrics.total_requests, metrics.blocked_requests), (5, 4));
}

#[tokio::test]
async fn exempt_requests_are_neither_limited_nor_counted() {
    let (limiter, _clock) = limiter([per_minute("api", 1)]);
    let builder = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .exempt_when(|request: &Parts| request.uri.path() == "/health");
    let base = serve(builder).await;
    let client = client_from("127.0.1.7");
    let health = get(&client, base, "/health", &[]).await;
    assert_eq!((health.status, health.rate_headers().len()), (200, 0));
    assert_eq!(statuses(&client, base, "/health", &[], 3).await, [200; 3]);
    assert_eq!(statuses(&client, base, "/", &[], 2).await, [200, 429]);
    assert_eq!(limiter.metrics().total_requests, 2);
}

#[tokio::test]
async fn deduct_when_counts_only_failed_logins() {
    let rule = per_minute("login", 2).block_duration(Duration::from_secs(600));
    let (limiter, clock) = limiter([rule]);
    let builder = RateLimitLayer::builder(limiter.clone())
        .rule_for(Route::prefix("/login").method("POST"), "login")
        .deduct_when(|status| status >= 400);
    let base = serve(builder).await;
    let client = client_from("127.0.1.8");
    let right = [("x-password", "right")];
    let wrong = [("x-password", "wrong")];
    for _ in 0..5 {
        assert_eq!(post(&client, base, "/login", &right).await.status, 200);
    }
    let failed = post(&client, base, "/login", &wrong).await;
    assert_eq!(
        (failed.status, failed.header("x-ratelimit-remaining")),
        (401, "1")
    );
    assert_eq!(post(&client, base, "/login", &wrong).await.status, 401);
    // Two failures: even the right password waits now, and trying starts the block.
    let locked = post(&client, base, "/login", &right).await;
    assert_eq!((locked.status, locked.header("retry-after")), (429, "600"));
    assert_eq!(limiter.metrics().violations, 1);
    clock.advance(Duration::from_secs(60));
    let blocked = post(&client, base, "/login", &right).await;
    assert_eq!(
        (blocked.status, blocked.header("retry-after")),
        (429, "540")
    );
    // GET /login is not on the route.
    assert_eq!(get(&client, base, "/login", &[]).await.status, 405);
}

#[tokio::test]
async fn headers_can_be_left_off_allowed_responses() {
    let (limiter, _clock) = limiter([per_minute("api", 3)]);
    let base = serve(RateLimitLayer::builder(limiter).rule("api").headers(false)).await;
    let client = client_from("127.0.1.9");
    for _ in 0..3 {
        assert!(get(&client, base, "/", &[]).await.rate_headers().is_empty());
    }
    let denied = get(&client, base, "/", &[]).await;
    assert_eq!(denied.rate_headers(), expected_429_headers());
}

#[tokio::test]
async fn a_header_style_picks_the_header_family() {
    let (limiter, _clock) = limiter([per_minute("api", 1)]);
    let legacy = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .header_style(HeaderStyle::Legacy);
    let base = serve(legacy).await;
    let client = client_from("127.0.2.6");
    let reset = format!("x-ratelimit-reset: {}", START + 60);
    let allowed = get(&client, base, "/", &[]).await;
    assert_eq!(
        allowed.rate_headers(),
        ["x-ratelimit-limit: 1", "x-ratelimit-remaining: 0", &reset]
    );
    let denied = get(&client, base, "/", &[]).await;
    assert_eq!(
        denied.rate_headers(),
        [
            "x-ratelimit-limit: 1",
            "x-ratelimit-remaining: 0",
            &reset,
            "retry-after: 60"
        ]
    );

    let ietf = RateLimitLayer::builder(limiter)
        .rule("api")
        .header_style(HeaderStyle::Ietf);
    let base = serve(ietf).await;
    let client = client_from("127.0.2.7");
    let allowed = get(&client, base, "/", &[]).await;
    assert_eq!(
        allowed.rate_headers(),
        [
            "ratelimit-policy: \"api\";q=1;w=60",
            "ratelimit: \"api\";r=0;t=60"
        ]
    );
    let denied = get(&client, base, "/", &[]).await;
    assert_eq!(
        denied.rate_headers(),
        [
            "retry-after: 60",
            "ratelimit-policy: \"api\";q=1;w=60",
            "ratelimit: \"api\";r=0;t=60"
        ]
    );
}

#[tokio::test]
async fn a_custom_rejection_hook_shapes_the_response() {
    let (limiter, _clock) = limiter([per_minute("api", 1)]);
    let builder = RateLimitLayer::builder(limiter)
        .rule("api")
        .on_rejection(|rejection| {
            assert_eq!(rejection.kind, RejectionKind::Limited);
            RejectionResponse::new(503, format!("slow down, {}", rejection.identifier))
                .header(
                    "retry-after",
                    rejection.retry_after_secs().unwrap_or(0).to_string(),
                )
                .header("bad header name", "skipped")
        });
    let base = serve(builder).await;
    let client = client_from("127.0.2.1");
    assert_eq!(get(&client, base, "/", &[]).await.status, 200);
    let denied = get(&client, base, "/", &[]).await;
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (503, "slow down, 127.0.2.1")
    );
    assert_eq!(denied.header("retry-after"), "60");
}

#[tokio::test]
async fn costs_come_from_the_request_and_cannot_skip_a_limit() {
    let (limiter, _clock) = limiter([per_minute("api", 10)]);
    let builder = RateLimitLayer::builder(limiter)
        .rule("api")
        .cost(|request: &Parts| {
            request
                .headers
                .get("x-cost")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1)
        });
    let base = serve(builder).await;
    let client = client_from("127.0.2.2");
    let heavy = get(&client, base, "/", &[("x-cost", "7")]).await;
    assert_eq!(
        (heavy.status, heavy.header("x-ratelimit-remaining")),
        (200, "3")
    );
    let huge = get(&client, base, "/", &[("x-cost", "1000")]).await;
    assert_eq!(huge.status, 429);
    assert_eq!(huge.header("retry-after"), "");
    assert_eq!(
        huge.json()["detail"],
        "cost 1000 is not allowed for rule \"api\": it must be between 1 and the rule's capacity 10"
    );
    assert_eq!(
        get(&client, base, "/", &[("x-cost", "4")]).await.status,
        429
    );
    assert_eq!(
        get(&client, base, "/", &[("x-cost", "3")]).await.status,
        200
    );
    // Free requests are not counted.
    assert_eq!(
        statuses(&client, base, "/", &[("x-cost", "0")], 3).await,
        [429; 3]
    );
}

#[tokio::test]
async fn a_panicking_closure_hurts_no_request() {
    let (limiter, _clock) = limiter([per_minute("api", 2).scope(Scope::User)]);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let builder = RateLimitLayer::builder(limiter)
        .rule("api")
        .user(move |_: &Parts| {
            counted.fetch_add(1, Ordering::Relaxed);
            panic!("user lookup bug")
        });
    let base = serve(builder).await;
    let client = client_from("127.0.2.3");
    assert_eq!(statuses(&client, base, "/", &[], 3).await, [200, 200, 429]);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn concurrent_requests_admit_exactly_the_limit() {
    let (limiter, _clock) = limiter([per_minute("api", 50)]);
    let base = serve(RateLimitLayer::builder(limiter).rule("api")).await;
    let counts = from_many_tasks(&[base], "127.0.3.1", 40, 5).await;
    assert_eq!(counts, (50, 150));
}

#[tokio::test]
async fn http2_and_streaming_bodies_pass_through() {
    let (limiter, _clock) = limiter([per_minute("api", 2)]);
    let base = serve(RateLimitLayer::builder(limiter).rule("api")).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{base}/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "1");
    let body = response.text().await.unwrap();
    assert_eq!(body.lines().count(), 100);
    assert!(body.ends_with("chunk 099\n"));
    assert_eq!(get(&client, base, "/stream", &[]).await.status, 200);
    let denied = get(&client, base, "/stream", &[]).await;
    assert_eq!(denied.status, 429);
}

/// Serves the layer without connect info: it cannot know the peer.
async fn serve_without_peers(layer: RateLimitLayer) -> std::net::SocketAddr {
    let app = app(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Issue 15 (17): a server without connect info cannot tell clients apart. By default that
/// is a 500 naming the fix, not one bucket for everybody.
#[tokio::test]
async fn without_a_peer_address_ip_rules_answer_500_naming_the_fix() {
    let (limiter, _clock) = limiter([per_minute("api", 2), per_minute("everyone", 5)]);
    limiter
        .add_rule(per_minute("everyone", 5).scope(ratethrottle::Scope::Global))
        .unwrap();
    let base = serve_without_peers(
        RateLimitLayer::builder(limiter.clone())
            .rule("api")
            .layer()
            .unwrap(),
    )
    .await;
    let reply = get(&client_from("127.0.2.4"), base, "/", &[]).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert!(
        reply
            .body
            .contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("UnknownPeer::SharedBucket"),
        "{}",
        reply.body
    );
    // A rule that needs no address still works.
    let base = serve_without_peers(
        RateLimitLayer::builder(limiter.clone())
            .rule("everyone")
            .layer()
            .unwrap(),
    )
    .await;
    assert_eq!(
        get(&client_from("127.0.2.4"), base, "/", &[]).await.status,
        200
    );
}

#[tokio::test]
async fn a_shared_bucket_for_unknown_peers_is_an_explicit_choice() {
    let (limiter, _clock) = limiter([per_minute("api", 2)]);
    let base = serve_without_peers(
        RateLimitLayer::builder(limiter.clone())
            .rule("api")
            .unknown_peer(UnknownPeer::SharedBucket)
            .layer()
            .unwrap(),
    )
    .await;
    let client = client_from("127.0.2.4");
    assert_eq!(statuses(&client, base, "/", &[], 3).await, [200, 200, 429]);
    assert_eq!(remaining(&limiter, "0.0.0.0", "api").await, 0);
}

#[tokio::test]
async fn disabled_policies_let_everything_through() {
    let (limiter, _clock) = limiter([per_minute("api", 1)]);
    let base = serve(
        RateLimitLayer::builder(limiter.clone())
            .rule("api")
            .enabled(false),
    )
    .await;
    let client = client_from("127.0.2.5");
    assert_eq!(statuses(&client, base, "/", &[], 3).await, [200; 3]);
    assert_eq!(limiter.metrics().total_requests, 0);
}

#[test]
fn configuration_mistakes_are_reported_by_build() {
    let (limiter, _clock) = limiter([per_minute("api", 1), per_minute("login", 1)]);
    let error = |builder: PolicyBuilder<_, Parts>| builder.build().unwrap_err().to_string();
    let builder = || RateLimitLayer::builder(limiter.clone());
    assert_eq!(
        error(builder()),
        "no rule is applied: call .rule(\"name\") or .rule_for(route, \"name\") on the builder"
    );
    assert_eq!(
        error(builder().rule("apii")),
        "unknown rule \"apii\"; known rules: api, login"
    );
    assert_eq!(
        error(builder().rule_for("login", "login")),
        "route prefix \"login\" must start with '/'"
    );
    assert_eq!(
        error(
            builder()
                .rule("api")
                .client_ip(ClientIp::new().trust_proxies(["10.0.0.300"]))
        ),
        "trusted proxy \"10.0.0.300\" is not an IP address or CIDR network (like \"10.0.0.0/8\" \
         or \"fd00::/8\")"
    );
    assert_eq!(
        error(builder().rule("api").user_header("x user")),
        "\"x user\" is not a valid HTTP header name"
    );
    let _: Limiter = limiter;
}

#[test]
fn layers_services_and_middleware_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RateLimitLayer>();
    send_sync::<RateLimitLayer<ratethrottle_redis::RedisStore>>();
    send_sync::<ratethrottle_http::RateLimitService<Router>>();
    send_sync::<ratethrottle_http::actix::RateLimit<ratethrottle_redis::RedisStore>>();
}

/// Issue 15 (19): a layer built with `follow` applies `global.enabled` and
/// `global.headers_enabled` of the file, and follows its reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_following_the_configuration_applies_its_reloads() {
    use ratethrottle_config::{Config, ConfigWatcher, Environment};
    let yaml = |enabled: bool, headers: bool| {
        format!(
            "global:\n  enabled: {enabled}\n  headers_enabled: {headers}\nrules:\n  - name: api\n    limit: 2\n    window: 60\n    block_duration: 0\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ratethrottle.yaml");
    std::fs::write(&path, yaml(true, false)).unwrap();
    let config = Config::load_with_env(&path, &Environment::empty()).unwrap();
    let limiter = config.build_limiter().await.unwrap();
    let watcher =
        ConfigWatcher::spawn(&path, config, limiter.clone(), Environment::empty()).unwrap();
    let layer = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .follow(&watcher)
        .layer()
        .unwrap();
    let base = serve_axum(app(layer)).await;
    let client = client_from("127.0.3.1");
    let first = get(&client, base, "/", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("x-ratelimit-remaining"),
        "",
        "headers_enabled: false"
    );
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, yaml(false, true)).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while watcher.status().applied == 0 {
        assert!(std::time::Instant::now() < deadline, "no reload");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Disabled now: nothing is limited.
    assert_eq!(
        statuses(&client, base, "/", &[], 4).await,
        [200, 200, 200, 200]
    );
}

/// Issue 18: `global.log_violations` (the original logs every violation at INFO) takes
/// effect through `.config(&config)`; a layer built without a configuration logs none.
#[tokio::test]
async fn violations_are_logged_when_the_configuration_says_so() {
    use ratethrottle_config::{Config, Environment};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    for (log_violations, expected) in [(true, 1), (false, 0)] {
        let yaml = format!(
            "global:\n  log_violations: {log_violations}\nrules:\n  - name: api\n    limit: 1\n    window: 60\n    block_duration: 0\n"
        );
        let config = Config::from_yaml(&yaml, "test.yaml", &Environment::empty()).unwrap();
        let limiter = config.build_limiter().await.unwrap();
        let layer = RateLimitLayer::builder(limiter)
            .rule("api")
            .config(&config)
            .layer()
            .unwrap();
        let base = serve_axum(app(layer)).await;
        let client = client_from("127.0.3.9");
        assert_eq!(statuses(&client, base, "/", &[], 2).await, [200, 429]);
        let text = String::from_utf8(std::mem::take(&mut *logs.0.lock().unwrap())).unwrap();
        let lines = text
            .lines()
            .filter(|l| l.contains("Rate limit exceeded: 127.0.3.9 for rule api"))
            .count();
        assert_eq!(lines, expected, "log_violations: {log_violations}\n{text}");
    }
}

/// Issue 18: a policy over [`ratethrottle_http::PlainRequest`]s (what the Python adapters
/// hand over) gives every request the answer the axum layer gives: the same codes, the same
/// rate-limit headers, with stacked rules, user keys and key overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_get_the_answers_the_axum_layer_gives() {
    use ratethrottle::clock::{ManualClock, Nanos};
    use ratethrottle_http::{PlainRequest, PolicyBuilder};

    let clock = ManualClock::at(Nanos::from_nanos(1_767_225_600_000_000_000));
    let limiter = || {
        let limiter = Limiter::builder().clock(clock.clone()).build();
        limiter.add_rule(per_minute("per_ip", 3)).unwrap();
        limiter
            .add_rule(per_minute("everyone", 5).scope(Scope::Global))
            .unwrap();
        limiter
            .add_rule(per_minute("per_user", 2).scope(Scope::User))
            .unwrap();
        limiter
    };
    let layer = RateLimitLayer::builder(limiter())
        .rule("per_ip")
        .rule("everyone")
        .rule_for("/health", "per_user")
        .user_header("x-user")
        .layer()
        .unwrap();
    let base = serve_axum(app(layer)).await;
    let policy = PolicyBuilder::<_, PlainRequest>::new(limiter())
        .rule("per_ip")
        .rule("everyone")
        .rule_for("/health", "per_user")
        .build()
        .unwrap();
    let requests: [(&str, &str, Option<&str>); 8] = [
        ("127.0.4.1", "/", None),
        ("127.0.4.1", "/", None),
        ("127.0.4.2", "/health", Some("alice")),
        ("127.0.4.1", "/", None),
        ("127.0.4.1", "/", None),
        ("127.0.4.3", "/health", Some("alice")),
        ("127.0.4.3", "/health", Some("bob")),
        ("127.0.4.4", "/", None),
    ];
    for (at, (ip, path, user)) in requests.into_iter().enumerate() {
        let headers: Vec<(&str, &str)> = user.map(|u| ("x-user", u)).into_iter().collect();
        let reply = get(&client_from(ip), base, path, &headers).await;
        let mut request = PlainRequest::new("GET", path).peer(ip.parse().unwrap());
        request.user = user.map(str::to_owned);
        let decided = policy.decide(&request).await;
        let (code, rate_headers): (u16, Vec<(String, String)>) = match &decided.rejection {
            Some(rejection) => (
                rejection.status,
                rejection
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .collect(),
            ),
            None => (
                200,
                decided
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .collect(),
            ),
        };
        let ours: Vec<String> = reply
            .rate_headers()
            .into_iter()
            .filter(|line| {
                line.starts_with("x-ratelimit")
                    || line.starts_with("ratelimit")
                    || line.starts_with("retry-after")
            })
            .collect();
        let plain: Vec<String> = ours
            .iter()
            .map(|line| {
                let name = line.split(':').next().unwrap();
                let value = &rate_headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("request {at}: no {name} in {rate_headers:?}"))
                    .1;
                format!("{name}: {value}")
            })
            .collect();
        assert_eq!(code, reply.status, "request {at} ({ip} {path} {user:?})");
        assert_eq!(plain, ours, "request {at}");
        assert!(decided.status.is_some(), "request {at}");
    }
    // A key function's key replaces the address for IP-scoped rules: peers that share it
    // share one allowance.
    let keyed_limiter = Limiter::builder().clock(clock.clone()).build();
    keyed_limiter.add_rule(per_minute("per_ip", 3)).unwrap();
    let keyed_policy = PolicyBuilder::<_, PlainRequest>::new(keyed_limiter)
        .rule("per_ip")
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for peer in ["127.0.4.5", "127.0.4.6", "127.0.4.7", "127.0.4.8"] {
        let mut keyed = PlainRequest::new("GET", "/").peer(peer.parse().unwrap());
        keyed.client_key = Some("tenant-7".to_owned());
        answers.push(keyed_policy.decide_now(&keyed).unwrap());
    }
    let codes: Vec<u16> = answers
        .iter()
        .map(|a| a.rejection.as_ref().map_or(200, |r| r.status))
        .collect();
    assert_eq!(codes, [200, 200, 200, 429]);
    let (status, identifier) = answers[3].status.clone().unwrap();
    assert_eq!((status.allowed, identifier.as_str()), (false, "tenant-7"));
}

/// Issue 19: `ddos_protection` in the configuration takes effect through `.config`: a client
/// found suspicious three times in five minutes is blacklisted (403) while a normal client
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddos_protection_from_the_configuration_blocks_an_attacker() {
    use ratethrottle_config::{Config, Environment};
    // No user agent scores 0.1, which these settings call suspicious.
    let yaml = "ddos_protection:\n  enabled: true\n  suspicious_threshold: 0.1\n  auto_block: true\n  block_duration: 60\nrules:\n  - name: api\n    limit: 100\n    window: 60\n";
    let config = Config::from_yaml(yaml, "test.yaml", &Environment::empty()).unwrap();
    let limiter = config.build_limiter().await.unwrap();
    let layer = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .config(&config)
        .layer()
        .unwrap();
    let base = serve_axum(app(layer)).await;
    let attacker = client_from("127.0.5.1");
    let codes = [
        get(&attacker, base, "/", &[]).await.status,
        get(&attacker, base, "/", &[]).await.status,
        get(&attacker, base, "/", &[]).await.status,
        get(&attacker, base, "/", &[]).await.status,
    ];
    assert_eq!(codes, [200, 200, 403, 403]);
    assert!(limiter.is_blacklisted("127.0.5.1").await.unwrap());
    let browser = client_from("127.0.5.2");
    for _ in 0..5 {
        let reply = get(&browser, base, "/", &[("user-agent", "Mozilla/5.0")]).await;
        assert_eq!(reply.status, 200);
    }
    // Without `ddos_protection.enabled` nothing is analysed.
    let quiet = Config::from_yaml(
        "ddos_protection:\n  enabled: false\n  suspicious_threshold: 0.1\nrules:\n  - name: api\n    limit: 100\n    window: 60\n",
        "test.yaml",
        &Environment::empty(),
    )
    .unwrap();
    let layer = RateLimitLayer::builder(quiet.build_limiter().await.unwrap())
        .rule("api")
        .config(&quiet)
        .layer()
        .unwrap();
    let base = serve_axum(app(layer)).await;
    let client = client_from("127.0.5.3");
    assert_eq!(statuses(&client, base, "/", &[], 5).await, [200; 5]);
}

/// Issue 20: the configuration's `adaptive` section takes effect: its rule, bound to a route,
/// limits each client at its learned limit (a new client: 10 × 1.75 × 0.5 = 8), exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_rule_limits_each_client_at_its_learned_limit() {
    use ratethrottle_config::{Config, Environment};
    let yaml = "adaptive:\n  enabled: true\n  base_limit: 10\n  window: 60\nrules:\n  - name: api\n    limit: 100\n    window: 60\n";
    let config = Config::from_yaml(yaml, "test.yaml", &Environment::empty()).unwrap();
    let limiter = config.build_limiter().await.unwrap();
    let layer = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .rule_for("/users", "adaptive")
        .config(&config)
        .layer()
        .unwrap();
    let prometheus = ratethrottle_http::prometheus::PrometheusMetrics::new(&limiter);
    prometheus.watch_policy(layer.policy());
    let base = serve_axum(app(layer)).await;
    let client = client_from("127.0.6.1");
    let mut codes = Vec::new();
    for n in 0..9 {
        let reply = get(&client, base, "/users/7", &[]).await;
        codes.push(reply.status);
        if n == 0 {
            assert_eq!(reply.header("x-ratelimit-limit"), "8");
            assert_eq!(reply.header("x-ratelimit-remaining"), "7");
        }
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 200, 200, 200, 429]);
    // Other routes and other clients are not affected.
    assert_eq!(get(&client, base, "/", &[]).await.status, 200);
    let other = client_from("127.0.6.2");
    assert_eq!(get(&other, base, "/users/7", &[]).await.status, 200);
    let metrics = limiter.metrics();
    let adaptive = metrics.rules.iter().find(|r| r.rule == "adaptive").unwrap();
    assert_eq!((adaptive.allowed, adaptive.denied), (9, 1));
    // The learning is in the Prometheus figures too.
    let text = prometheus.encode();
    for line in [
        "ratethrottle_adaptive_checks_total 10",
        "ratethrottle_adaptive_profiles 2.0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

#[tokio::test]
async fn an_axum_app_serves_the_layers_decisions_as_prometheus_metrics() {
    use ratethrottle_http::prometheus::PrometheusMetrics;
    let (limiter, _clock) = limiter([per_minute("api", 2)]);
    let metrics = PrometheusMetrics::new(&limiter);
    let layer = RateLimitLayer::builder(limiter)
        .rule("api")
        .prometheus(metrics.decisions().clone())
        .layer()
        .unwrap();
    let base = serve_axum(app(layer).merge(metrics.router())).await;
    let alice = client_from("127.0.0.2");
    assert_eq!(statuses(&alice, base, "/", &[], 3).await, [200, 200, 429]);
    let scrape = get(&alice, base, "/metrics", &[]).await;
    assert_eq!(scrape.status, 200, "served beside the layer's routes");
    assert!(
        scrape
            .header("content-type")
            .starts_with("application/openmetrics-text")
    );
    for line in [
        "ratethrottle_total_hits_total{rule=\"api\"} 3",
        "ratethrottle_near_limit_total{rule=\"api\"} 1",
        "ratethrottle_over_limit_total{rule=\"api\"} 1",
        "ratethrottle_store_errors_total 0",
    ] {
        assert!(
            scrape.body.lines().any(|l| l == line),
            "{line} in\n{}",
            scrape.body
        );
    }
}
