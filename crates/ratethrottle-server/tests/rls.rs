//! The Envoy rate limit service over loopback, driven by a tonic client of the same proto,
//! with envoyproxy/ratelimit's README examples rewritten as tests.

use std::sync::Arc;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use ratethrottle::Limiter;
use ratethrottle_server::{RlsConfig, Server, ServerOptions};
use tonic::transport::Channel;

const EXAMPLES: &[&str] = &[
    // The reference README's first example.
    "domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: minute
      requests_per_unit: 5
  - key: database
    value: default
    rate_limit:
      unit: minute
      requests_per_unit: 3
",
    // Its nested example: marketing messages 2 a day per number, any message 4 a day.
    "domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 2
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 4
",
    // Per-IP limits, a special address, an unlimited one, a prefix wildcard, shadow mode.
    "domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit:
      unit: minute
      requests_per_unit: 3
  - key: remote_address
    value: 50.0.0.5
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: remote_address
    value: 127.0.0.1
    rate_limit:
      unlimited: true
  - key: remote_address
    value: '10.1.*'
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: shadow
    shadow_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 1
",
    // replaces: a limit that replaces another when both match.
    "domain: replacing
descriptors:
  - key: route
    rate_limit:
      name: route_limit
      unit: minute
      requests_per_unit: 1
  - key: user
    rate_limit:
      replaces:
        - name: route_limit
      unit: minute
      requests_per_unit: 3
",
    // Beyond the reference: strategies, bursts, blocks and several limits on one descriptor.
    "domain: beyond
descriptors:
  - key: api_key
    rate_limits:
      - unit: second
        requests_per_unit: 100
        strategy: token_bucket
        burst: 150
      - unit: day
        requests_per_unit: 4
        strategy: sliding_window
  - key: login
    rate_limit:
      unit: minute
      requests_per_unit: 1
      block_duration: 600
",
];

async fn start() -> RateLimitServiceClient<Channel> {
    start_both().await.0
}

async fn start_both() -> (RateLimitServiceClient<Channel>, std::net::SocketAddr) {
    let mut config = RlsConfig::default();
    for (i, example) in EXAMPLES.iter().enumerate() {
        config.add(example, &format!("example {i}")).unwrap();
    }
    let options = ServerOptions {
        http: Some("127.0.0.1:0".parse().unwrap()),
        grpc: Some("127.0.0.1:0".parse().unwrap()),
        rls: Some(Arc::new(config)),
        ..ServerOptions::default()
    };
    let server = Server::bind(Limiter::in_memory(), &options).await.unwrap();
    let (address, http) = (server.grpc_address().unwrap(), server.http_address());
    tokio::spawn(server.run(std::future::pending()));
    let client = RateLimitServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    (client, http)
}

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(key, value)| Entry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
        ..RateLimitDescriptor::default()
    }
}

async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    domain: &str,
    descriptors: Vec<RateLimitDescriptor>,
    hits: u32,
) -> RateLimitResponse {
    client
        .should_rate_limit(RateLimitRequest {
            domain: domain.into(),
            descriptors,
            hits_addend: hits,
        })
        .await
        .unwrap()
        .into_inner()
}

/// How many of `n` requests of one descriptor are answered OK.
async fn admitted(
    client: &mut RateLimitServiceClient<Channel>,
    domain: &str,
    entries: &[(&str, &str)],
    n: usize,
) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let response = ask(client, domain, vec![descriptor(entries)], 0).await;
        ok += usize::from(response.overall_code == Code::Ok as i32);
    }
    ok
}

#[tokio::test]
async fn the_reference_examples() {
    let (mut client, http) = start_both().await;
    assert_eq!(
        admitted(&mut client, "mongo_cps", &[("database", "users")], 7).await,
        5
    );
    assert_eq!(
        admitted(&mut client, "mongo_cps", &[("database", "default")], 7).await,
        3
    );
    assert_eq!(
        admitted(&mut client, "mongo_cps", &[("database", "other")], 7).await,
        7,
        "no limit configured: OK"
    );
    // Nested: marketing to one number, 2 a day; any message to a number, 4 a day.
    let marketing = [("message_type", "marketing"), ("to_number", "2061111111")];
    assert_eq!(admitted(&mut client, "messaging", &marketing, 3).await, 2);
    let plain = [("to_number", "2061111111")];
    assert_eq!(admitted(&mut client, "messaging", &plain, 5).await, 4);
    assert_eq!(
        admitted(&mut client, "messaging", &[("to_number", "2062222222")], 5).await,
        4,
        "a wildcard value counts per value"
    );
    // Per IP.
    assert_eq!(
        admitted(
            &mut client,
            "edge_proxy_per_ip",
            &[("remote_address", "1.2.3.4")],
            5
        )
        .await,
        3
    );
    assert_eq!(
        admitted(
            &mut client,
            "edge_proxy_per_ip",
            &[("remote_address", "50.0.0.5")],
            3
        )
        .await,
        1
    );
    assert_eq!(
        admitted(
            &mut client,
            "edge_proxy_per_ip",
            &[("remote_address", "127.0.0.1")],
            20
        )
        .await,
        20
    );
    assert_eq!(
        admitted(
            &mut client,
            "edge_proxy_per_ip",
            &[("remote_address", "10.1.0.9")],
            4
        )
        .await,
        2
    );
    // Shadow mode: counted, answered OK.
    let shadow = ask(
        &mut client,
        "edge_proxy_per_ip",
        vec![descriptor(&[("shadow", "x")]); 1],
        3,
    )
    .await;
    assert_eq!(shadow.overall_code, Code::Ok as i32);
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = "ratethrottle_shadow_mode_total{rule=\"rls:edge_proxy_per_ip:shadow=*#0\"} 3";
    assert!(
        metrics.lines().any(|l| l == counted),
        "{counted} in {metrics}"
    );
}

