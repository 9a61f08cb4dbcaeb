//! Servers, clients and a limiter on a manual clock.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use ratethrottle::clock::{ManualClock, Nanos};
use ratethrottle::store::Store;
use ratethrottle::{Limiter, Rule};

/// A Unix time on a minute boundary, so windows start with the test.
pub(crate) const START: u64 = 1_700_000_040;

/// A limiter with `rules`, whose clock stands at [`START`] until advanced.
pub(crate) fn limiter(rules: impl IntoIterator<Item = Rule>) -> (Limiter, ManualClock) {
    let clock = ManualClock::at(Nanos::from_secs(START));
    let limiter = Limiter::builder().clock(clock.clone()).build();
    for rule in rules {
        limiter.add_rule(rule).unwrap();
    }
    (limiter, clock)
}

/// `limit` per minute in fixed windows, no block: exact, easy numbers.
pub(crate) fn per_minute(name: &str, limit: u64) -> Rule {
    Rule::new(name, limit, Duration::from_secs(60))
        .strategy(ratethrottle::Strategy::FixedWindow)
        .block_duration(Duration::ZERO)
}

/// Serves `app` on a free loopback port (HTTP/1.1 and HTTP/2), with peer addresses.
pub(crate) async fn serve_axum(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    address
}

/// A client whose connections come from `ip` (any 127.x.y.z address works on loopback).
pub(crate) fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    /// A header's value, or `""`.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().unwrap())
    }

    /// The rate-limit headers, in a fixed order; absent ones left out.
    pub(crate) fn rate_headers(&self) -> Vec<String> {
        RATE_HEADERS
            .iter()
            .filter(|name| self.headers.contains_key(**name))
            .map(|name| format!("{name}: {}", self.header(name)))
            .collect()
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

const RATE_HEADERS: [&str; 6] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
    "ratelimit-policy",
    "ratelimit",
];

/// `GET base + path` with extra headers.
pub(crate) async fn get(
    client: &reqwest::Client,
    base: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    send(client.get(format!("http://{base}{path}")), headers).await
}

/// `POST base + path` with extra headers.
pub(crate) async fn post(
    client: &reqwest::Client,
    base: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    send(client.post(format!("http://{base}{path}")), headers).await
}

async fn send(mut request: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Reply {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// The statuses of `n` sequential GETs.
pub(crate) async fn statuses(
    client: &reqwest::Client,
    base: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(client, base, path, headers).await.status);
    }
    out
}

/// The 429 every server gives the fourth request of a minute under `per_minute("api", 3)`.
pub(crate) fn expected_429_headers() -> Vec<String> {
    let reset = START + 60;
    vec![
        "x-ratelimit-limit: 3".to_owned(),
        "x-ratelimit-remaining: 0".to_owned(),
        format!("x-ratelimit-reset: {reset}"),
        "retry-after: 60".to_owned(),
        "ratelimit-policy: \"api\";q=3;w=60".to_owned(),
        "ratelimit: \"api\";r=0;t=60".to_owned(),
    ]
}

/// Its body.
pub(crate) const EXPECTED_429_BODY: &str = r#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"rate limit \"api\" exceeded: 3 requests per 60s; retry in 60s","rule":"api","retry_after":60}"#;

/// The 403 of a blacklisted client.
pub(crate) const EXPECTED_403_BODY: &str =
    r#"{"type":"about:blank","title":"Forbidden","status":403,"detail":"this client is blocked"}"#;

/// What `rule` has left for `identifier`.
pub(crate) async fn remaining<S: Store>(limiter: &Limiter<S>, identifier: &str, rule: &str) -> u64 {
    limiter.peek(identifier, rule).await.unwrap().remaining
}

/// `(admitted, rejected)` of `tasks` tasks at once, each sending `each` GETs of `/` from
/// `ip`, task `i` to `bases[i % bases.len()]`. Any other status fails the test.
pub(crate) async fn from_many_tasks(
    bases: &[SocketAddr],
    ip: &'static str,
    tasks: usize,
    each: usize,
) -> (usize, usize) {
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let base = bases[i % bases.len()];
            tokio::spawn(async move { statuses(&client_from(ip), base, "/", &[], each).await })
        })
        .collect();
    let (mut admitted, mut rejected) = (0, 0);
    for handle in handles {
        for status in handle.await.unwrap() {
            match status {
                200 => admitted += 1,
                429 => rejected += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    (admitted, rejected)
}
