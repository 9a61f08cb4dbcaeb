//! A tonic service written out by hand (what tonic-build generates, so no `protoc` is
//! needed), a server with the layer in front of it on loopback, and a client's calls.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use ratethrottle::{Rule, Strategy};
use ratethrottle_grpc::GrpcLimitLayer;
use tokio::sync::{Semaphore, mpsc};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Ping {
    #[prost(string, tag = "1")]
    pub(crate) text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Pong {
    #[prost(string, tag = "1")]
    pub(crate) text: String,
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

/// `Sum`: reads every message the client sends; answers how many (or the stream's error).
struct Sum;

impl tonic::server::ClientStreamingService<Ping> for Sum {
    type Response = Pong;
    type Future = BoxFuture<Result<tonic::Response<Pong>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Ping>>) -> Self::Future {
        Box::pin(async move {
            let mut stream = request.into_inner();
            let mut count = 0;
            while stream.message().await?.is_some() {
                count += 1;
            }
            Ok(tonic::Response::new(Pong {
                text: count.to_string(),
            }))
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
            "/test.Echo/Sum" => {
                return Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Pong, Ping>::default());
                    Ok(grpc.client_streaming(Sum, request).await)
                });
            }
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
pub(crate) async fn serve<S: ratethrottle::store::Store>(
    layer: GrpcLimitLayer<S>,
    address: &str,
) -> (SocketAddr, Arc<Semaphore>, mpsc::UnboundedReceiver<()>) {
    let (listener, echo, gate, entered) = parts(address).await;
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(echo)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (local, gate, entered)
}

/// The same server without the layer.
pub(crate) async fn serve_bare(address: &str) -> SocketAddr {
    let (listener, echo, _, _) = parts(address).await;
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .add_service(echo)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    local
}

async fn parts(
    address: &str,
) -> (
    tokio::net::TcpListener,
    Echo,
    Arc<Semaphore>,
    mpsc::UnboundedReceiver<()>,
) {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (entered, entered_rx) = mpsc::unbounded_channel();
    let echo = Echo {
        gate: Arc::clone(&gate),
        entered,
    };
    (listener, echo, gate, entered_rx)
}

pub(crate) async fn connect(address: SocketAddr) -> Channel {
    let uri = match address {
        SocketAddr::V4(_) => format!("http://{address}"),
        SocketAddr::V6(v6) => format!("http://[{}]:{}", v6.ip(), v6.port()),
    };
    Endpoint::from_shared(uri).unwrap().connect().await.unwrap()
}

/// One unary call of `method` with extra metadata.
pub(crate) async fn call(
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

pub(crate) fn per_minute(name: &str, limit: u64) -> Rule {
    Rule::new(name, limit, Duration::from_secs(60))
        .strategy(Strategy::FixedWindow)
        .block_duration(Duration::ZERO)
}

pub(crate) const SAY: &str = "/test.Echo/Say";
pub(crate) const SHOUT: &str = "/test.Echo/Shout";
pub(crate) const WAIT: &str = "/test.Echo/Wait";
