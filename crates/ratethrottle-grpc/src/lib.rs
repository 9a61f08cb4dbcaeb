//! gRPC rate limiting for [tonic](https://docs.rs/tonic) servers: a tower layer deciding each
//! call with the HTTP crate's framework-neutral [`Policy`], so a call gets the same answer as
//! an HTTP request would.
//!
//! - **Whose limit:** the peer address (IPv6 per /64, trusted proxies' forwarded header read
//!   only behind them, as in `ratethrottle-http`), a metadata key, or a closure.
//! - **Which rule:** rules for every call, per service (`/pkg.Service`) or per method
//!   (`/pkg.Service/Method`).
//! - **Concurrency:** at most N calls in flight per client; one more is rejected at once, never
//!   queued (tower's `ConcurrencyLimit` queues). A call holds its slot until its response
//!   stream ends, however it ends.
//! - **Streams:** a rule's limit for the messages of each stream (`stream_messages`), each
//!   direction counted as the messages flow; the first message over it ends the stream with
//!   `RESOURCE_EXHAUSTED`.
//! - **Rejection:** `RESOURCE_EXHAUSTED` with `retry-after`, `grpc-retry-pushback-ms` and
//!   `x-ratelimit-limit/remaining/reset` metadata and a `google.rpc.RetryInfo` detail, so
//!   standard clients back off; `PERMISSION_DENIED` for a blacklisted client; `UNAVAILABLE`
//!   when the store fails and its fault policy is `fail_closed`.
//!
//! ```
//! use ratethrottle::{Limiter, Rule};
//! use ratethrottle_grpc::GrpcLimit;
//! use std::time::Duration;
//!
//! let limiter = Limiter::in_memory();
//! limiter.add_rule(Rule::new("grpc", 1000, Duration::from_secs(60)))?;
//! limiter.add_rule(Rule::new("search", 10, Duration::from_secs(60)))?;
//! let layer = GrpcLimit::builder(limiter)
//!     .rule("grpc")                                    // every call
//!     .method("/shop.Catalog/Search", "search")?       // and this method
//!     .concurrency(3)                                  // per client, rejected at once
//!     .build()?;
//! // tonic::transport::Server::builder().layer(layer).add_service(...)
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};
use ratethrottle::store::Store;
use ratethrottle::{HeaderValues, Limiter, Status};
use ratethrottle_http::{
    ClientIp, HeaderStyle, PlainRequest, PolicyBuilder, RejectionResponse, Route,
};
use ratethrottle_protect::slots::Slots;
use tonic::Code;
use tonic::body::Body;
use tonic::metadata::MetadataValue;
use tonic_types::{ErrorDetails, StatusExt};

mod body;
mod messages;

use body::Metered;
use messages::{MessageLimit, StreamRule};

pub use ratethrottle_http::Policy;

/// A mistake in the layer's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A method or service path that is not `/pkg.Service` or `/pkg.Service/Method`.
    #[error(
        "gRPC path {path:?} must be a service (\"/pkg.Service\") or a method (\"/pkg.Service/Method\")"
    )]
    InvalidPath {
        /// The path given.
        path: String,
    },
    /// A concurrency limit of 0.
    #[error("the concurrency limit per client must be at least 1")]
    ZeroConcurrency,
    /// The policy could not be built (no rule, an unknown rule, a bad proxy network, ...).
    #[error(transparent)]
    Policy(#[from] ratethrottle_http::Error),
}

/// A closure naming the client of a call.
type KeyFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// Who a call counts for, besides the peer address.
enum KeySource {
    /// The peer address (behind trusted proxies, the forwarded one).
    Peer,
    /// The value of a metadata key (the peer address when absent).
    Metadata(String),
    /// What a closure says (the peer address for `None`).
    Closure(KeyFn),
}

/// Entry point: [`GrpcLimit::builder`].
#[derive(Debug)]
pub struct GrpcLimit;

impl GrpcLimit {
    /// A builder checking calls with `limiter`.
    pub fn builder<S: Store>(limiter: Limiter<S>) -> GrpcLimitBuilder<S> {
        GrpcLimitBuilder {
            // Admitted calls carry `x-ratelimit-limit/remaining/reset` (the IETF `RateLimit`
            // headers are HTTP's); `policy(|p| p.header_style(..))` changes it.
            policy: PolicyBuilder::new(limiter).header_style(HeaderStyle::Legacy),
            client_ip: ClientIp::default(),
            key: KeySource::Peer,
            concurrency: None,
            stream_rule: None,
            errors: Vec::new(),
        }
    }
}

