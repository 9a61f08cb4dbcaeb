//! The layer in front of a real tonic server over loopback, called by a tonic client.

use http::uri::PathAndQuery;
use ratethrottle::Limiter;
use ratethrottle_grpc::GrpcLimit;
use ratethrottle_http::ClientIp;
use tonic::Code;
use tonic_prost::ProstCodec;
use tonic_types::StatusExt;

#[allow(dead_code)]
mod support;

use support::*;

/// An in-memory limiter with these rules (name, limit per minute).
fn limiter_of(rules: &[(&str, u64)]) -> Limiter {
    let limiter = Limiter::in_memory();
    for (name, limit) in rules {
        limiter.add_rule(per_minute(name, *limit)).unwrap();
    }
    limiter
}

/// A channel to a server on loopback behind `layer`.
async fn through<S: ratethrottle::store::Store>(
    layer: ratethrottle_grpc::GrpcLimitLayer<S>,
) -> tonic::transport::Channel {
    connect(serve(layer, "127.0.0.1:0").await.0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_call_at_ten_a_minute_is_told_when_to_retry() {
    let limiter = limiter_of(&[("grpc", 10)]);
    let layer = GrpcLimit::builder(limiter).rule("grpc").build().unwrap();
    let channel = through(layer).await;
    for n in 0..10 {
        let response = call(&channel, SAY, &[]).await.expect("admitted");
        let remaining = response.metadata().get("x-ratelimit-remaining").unwrap();
        assert_eq!(remaining.to_str().unwrap(), (9 - n).to_string());
        assert_eq!(response.into_inner().text, "hi", "a unary handler works");
    }
    let refused = call(&channel, SAY, &[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let metadata = refused.metadata();
    let retry: u64 = metadata
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let pushback: u64 = metadata
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(pushback > 0 && pushback <= 60_000 && pushback.div_ceil(1000) == retry);
    assert_eq!(metadata.get("x-ratelimit-limit").unwrap(), "10");
    assert_eq!(metadata.get("x-ratelimit-remaining").unwrap(), "0");
    let info = refused
        .get_details_retry_info()
        .expect("a RetryInfo detail");
    let delay = info.retry_delay.expect("a delay");
    assert_eq!(delay.as_millis() as u64, pushback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_method_and_per_service_rules_apply_to_their_calls_only() {
    let limiter = limiter_of(&[("say", 2), ("echo", 5)]);
    let layer = GrpcLimit::builder(limiter)
        .method(SAY, "say")
        .unwrap()
        .method("/test.Echo", "echo")
        .unwrap()
        .build()
        .unwrap();
    let channel = through(layer).await;
    let mut codes = Vec::new();
    for method in [SAY, SAY, SAY, SHOUT, SHOUT, SHOUT, SHOUT] {
        codes.push(match call(&channel, method, &[]).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        });
    }
    // Say: 2 admitted, the third refused (a refused call spends no other rule's allowance).
    // Shout: the service's 5 allow 3 more.
    use Code::{Ok as Y, ResourceExhausted as N};
    assert_eq!(codes, [Y, Y, N, Y, Y, Y, N]);
    assert!(
        GrpcLimit::builder(Limiter::in_memory())
            .method("test.Echo", "x")
            .is_err()
    );
    assert!(
        GrpcLimit::builder(Limiter::in_memory())
            .method("/", "x")
            .is_err()
    );
    assert!(
        GrpcLimit::builder(Limiter::in_memory())
            .method("/a/b/c", "x")
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_concurrent_call_is_rejected_at_once_while_three_are_held() {
    let limiter = limiter_of(&[("grpc", 1000)]);
    let layer = GrpcLimit::builder(limiter)
        .rule("grpc")
        .concurrency(3)
        .build()
        .unwrap();
    let (address, gate, mut entered) = serve(layer.clone(), "127.0.0.1:0").await;
    let channel = connect(address).await;
    let held: Vec<_> = (0..3)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move { call(&channel, WAIT, &[]).await })
        })
        .collect();
    for _ in 0..3 {
        entered.recv().await.unwrap();
    }
    assert_eq!(layer.in_flight("127.0.0.1"), 3);
    let refused = call(&channel, SAY, &[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("at most 3"),
        "{}",
        refused.message()
    );
    assert!(refused.get_details_retry_info().is_some());
    gate.add_permits(3);
    for call in held {
        assert!(call.await.unwrap().is_ok());
    }
    // Slots come back as responses end.
    assert!(call(&channel, SAY, &[]).await.is_ok());
    assert_eq!(layer.in_flight("127.0.0.1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklisted_clients_are_denied_and_spoofed_forwarding_is_ignored() {
    let limiter = limiter_of(&[("grpc", 2)]);
    let layer = GrpcLimit::builder(limiter.clone())
        .rule("grpc")
        .client_ip(ClientIp::new().trust_proxies(["10.0.0.0/8"]))
        .build()
        .unwrap();
    let channel = through(layer).await;
    // 127.0.0.1 is not a trusted proxy: its x-forwarded-for is not believed.
    for spoof in ["198.51.100.1", "198.51.100.2"] {
        assert!(
            call(&channel, SAY, &[("x-forwarded-for", spoof)])
                .await
                .is_ok()
        );
    }
    let refused = call(&channel, SAY, &[("x-forwarded-for", "198.51.100.3")])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    limiter.blacklist_add("127.0.0.1", None).await.unwrap();
    let denied = call(&channel, SAY, &[]).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.get_details_retry_info().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_peers_get_their_own_key_per_64_and_metadata_keys_count_apart() {
    let limiter = limiter_of(&[("grpc", 1)]);
    let layer = GrpcLimit::builder(limiter.clone())
        .rule("grpc")
        .build()
        .unwrap();
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    drop(probe);
    let (address, _, _) = serve(layer, "[::1]:0").await;
    let channel = connect(address).await;
    assert!(call(&channel, SAY, &[]).await.is_ok());
    assert!(call(&channel, SAY, &[]).await.is_err());
    let violation = limiter.violations().pop().unwrap();
    assert_eq!(
        violation.identifier, "::/64",
        "1.4.0 counted every IPv6 peer as \"ipv6\""
    );

    let limiter = limiter_of(&[("grpc", 1)]);
    let layer = GrpcLimit::builder(limiter)
        .rule("grpc")
        .key_metadata("x-api-key")
        .build()
        .unwrap();
    let channel = through(layer).await;
    assert!(call(&channel, SAY, &[("x-api-key", "alpha")]).await.is_ok());
    assert!(call(&channel, SAY, &[("x-api-key", "beta")]).await.is_ok());
    assert!(
        call(&channel, SAY, &[("x-api-key", "alpha")])
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_is_cut_at_the_message_over_its_limit() {
    let limiter = limiter_of(&[("grpc", 1000), ("stream", 50)]);
    let layer = GrpcLimit::builder(limiter)
        .rule("grpc")
        .stream_messages("stream")
        .concurrency(5)
        .build()
        .unwrap();
    let (address, _, _) = serve(layer.clone(), "127.0.0.1:0").await;
    let channel = connect(address).await;
    for _ in 0..2 {
        // Each stream has its own count.
        let mut client = tonic::client::Grpc::new(channel.clone());
        client.ready().await.unwrap();
        let request = tonic::Request::new(Ping::default());
        let path = PathAndQuery::from_static("/test.Echo/Count");
        let mut stream = client
            .server_streaming(request, path, ProstCodec::<Ping, Pong>::default())
            .await
            .unwrap()
            .into_inner();
        let mut received = Vec::new();
        let end = loop {
            match stream.message().await {
                Ok(Some(pong)) => received.push(pong.text),
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        };
        assert_eq!(received.len(), 50, "messages 0 to 49, cut at message 51");
        assert_eq!(received.last().map(String::as_str), Some("49"));
        let status = end.expect("the stream ends with an error");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("rule stream"),
            "{}",
            status.message()
        );
    }
    assert_eq!(
        layer.in_flight("127.0.0.1"),
        0,
        "a cut stream frees its slot"
    );
    // A unary response is one message.
    assert!(call(&channel, SAY, &[]).await.is_ok());
    let limiter = limiter_of(&[("grpc", 1)]);
    let error = GrpcLimit::builder(limiter)
        .rule("grpc")
        .stream_messages("nope")
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains("unknown rule \"nope\""),
        "{error}"
    );
}

/// The `grpc` section 1.4.0's `ConfigManager` writes takes effect.
#[cfg(feature = "config")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configurations_grpc_section_takes_effect() {
    use ratethrottle_config::{Config, Environment};
    let yaml = "grpc:\n  enabled: true\n  requests_per_minute: 3\n  concurrent_requests: 2\n  stream_messages_per_minute: 10\n";
    let config = Config::from_yaml(yaml, "test.yaml", &Environment::empty()).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let limiter = config.build_limiter().await.unwrap();
    let layer = GrpcLimit::builder(limiter).config(&config).build().unwrap();
    let channel = through(layer).await;
    for _ in 0..3 {
        assert!(call(&channel, SAY, &[]).await.is_ok());
    }
    let refused = call(&channel, SAY, &[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("rule grpc allows 3 per 60s"),
        "{}",
        refused.message()
    );
    let error = Config::from_yaml(
        "grpc:\n  enabled: true\n  concurrent_requests: 0\n",
        "test.yaml",
        &Environment::empty(),
    )
    .unwrap_err();
    assert!(error.to_string().starts_with("test.yaml:3:"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_over_its_limit_reaches_the_handler_as_an_error() {
    let limiter = limiter_of(&[("grpc", 1000), ("stream", 50)]);
    let layer = GrpcLimit::builder(limiter)
        .rule("grpc")
        .stream_messages("stream")
        .build()
        .unwrap();
    let channel = through(layer).await;
    let send = |n: usize| {
        let channel = channel.clone();
        async move {
            let mut client = tonic::client::Grpc::new(channel);
            client.ready().await.unwrap();
            let messages = tokio_stream::iter((0..n).map(|_| Ping::default()));
            client
                .client_streaming(
                    tonic::Request::new(messages),
                    PathAndQuery::from_static("/test.Echo/Sum"),
                    ProstCodec::<Ping, Pong>::default(),
                )
                .await
        }
    };
    assert_eq!(send(50).await.unwrap().into_inner().text, "50");
    let refused = send(100).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("too many messages"),
        "{}",
        refused.message()
    );
}
