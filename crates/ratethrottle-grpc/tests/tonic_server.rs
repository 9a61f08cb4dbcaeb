//! The layer in front of a real tonic server over loopback, called by a tonic client. The
//! service is written out by hand (what tonic-build generates), so no `protoc` is needed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use ratethrottle::{Limiter, Rule, Strategy};
use ratethrottle_grpc::{GrpcLimit, GrpcLimitLayer};
use ratethrottle_http::ClientIp;
use tokio::sync::{Semaphore, mpsc};
use tonic::Code;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_prost::ProstCodec;
use tonic_types::StatusExt;

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Pong {
    #[prost(string, tag = "1")]
    text: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `test.Echo`: `Say` and `Shout` answer at once; `Wait` tells `entered` and waits for a
/// permit of `gate` (the concurrency test holds calls open with it).
#[derive(Clone)]
struct Echo {
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
}

struct Unary {
    echo: Echo,
    path: &'static str,
}

impl tonic::server::UnaryService<Ping> for Unary {
    type Response = Pong;
    type Future = BoxFuture<Result<tonic::Response<Pong>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Ping>) -> Self::Future {
        let (echo, path) = (self.echo.clone(), self.path);
        Box::pin(async move {
            if path == "/test.Echo/Wait" {
                let _ = echo.entered.send(());
                let _permit = echo.gate.acquire().await.expect("the gate stays open");
            }
            Ok(tonic::Response::new(Pong {
                text: request.into_inner().text,
            }))
        })
    }
}

/// `Count`: 100 messages, "0" to "99".
struct Count;

type Messages = Pin<Box<dyn tokio_stream::Stream<Item = Result<Pong, tonic::Status>> + Send>>;

impl tonic::server::ServerStreamingService<Ping> for Count {
    type Response = Pong;
    type ResponseStream = Messages;
    type Future = BoxFuture<Result<tonic::Response<Messages>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<Ping>) -> Self::Future {
        Box::pin(async {
            let messages = (0..100).map(|i| {
                Ok(Pong {
                    text: i.to_string(),
                })
            });
            Ok(tonic::Response::new(
                Box::pin(tokio_stream::iter(messages)) as Messages
            ))
        })
    }
}

impl<B> tower_service::Service<http::Request<B>> for Echo
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = match request.uri().path() {
            "/test.Echo/Say" => "/test.Echo/Say",
            "/test.Echo/Shout" => "/test.Echo/Shout",
            "/test.Echo/Wait" => "/test.Echo/Wait",
            "/test.Echo/Count" => {
                return Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Pong, Ping>::default());
                    Ok(grpc.server_streaming(Count, request).await)
                });
            }
            _ => {
                return Box::pin(async {
                    Ok(tonic::Status::unimplemented("no such method").into_http())
                });
            }
        };
        let echo = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Pong, Ping>::default());
            Ok(grpc.unary(Unary { echo, path }, request).await)
        })
    }
}

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

/// A server with `layer` on `address` (port 0: a free one); its address, and the gate and
/// the `entered` signals of `Wait`.
async fn serve<S: ratethrottle::store::Store>(
    layer: GrpcLimitLayer<S>,
    address: &str,
) -> (SocketAddr, Arc<Semaphore>, mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let local = listener.local_addr().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (entered, entered_rx) = mpsc::unbounded_channel();
    let echo = Echo {
        gate: Arc::clone(&gate),
        entered,
    };
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(echo)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (local, gate, entered_rx)
}

async fn connect(address: SocketAddr) -> Channel {
    let uri = match address {
        SocketAddr::V4(_) => format!("http://{address}"),
        SocketAddr::V6(v6) => format!("http://[{}]:{}", v6.ip(), v6.port()),
    };
    Endpoint::from_shared(uri).unwrap().connect().await.unwrap()
}

/// One unary call of `method` with extra metadata.
async fn call(
    channel: &Channel,
    method: &'static str,
    metadata: &[(&'static str, &str)],
) -> Result<tonic::Response<Pong>, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(Ping {
        text: "hi".to_owned(),
    });
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    client
        .unary(
            request,
            PathAndQuery::from_static(method),
            ProstCodec::<Ping, Pong>::default(),
        )
        .await
}

fn per_minute(name: &str, limit: u64) -> Rule {
    Rule::new(name, limit, Duration::from_secs(60))
        .strategy(Strategy::FixedWindow)
        .block_duration(Duration::ZERO)
}

const SAY: &str = "/test.Echo/Say";
const SHOUT: &str = "/test.Echo/Shout";
const WAIT: &str = "/test.Echo/Wait";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_call_at_ten_a_minute_is_told_when_to_retry() {
    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("grpc", 10)).unwrap();
    let layer = GrpcLimit::builder(limiter).rule("grpc").build().unwrap();
    let (address, _, _) = serve(layer, "127.0.0.1:0").await;
    let channel = connect(address).await;
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
    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("say", 2)).unwrap();
    limiter.add_rule(per_minute("echo", 5)).unwrap();
    let layer = GrpcLimit::builder(limiter)
        .method(SAY, "say")
        .unwrap()
        .method("/test.Echo", "echo")
        .unwrap()
        .build()
        .unwrap();
    let (address, _, _) = serve(layer, "127.0.0.1:0").await;
    let channel = connect(address).await;
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
    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("grpc", 1000)).unwrap();
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
    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("grpc", 2)).unwrap();
    let layer = GrpcLimit::builder(limiter.clone())
        .rule("grpc")
        .client_ip(ClientIp::new().trust_proxies(["10.0.0.0/8"]))
        .build()
        .unwrap();
    let (address, _, _) = serve(layer, "127.0.0.1:0").await;
    let channel = connect(address).await;
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
    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("grpc", 1)).unwrap();
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

    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("grpc", 1)).unwrap();
    let layer = GrpcLimit::builder(limiter)
        .rule("grpc")
        .key_metadata("x-api-key")
        .build()
        .unwrap();
    let (address, _, _) = serve(layer, "127.0.0.1:0").await;
    let channel = connect(address).await;
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
    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("grpc", 1000)).unwrap();
    limiter.add_rule(per_minute("stream", 50)).unwrap();
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
    let limiter = Limiter::in_memory();
    limiter.add_rule(per_minute("grpc", 1)).unwrap();
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