/// Builds a [`GrpcLimitLayer`].
#[must_use]
#[allow(missing_debug_implementations)]
pub struct GrpcLimitBuilder<S: Store> {
    policy: PolicyBuilder<S, PlainRequest>,
    client_ip: ClientIp,
    key: KeySource,
    concurrency: Option<u32>,
    stream_rule: Option<String>,
    errors: Vec<Error>,
}

impl<S: Store> GrpcLimitBuilder<S> {
    /// Applies the limiter's rule `rule` to every call.
    pub fn rule(mut self, rule: &str) -> Self {
        self.policy = self.policy.rule(rule);
        self
    }

    /// Applies `rule` to the calls of `path`: a service (`/pkg.Service`, all its methods) or
    /// one method (`/pkg.Service/Method`).
    pub fn method(mut self, path: &str, rule: &str) -> Result<Self, Error> {
        let segments: Vec<&str> = path.split('/').collect();
        let valid = matches!(segments.as_slice(), ["", service] | ["", service, _]
            if !service.is_empty() && !segments.last().is_some_and(|s| s.is_empty()));
        if !valid {
            return Err(Error::InvalidPath {
                path: path.to_owned(),
            });
        }
        self.policy = self.policy.rule_for(Route::prefix(path), rule);
        Ok(self)
    }

    /// Finds the client address as `client_ip` says (trusted proxies, forwarded header, IPv6
    /// prefix).
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip.clone();
        self.policy = self.policy.client_ip(client_ip);
        self
    }

    /// Counts calls for the value of the metadata key `name` (such as `x-api-key`), the peer
    /// address when a call has none.
    pub fn key_metadata(mut self, name: &str) -> Self {
        self.key = KeySource::Metadata(name.to_ascii_lowercase());
        self
    }

    /// Counts calls for what `key` says of the request (the peer address for `None`). A
    /// panic inside is caught: the call counts for its peer address.
    pub fn key_fn(
        mut self,
        key: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = KeySource::Closure(Arc::new(key));
        self
    }

    /// Allows at most `max` calls in flight per client; one more is rejected at once with
    /// `RESOURCE_EXHAUSTED` (never queued). A call holds its slot until its response ends.
    pub fn concurrency(mut self, max: u32) -> Self {
        if max == 0 {
            self.errors.push(Error::ZeroConcurrency);
        }
        self.concurrency = Some(max);
        self
    }

    /// Limits the messages of each stream to the limiter's rule `rule`, per stream and per
    /// direction, counted as they flow (a unary call is one message each way): the first
    /// message the server sends over it ends the response with `RESOURCE_EXHAUSTED`; the
    /// first the client sends over it reaches the handler as a `RESOURCE_EXHAUSTED` error
    /// instead of the message.
    pub fn stream_messages(mut self, rule: &str) -> Self {
        self.stream_rule = Some(rule.to_owned());
        self
    }

    /// The rest of the policy's settings (shadow mode, header style, costs, ...), by the
    /// HTTP crate's builder.
    pub fn policy(
        mut self,
        change: impl FnOnce(PolicyBuilder<S, PlainRequest>) -> PolicyBuilder<S, PlainRequest>,
    ) -> Self {
        self.policy = change(self.policy);
        self
    }

    /// Applies the configuration's `grpc` section when enabled — its `grpc` rule to every
    /// call, `concurrent_requests` per client, `grpc_stream` to each stream's messages (the
    /// rules come with [`Config::rules`](ratethrottle_config::Config::rules)) — and the
    /// policy's settings from it (global switches, DDoS protection, analytics, adaptive).
    /// Feature `config`.
    #[cfg(feature = "config")]
    pub fn config(mut self, config: &ratethrottle_config::Config) -> Self
    where
        S: ratethrottle::store::KeyValueStore,
    {
        use ratethrottle_config::GrpcConfig;
        self.policy = self.policy.config(config);
        let grpc = &config.grpc;
        if !grpc.enabled {
            return self;
        }
        let concurrency = u32::try_from(grpc.concurrent_requests).unwrap_or(u32::MAX);
        self.rule(GrpcConfig::CALL_RULE)
            .stream_messages(GrpcConfig::STREAM_RULE)
            .concurrency(concurrency)
    }

    /// The layer, or the first mistake.
    pub fn build(mut self) -> Result<GrpcLimitLayer<S>, Error> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        let policy = self.policy.build()?;
        let stream_rule = match self.stream_rule {
            Some(name) => {
                let limiter = policy.limiter().clone();
                let rule = limiter.rule(&name).ok_or_else(|| {
                    let known = limiter.rules().into_iter().map(|r| r.name).collect();
                    ratethrottle_http::Error::Limiter(ratethrottle::Error::UnknownRule {
                        rule: name.clone(),
                        known,
                    })
                })?;
                Some(StreamRule::new(
                    &rule,
                    Arc::new(move || limiter.now().as_nanos()),
                ))
            }
            None => None,
        };
        Ok(GrpcLimitLayer {
            shared: Arc::new(Shared {
                policy,
                client_ip: self.client_ip,
                key: self.key,
                concurrency: self.concurrency.map(Slots::new),
                stream_rule,
            }),
        })
    }
}