#[tokio::test]
async fn statuses_limits_headers_hits_and_replaces() {
    let mut client = start().await;
    let users = descriptor(&[("database", "users")]);
    let response = ask(
        &mut client,
        "mongo_cps",
        vec![users.clone(), descriptor(&[("database", "none")])],
        2,
    )
    .await;
    assert_eq!(response.overall_code, Code::Ok as i32);
    let first = &response.statuses[0];
    assert_eq!(first.limit_remaining, 3, "hits_addend 2 of 5");
    let limit = first.current_limit.as_ref().unwrap();
    assert_eq!((limit.requests_per_unit, limit.unit), (5, 2));
    assert!(first.duration_until_reset.as_ref().unwrap().seconds <= 60);
    assert_eq!(response.statuses[1].code, Code::Ok as i32);
    assert!(response.statuses[1].current_limit.is_none());
    let headers: Vec<(&str, &str)> = response
        .response_headers_to_add
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert!(
        headers.contains(&("x-ratelimit-remaining", "3")),
        "{headers:?}"
    );
    // Over: the overall code and that descriptor's code.
    let response = ask(&mut client, "mongo_cps", vec![users.clone()], 4).await;
    assert_eq!(response.overall_code, Code::OverLimit as i32);
    assert_eq!(response.statuses[0].code, Code::OverLimit as i32);
    // Negative hits give units back.
    let mut back = users.clone();
    back.is_negative_hits = true;
    back.hits_addend = Some(envoy_types::pb::google::protobuf::UInt64Value { value: 1 });
    let response = ask(&mut client, "mongo_cps", vec![back], 0).await;
    assert_eq!(
        response.statuses[0].limit_remaining, 4,
        "2 taken (the 4 refused), 1 given back"
    );
    // replaces: with user in the same request, route's 1-a-minute limit gives way to 3.
    let both = || {
        vec![
            descriptor(&[("route", "/a")]),
            descriptor(&[("user", "u1")]),
        ]
    };
    let mut ok = 0;
    for _ in 0..4 {
        ok += usize::from(
            ask(&mut client, "replacing", both(), 0).await.overall_code == Code::Ok as i32,
        );
    }
    assert_eq!(ok, 3);
    assert_eq!(
        admitted(&mut client, "replacing", &[("route", "/b")], 3).await,
        1
    );
}

#[tokio::test]
async fn beyond_the_reference_several_limits_strategies_and_blocks() {
    let mut client = start().await;
    // A burst of 150 a second, and 4 a day (sliding_window): the day's limit is the tighter.
    assert_eq!(
        admitted(&mut client, "beyond", &[("api_key", "k")], 6).await,
        4
    );
    let response = ask(
        &mut client,
        "beyond",
        vec![descriptor(&[("api_key", "k2")])],
        0,
    )
    .await;
    assert_eq!(
        response.statuses[0].limit_remaining, 3,
        "the tighter limit is reported"
    );
    assert_eq!(
        response.statuses[0]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        4
    );
    // A block of 600 s after going over.
    assert_eq!(
        admitted(&mut client, "beyond", &[("login", "eve")], 3).await,
        1
    );
    let response = ask(
        &mut client,
        "beyond",
        vec![descriptor(&[("login", "eve")])],
        0,
    )
    .await;
    assert!(
        response.statuses[0]
            .duration_until_reset
            .as_ref()
            .unwrap()
            .seconds
            > 500
    );
}

#[tokio::test]
async fn malformed_requests_get_clear_errors() {
    let mut client = start().await;
    let cases = [
        (
            RateLimitRequest::default(),
            tonic::Code::InvalidArgument,
            "domain must not be empty",
        ),
        (
            RateLimitRequest {
                domain: "mongo_cps".into(),
                ..RateLimitRequest::default()
            },
            tonic::Code::InvalidArgument,
            "descriptor list must not be empty",
        ),
        (
            RateLimitRequest {
                domain: "nowhere".into(),
                descriptors: vec![descriptor(&[("a", "b")])],
                hits_addend: 0,
            },
            tonic::Code::NotFound,
            "unknown rate limit domain",
        ),
        (
            RateLimitRequest {
                domain: "mongo_cps".into(),
                descriptors: vec![RateLimitDescriptor::default()],
                hits_addend: 0,
            },
            tonic::Code::InvalidArgument,
            "at least one entry",
        ),
    ];
    for (request, code, message) in cases {
        let status = client.should_rate_limit(request).await.unwrap_err();
        assert_eq!(status.code(), code);
        assert!(status.message().contains(message), "{}", status.message());
    }
}

