//! The HTTP API over loopback, with reqwest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ratethrottle::store::MemoryStore;
use ratethrottle::{Limiter, Rule};
use ratethrottle_server::{Server, ServerOptions};
use serde_json::{Value, json};

async fn start(
    token: Option<&str>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    start_with(token, |server| server).await
}

/// A server over rule `api` (3 a minute), changed by `with` before it runs.
async fn start_with(
    token: Option<&str>,
    with: impl FnOnce(Server<MemoryStore>) -> Server<MemoryStore>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("api", 3, Duration::from_secs(60)).block_duration(Duration::ZERO))
        .unwrap();
    let options = ServerOptions {
        http: Some("127.0.0.1:0".parse().unwrap()),
        token: token.map(str::to_owned),
        ..ServerOptions::default()
    };
    let server = with(Server::bind(limiter, &options).await.unwrap());
    let address = server.http_address();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (address, stop, task)
}

fn url(address: SocketAddr, path: &str) -> String {
    format!("http://{address}{path}")
}

async fn post(address: SocketAddr, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(address, path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn checks_peeks_rules_and_metrics() {
    let (address, stop, task) = start(None).await;
    let health = reqwest::get(url(address, "/healthcheck")).await.unwrap();
    assert_eq!(health.text().await.unwrap(), "OK");
    let check = json!({"rule": "api", "identifier": "10.0.0.1"});
    for remaining in [2, 1, 0] {
        let response = post(address, "/v1/check", check.clone()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-ratelimit-remaining"],
            remaining.to_string()
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["allowed"], true);
        assert_eq!(body["remaining"], remaining);
        assert_eq!(body["headers"]["X-RateLimit-Limit"], "3");
    }
    let denied: Value = post(address, "/v1/check", check.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (denied["allowed"].clone(), denied["verdict"].clone()),
        (json!(false), json!("limited"))
    );
    assert!(denied["retry_after"].as_f64().unwrap() > 0.0);
    let peeked: Value = post(address, "/v1/peek", check.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(peeked["remaining"], 0);
    let other: Value = post(
        address,
        "/v1/peek",
        json!({"rule": "api", "identifier": "b"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(other["remaining"], 3, "a peek takes nothing");
    let costly = json!({"rule": "api", "identifier": "c", "cost": 2});
    let body: Value = post(address, "/v1/check", costly)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["remaining"], 1);

    let rules: Value = reqwest::get(url(address, "/v1/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rules["rules"][0]["name"], "api");
    assert_eq!(rules["rules"][0]["window"], 60.0);
    let metrics: Value = reqwest::get(url(address, "/v1/metrics"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metrics["total_requests"], 5);
    assert_eq!(metrics["blocked_requests"], 1);
    assert_eq!(metrics["rules"][0]["allowed"], 4);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bad_requests_get_problem_json() {
    let (address, _stop, _task) = start(None).await;
    let cases = [
        ("/v1/check", "not json", 400, "Bad Request"),
        ("/v1/check", r#"{"rule": "api"}"#, 400, "Bad Request"),
        (
            "/v1/check",
            r#"{"rule": "api", "identifier": "x", "cots": 2}"#,
            400,
            "Bad Request",
        ),
        (
            "/v1/check",
            r#"{"rule": "nope", "identifier": "x"}"#,
            404,
            "Unknown Rule",
        ),
        (
            "/v1/check",
            r#"{"rule": "api", "identifier": "x", "cost": 0}"#,
            400,
            "Bad Request",
        ),
        (
            "/v1/check",
            r#"{"rule": "api", "identifier": "x", "cost": 4}"#,
            400,
            "Bad Request",
        ),
        (
            "/v1/lists/greylist",
            r#"{"identifier": "x"}"#,
            404,
            "Unknown List",
        ),
        (
            "/v1/lists/whitelist",
            r#"{"identifier": "x", "duration": 5}"#,
            400,
            "Bad Request",
        ),
        (
            "/v1/lists/blacklist",
            r#"{"identifier": "x", "duration": -1}"#,
            400,
            "Bad Request",
        ),
        ("/nowhere", "{}", 404, "Not Found"),
    ];
    for (path, body, status, title) in cases {
        let response = reqwest::Client::new()
            .post(url(address, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path} {body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path} {body}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status);
        if !title.is_empty() {
            assert_eq!(problem["title"], title, "{path} {body}");
        }
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn lists_are_managed_and_enforced() {
    let (address, _stop, _task) = start(None).await;
    let added = post(
        address,
        "/v1/lists/blacklist",
        json!({"identifier": "bad", "duration": 60}),
    )
    .await;
    assert_eq!(added.status(), 201);
    let body: Value = post(
        address,
        "/v1/check",
        json!({"rule": "api", "identifier": "bad"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (body["allowed"].clone(), body["verdict"].clone()),
        (json!(false), json!("blacklisted"))
    );
    let entries: Value = reqwest::get(url(address, "/v1/lists/blacklist"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entries["entries"][0]["identifier"], "bad");
    assert!(entries["entries"][0]["expires_at"].as_f64().unwrap() > 0.0);
    let client = reqwest::Client::new();
    let removed = client
        .delete(url(address, "/v1/lists/blacklist/bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let again = client
        .delete(url(address, "/v1/lists/blacklist/bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    post(address, "/v1/lists/whitelist", json!({"identifier": "vip"})).await;
    for _ in 0..5 {
        let body: Value = post(
            address,
            "/v1/check",
            json!({"rule": "api", "identifier": "vip"}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(body["verdict"], "whitelisted");
    }
}

#[tokio::test]
async fn a_token_guards_the_api_but_not_the_healthcheck() {
    let (address, _stop, _task) = start(Some("s3cret")).await;
    let client = reqwest::Client::new();
    let open = client
        .get(url(address, "/healthcheck"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("s3cret"),
    ] {
        let mut request = client
            .post(url(address, "/v1/lists/blacklist"))
            .json(&json!({"identifier": "x"}));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let entries = client
        .get(url(address, "/v1/lists/blacklist"))
        .send()
        .await
        .unwrap();
    assert_eq!(entries.status(), 401, "reads need it too");
    // The dashboard's page is open; its figures (they name clients) need the token.
    let page = client.get(url(address, "/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let events = client
        .get(url(address, "/dashboard/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 401);
    let events = client
        .get(url(address, "/dashboard/events"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let allowed = client
        .post(url(address, "/v1/lists/blacklist"))
        .bearer_auth("s3cret")
        .json(&json!({"identifier": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 201);
}

#[tokio::test]
async fn metrics_are_a_prometheus_target() {
    let (address, _stop, _task) = start(None).await;
    for _ in 0..4 {
        post(
            address,
            "/v1/check",
            json!({"rule": "api", "identifier": "m"}),
        )
        .await;
    }
    post(
        address,
        "/v1/check",
        json!({"rule": "api", "identifier": "n", "cost": 2}),
    )
    .await;
    post(address, "/v1/lists/blacklist", json!({"identifier": "bad"})).await;
    post(address, "/v1/lists/whitelist", json!({"identifier": "vip"})).await;
    post(
        address,
        "/v1/check",
        json!({"rule": "api", "identifier": "bad"}),
    )
    .await;
    post(
        address,
        "/v1/check",
        json!({"rule": "api", "identifier": "vip"}),
    )
    .await;
    let response = reqwest::get(url(address, "/metrics")).await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    // m: 3 admitted (the third at 3 of 3 used: near the limit), 1 refused; n: 2 units,
    // 2 of 3 used: not near (80 % is 2.4); bad blacklisted; vip whitelisted.
    expect_samples(
        &text,
        &[
            ("ratethrottle_total_hits_total", "api", 8.0),
            ("ratethrottle_over_limit_total", "api", 1.0),
            ("ratethrottle_near_limit_total", "api", 1.0),
            ("ratethrottle_blocked_total", "api", 1.0),
            ("ratethrottle_whitelisted_total", "api", 1.0),
            ("ratethrottle_store_errors_total", "api", 0.0),
            ("ratethrottle_store_circuit_open", "api", 0.0),
            ("ratethrottle_rules", "api", 1.0),
        ],
    );
    assert!(
        text.contains("ratethrottle_decision_seconds_count{rule=\"api\"} 7"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

/// The sum of the samples of `name` (those of `rule`, for a series per rule) in a scrape,
/// parsed by a Prometheus text parser.
fn sample(text: &str, name: &str, rule: &str) -> f64 {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get("rule").is_none_or(|r| r == rule))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Asserts the value of each `(metric, rule, value)` in a scrape.
fn expect_samples(text: &str, expected: &[(&str, &str, f64)]) {
    for &(name, rule, value) in expected {
        assert_eq!(sample(text, name, rule), value, "{name} {rule:?} in {text}");
    }
}

async fn scrape(address: SocketAddr) -> String {
    reqwest::get(url(address, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Whether each of `checks` of rule `api` by `identifier` was admitted, and the last answer.
async fn admitted(address: SocketAddr, body: Value, checks: usize) -> (Vec<bool>, Value) {
    let mut answers = Vec::new();
    let mut last = Value::Null;
    for _ in 0..checks {
        last = post(address, "/v1/check", body.clone())
            .await
            .json()
            .await
            .unwrap();
        answers.push(last["allowed"] == true);
    }
    (answers, last)
}

#[tokio::test]
async fn ddos_protection_blacklists_a_flooding_identifier() {
    use ratethrottle_protect::ddos::{DdosProtection, DdosSettings};
    let mut settings = DdosSettings::default();
    // No user agent (0.1) is suspicious here; three suspicious requests in 5 minutes block.
    settings.suspicious_threshold = 0.1;
    settings.block_duration = Duration::from_secs(60);
    let ddos = Arc::new(DdosProtection::new(settings).unwrap());
    let (address, _stop, _task) = start_with(None, |server| server.ddos(ddos)).await;
    let flood = json!({"rule": "api", "identifier": "203.0.113.9", "endpoint": "/login"});
    let (answers, last) = admitted(address, flood, 4).await;
    assert_eq!(answers, [true, true, false, false]);
    assert_eq!(last["verdict"], "blacklisted", "{last}");
    let listed: Value = reqwest::get(url(address, "/v1/lists/blacklist"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["entries"][0]["identifier"], "203.0.113.9",
        "{listed}"
    );
    assert!(
        listed["entries"][0]["expires_at"].is_number(),
        "a block expires"
    );
    // A check that does not describe a client's request is not scored.
    let batch = json!({"rule": "api", "identifier": "user:42"});
    assert_eq!(admitted(address, batch, 3).await.0, [true, true, true]);
    let text = scrape(address).await;
    expect_samples(
        &text,
        &[
            ("ratethrottle_ddos_analyzed_total", "", 4.0),
            ("ratethrottle_ddos_blocks_total", "", 1.0),
            ("ratethrottle_ddos_tracked_clients", "", 1.0),
            ("ratethrottle_blocked_total", "api", 2.0),
        ],
    );
}

#[tokio::test]
async fn the_adaptive_rule_is_decided_at_each_identifiers_learned_limit() {
    use ratethrottle_protect::adaptive::{AdaptiveLimiter, AdaptiveSettings};
    let limiter = Limiter::in_memory();
    let mut settings = AdaptiveSettings::default();
    settings.base_limit = 10;
    let adaptive = Arc::new(AdaptiveLimiter::new(limiter.clone(), settings).unwrap());
    let options = ServerOptions {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerOptions::default()
    };
    let server = Server::bind(limiter, &options)
        .await
        .unwrap()
        .adaptive(adaptive);
    let address = server.http_address();
    tokio::spawn(server.run(std::future::pending()));
    // A new client: 10 × 1.75 (max multiplier) × 0.5 (trust) = 8.
    let peeked: Value = post(
        address,
        "/v1/peek",
        json!({"rule": "adaptive", "identifier": "new"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(peeked["limit"], 8, "{peeked}");
    let check = json!({"rule": "adaptive", "identifier": "new"});
    let (answers, last) = admitted(address, check, 9).await;
    assert_eq!(
        answers,
        [true, true, true, true, true, true, true, true, false]
    );
    assert_eq!(
        (last["limit"].as_u64(), last["verdict"].as_str()),
        (Some(8), Some("limited"))
    );
    let text = scrape(address).await;
    expect_samples(
        &text,
        &[
            ("ratethrottle_adaptive_checks_total", "", 9.0),
            ("ratethrottle_adaptive_profiles", "", 1.0),
            ("ratethrottle_over_limit_total", "adaptive", 1.0),
        ],
    );
}