struct Shared<S: Store> {
    policy: Policy<S, PlainRequest>,
    client_ip: ClientIp,
    key: KeySource,
    concurrency: Option<Slots>,
    stream_rule: Option<StreamRule>,
}

impl<S: Store> Shared<S> {
    /// What the policy reads of a call.
    fn describe(&self, parts: &Parts) -> PlainRequest {
        let mut request = PlainRequest::new("POST", parts.uri.path());
        request.peer = peer_of(parts);
        if self.client_ip.trusts_proxies() {
            let name = self.client_ip.forwarded_header().name();
            for value in parts.headers.get_all(name) {
                if let Ok(value) = value.to_str() {
                    request.headers.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        request.client_key = match &self.key {
            KeySource::Peer => None,
            KeySource::Metadata(name) => parts
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            KeySource::Closure(key) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| key(parts)))
                    .unwrap_or_else(|_| {
                        tracing::error!(
                            "the gRPC key closure panicked; the call counts for its peer"
                        );
                        None
                    })
            }
        };
        request
    }

    /// The client a call counts for under the concurrency limit: its key, or its address.
    fn client_of(&self, request: &PlainRequest) -> String {
        match &request.client_key {
            Some(key) => key.clone(),
            None => {
                let values = request.headers.iter().map(|(_, value)| value.as_bytes());
                self.client_ip
                    .resolve(request.peer, values)
                    .map_or_else(|| "unknown".to_owned(), |key| key.as_str().to_owned())
            }
        }
    }
}

/// The peer address tonic's transport (or a `SocketAddr` extension) gives.
fn peer_of(parts: &Parts) -> Option<IpAddr> {
    if let Some(info) = parts
        .extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
    {
        return info.remote_addr().map(|addr| addr.ip());
    }
    parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The layer: wrap a tonic server's services (`Server::builder().layer(layer)`). Cheap to
/// clone.
pub struct GrpcLimitLayer<S: Store> {
    shared: Arc<Shared<S>>,
}

impl<S: Store> std::fmt::Debug for GrpcLimitLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcLimitLayer")
            .field(
                "concurrency",
                &self.shared.concurrency.as_ref().map(Slots::max),
            )
            .finish_non_exhaustive()
    }
}