#[test]
fn bad_configurations_are_refused_with_their_place() {
    let mut config = RlsConfig::default();
    let cases = [
        (
            "domain: a\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: fortnight\n      requests_per_unit: 1\n",
            "t:5:7: descriptors[0].rate_limit: unit \"fortnight\"",
        ),
        (
            "domain: b\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n",
            "t: b k=*: requests_per_unit must be at least 1",
        ),
        (
            "domain: z\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 0}\n",
            "t:4:17: descriptors[0].rate_limit: requests_per_unit must be at least 1",
        ),
        (
            "domain: c\ndescriptors:\n  - key: k\n    rate_limt: {}\n",
            "t:4:5: descriptors[0]: unknown field `rate_limt`",
        ),
        ("domain: ''\n", "the domain must not be empty"),
        (
            "domain: e\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n      requests_per_unit: 1\n      strategy: fastest\n",
            "t:5:7: descriptors[0].rate_limit: unknown strategy \"fastest\"",
        ),
    ];
    for (text, expected) in cases {
        let error = config.add(text, "t").unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
    config.add("domain: x\n", "first").unwrap();
    let error = config.add("domain: x\n", "second").unwrap_err().to_string();
    assert!(error.contains("configured twice"), "{error}");
}

#[tokio::test]
async fn the_json_endpoint_answers_as_the_reference() {
    let (_, http) = start_both().await;
    let client = reqwest::Client::new();
    let ask = |body: serde_json::Value| {
        let client = client.clone();
        async move {
            let response = client
                .post(format!("http://{http}/json"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let request = serde_json::json!({
        "domain": "mongo_cps",
        "descriptors": [{"entries": [{"key": "database", "value": "default"}]}]
    });
    for _ in 0..3 {
        let (status, body) = ask(request.clone()).await;
        assert_eq!(
            (status, body["overallCode"].as_str()),
            (200, Some("OK")),
            "{body}"
        );
    }
    let (status, body) = ask(request).await;
    assert_eq!(status, 429);
    assert_eq!(body["overallCode"], "OVER_LIMIT");
    assert_eq!(body["statuses"][0]["currentLimit"]["requestsPerUnit"], 3);
    assert_eq!(body["statuses"][0]["currentLimit"]["unit"], "MINUTE");
    let (status, body) =
        ask(serde_json::json!({"domain": "nowhere", "descriptors": [{"entries": [{"key": "a"}]}]}))
            .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = ask(serde_json::json!({"domain": "mongo_cps"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn v1_check_takes_descriptors_and_answers_with_the_tightest_limit() {
    let (_, http) = start_both().await;
    let client = reqwest::Client::new();
    let check = |body: serde_json::Value| {
        let client = client.clone();
        async move {
            let response = client
                .post(format!("http://{http}/v1/check"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let remaining = response
                .headers()
                .get("x-ratelimit-remaining")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response.json::<serde_json::Value>().await.unwrap();
            (status, remaining, body)
        }
    };
    let request = serde_json::json!({
        "domain": "mongo_cps",
        "descriptors": [{"entries": [{"key": "database", "value": "default"}]}],
        "cost": 2
    });
    let (status, remaining, body) = check(request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["allowed"].as_bool(), body["limit"].as_u64()),
        (Some(true), Some(3))
    );
    assert_eq!(body["remaining"], 1, "2 of 3 used: {body}");
    assert_eq!(remaining.as_deref(), Some("1"), "{body}");
    assert_eq!(body["overallCode"], "OK");
    assert_eq!(body["statuses"][0]["currentLimit"]["requestsPerUnit"], 3);
    // A check is answered 200, over the limit or not, as by rule.
    let (status, _, body) = check(request).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["allowed"].as_bool(), body["overallCode"].as_str()),
        (Some(false), Some("OVER_LIMIT")),
        "{body}"
    );
    // A descriptor no limit matches: allowed, with nothing to report.
    let (_, _, body) = check(serde_json::json!({
        "domain": "mongo_cps",
        "descriptors": [{"entries": [{"key": "nothing"}]}]
    }))
    .await;
    assert_eq!(
        (body["allowed"].as_bool(), body.get("limit")),
        (Some(true), None),
        "{body}"
    );
    // Half of each form, or both: 400 naming the two forms.
    for bad in [
        serde_json::json!({"domain": "mongo_cps"}),
        serde_json::json!({"rule": "api"}),
        serde_json::json!({"domain": "mongo_cps", "descriptors": [], "identifier": "x"}),
    ] {
        let (status, _, body) = check(bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("descriptors"),
            "{body}"
        );
    }
    let (status, _, body) = check(
        serde_json::json!({"domain": "nowhere", "descriptors": [{"entries": [{"key": "a"}]}]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}