impl<S: Store> Clone for GrpcLimitLayer<S> {
    fn clone(&self) -> Self {
        GrpcLimitLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Store> GrpcLimitLayer<S> {
    /// The policy deciding the calls.
    pub fn policy(&self) -> &Policy<S, PlainRequest> {
        &self.shared.policy
    }

    /// Calls in flight for `client` (its address, or its key), under the concurrency limit.
    pub fn in_flight(&self, client: &str) -> u32 {
        self.shared
            .concurrency
            .as_ref()
            .map_or(0, |c| c.held(client))
    }
}

impl<S: Store, Inner> tower_layer::Layer<Inner> for GrpcLimitLayer<S> {
    type Service = GrpcLimitService<S, Inner>;

    fn layer(&self, inner: Inner) -> Self::Service {
        GrpcLimitService {
            shared: Arc::clone(&self.shared),
            inner,
        }
    }
}

/// The service [`GrpcLimitLayer`] makes.
#[allow(missing_debug_implementations)]
pub struct GrpcLimitService<S: Store, Inner> {
    shared: Arc<Shared<S>>,
    inner: Inner,
}

impl<S: Store, Inner: Clone> Clone for GrpcLimitService<S, Inner> {
    fn clone(&self) -> Self {
        GrpcLimitService {
            shared: Arc::clone(&self.shared),
            inner: self.inner.clone(),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, Inner, ReqBody> tower_service::Service<Request<ReqBody>> for GrpcLimitService<S, Inner>
where
    S: Store,
    Inner:
        tower_service::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    Inner::Future: Send + 'static,
    ReqBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Inner::Error;
    type Future = BoxFuture<Result<Response<Body>, Inner::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone may not be ready; the instance that was is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let described = shared.describe(&parts);
            let policy = &shared.policy;
            let decided = match policy.decide_now(&described) {
                Some(decided) => decided,
                None => policy.decide(&described).await,
            };
            if let Some(rejection) = decided.rejection {
                let status = decided.status.as_ref().map(|(status, _)| status);
                return Ok(rejected(&rejection, status).into_http());
            }
            let permit = match &shared.concurrency {
                Some(concurrency) => match concurrency.acquire(&shared.client_of(&described)) {
                    Some(permit) => Some(permit),
                    None => return Ok(too_many_in_flight(concurrency.max()).into_http()),
                },
                None => None,
            };
            let body = match &shared.stream_rule {
                // Requests are metered too (client- and bidi-streaming calls).
                Some(rule) => Body::new(Metered::request(
                    Body::new(body),
                    MessageLimit::new(rule.clone()),
                )),
                None => Body::new(body),
            };
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            for (name, value) in decided.headers {
                let name = HeaderValues::lower_case(name).map(http::HeaderName::from_static);
                if let (Some(name), Ok(value)) = (name, value.try_into()) {
                    response.headers_mut().insert(name, value);
                }
            }
            let limit = shared.stream_rule.clone().map(MessageLimit::new);
            Ok(if permit.is_some() || limit.is_some() {
                response.map(|body| Body::new(Metered::new(body, permit, limit)))
            } else {
                response
            })
        })
    }
}

/// The gRPC status for a refused call: the code for the HTTP answer the policy gave, a
/// message, retry metadata and, when the client may retry, a `RetryInfo` detail.
pub fn rejected(rejection: &RejectionResponse, status: Option<&Status>) -> tonic::Status {
    let (code, message) = match rejection.status {
        403 => (
            Code::PermissionDenied,
            "the client is blacklisted".to_owned(),
        ),
        503 => (
            Code::Unavailable,
            "rate limiting is unavailable (its store failed) and fails closed".to_owned(),
        ),
        500 => (
            Code::Internal,
            "the server cannot tell clients apart: the peer address is unknown".to_owned(),
        ),
        _ => (
            Code::ResourceExhausted,
            match status {
                Some(status) => format!(
                    "rate limit exceeded: rule {} allows {} per {}s",
                    status.rule,
                    status.limit,
                    status.window.as_secs_f64()
                ),
                None => "rate limit exceeded".to_owned(),
            },
        ),
    };
    let retry = status.and_then(|s| s.retry_after);
    let mut answer = match retry {
        Some(wait) => tonic::Status::with_error_details(
            code,
            message,
            ErrorDetails::with_retry_info(Some(wait)),
        ),
        None => tonic::Status::new(code, message),
    };
    let metadata = answer.metadata_mut();
    if let Some(wait) = retry {
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        metadata.insert("grpc-retry-pushback-ms", MetadataValue::from(millis));
    }
    // `retry-after` and `x-ratelimit-*` as the HTTP middleware writes them (the reset in Unix
    // seconds, as on admitted calls).
    for (name, value) in status.map(Status::headers).unwrap_or_default() {
        if let (Some(name), Ok(value)) = (HeaderValues::lower_case(name), value.parse())
            && (name == "retry-after" || name.starts_with("x-ratelimit-"))
        {
            metadata.insert(name, value);
        }
    }
    answer
}

/// The status for a call over its client's concurrency limit: try again very soon.
fn too_many_in_flight(max: u32) -> tonic::Status {
    let wait = Duration::from_millis(100);
    let mut status = tonic::Status::with_error_details(
        Code::ResourceExhausted,
        format!("too many calls in flight: at most {max} per client"),
        ErrorDetails::with_retry_info(Some(wait)),
    );
    status
        .metadata_mut()
        .insert("grpc-retry-pushback-ms", MetadataValue::from(100u64));
    status
}
