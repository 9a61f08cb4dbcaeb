//! The tower `Layer`: axum, hyper and anything else built on `http` 1.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

#[cfg(feature = "axum")]
use axum::extract::{ConnectInfo, MatchedPath};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use ratethrottle::store::{MemoryStore, Store};
use ratethrottle::{Limiter, Status};

use crate::Error;
use crate::policy::{Admission, Pending, Policy, PolicyBuilder, RequestView, sealed};
use crate::response::{HeaderSink, HeaderStyle, RejectionResponse, write_headers};

/// The body of a response through [`RateLimitService`]: the handler's, untouched (streaming
/// included), or the rejection's.
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// A tower [`Layer`](tower_layer::Layer) limiting requests with a [`Policy`]. Cheap to clone.
///
/// ```
/// use axum::{Router, routing::get};
/// use ratethrottle::{Limiter, Rule};
/// use ratethrottle_http::RateLimitLayer;
/// use std::time::Duration;
///
/// let limiter = Limiter::in_memory();
/// limiter.add_rule(Rule::new("api", 100, Duration::from_secs(60)))?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(RateLimitLayer::builder(limiter).rule("api").layer()?);
/// // Serve with `app.into_make_service_with_connect_info::<std::net::SocketAddr>()`
/// // so the layer sees client addresses.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RateLimitLayer<S: Store = MemoryStore> {
    policy: Arc<Policy<S, Parts>>,
}

impl<S: Store> Clone for RateLimitLayer<S> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            policy: self.policy.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for RateLimitLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S: Store> RateLimitLayer<S> {
    /// A builder for the layer's policy; finish with
    /// [`layer`](PolicyBuilder::layer).
    pub fn builder(limiter: Limiter<S>) -> PolicyBuilder<S, Parts> {
        PolicyBuilder::new(limiter)
    }

    /// The layer enforcing `policy`.
    pub fn new(policy: Policy<S, Parts>) -> Self {
        RateLimitLayer {
            policy: Arc::new(policy),
        }
    }

    /// The policy it enforces.
    pub fn policy(&self) -> &Policy<S, Parts> {
        &self.policy
    }
}

impl<S: Store> PolicyBuilder<S, Parts> {
    /// Builds the policy into a tower layer.
    pub fn layer(self) -> Result<RateLimitLayer<S>, Error> {
        Ok(RateLimitLayer::new(self.build()?))
    }
}

impl<S: Store, Inner> tower_layer::Layer<Inner> for RateLimitLayer<S> {
    type Service = RateLimitService<Inner, S>;

    fn layer(&self, inner: Inner) -> Self::Service {
        RateLimitService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around another: rejections are answered here, other
/// requests go to the inner service and get rate-limit headers on the way back.
pub struct RateLimitService<Inner, S: Store = MemoryStore> {
    inner: Inner,
    policy: Arc<Policy<S, Parts>>,
}

impl<Inner: Clone, S: Store> Clone for RateLimitService<Inner, S> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<Inner, S: Store> std::fmt::Debug for RateLimitService<Inner, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<Inner, S: Store> RateLimitService<Inner, S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &Inner {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> Inner {
        self.inner
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<Inner, S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>>
    for RateLimitService<Inner, S>
where
    Inner: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    Inner::Future: Send,
    S: Store,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Inner::Error;
    type Future = ResponseFuture<Inner::Future, ResBody, Inner::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        if self.policy.limiter().store().answers_at_once() {
            // The memory store: decide here and call the inner service directly.
            let admission = self.policy.admit_now(&parts);
            let request = Request::from_parts(parts, body);
            return respond(&mut self.inner, &self.policy, admission, request);
        }
        // The clone may not be ready; the instance that was is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        ResponseFuture::Boxed {
            future: Box::pin(async move {
                let admission = policy.admit(&parts).await;
                let request = Request::from_parts(parts, body);
                respond(&mut inner, &policy, admission, request).await
            }),
        }
    }
}

/// The response to a request decided without waiting.
fn respond<Inner, S, ReqBody, ResBody>(
    inner: &mut Inner,
    policy: &Arc<Policy<S, Parts>>,
    admission: Admission,
    request: Request<ReqBody>,
) -> ResponseFuture<Inner::Future, ResBody, Inner::Error>
where
    Inner: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    Inner::Future: Send + 'static,
    S: Store,
    ResBody: Send + 'static,
{
    let pending = match admission {
        Admission::Reject(rejection) => {
            return ResponseFuture::Rejected {
                response: Some(rejection_response(rejection)),
            };
        }
        Admission::Pass => None,
        Admission::Admit(pending) => Some(pending),
    };
    let future = inner.call(request);
    match pending {
        Some(pending) if !pending.is_settled() => {
            let policy = policy.clone();
            ResponseFuture::Boxed {
                future: Box::pin(async move { settled(&policy, pending, future).await }),
            }
        }
        pending => ResponseFuture::Inner {
            future,
            headers: pending.and_then(Pending::into_headers),
            style: policy.header_style(),
        },
    }
}

/// The response of an admitted request whose decision waits for it: counted if `deduct_when`
/// says so, with the headers of the result.
async fn settled<S, B, E>(
    policy: &Policy<S, Parts>,
    pending: Pending,
    response: impl Future<Output = Result<Response<B>, E>>,
) -> Result<Response<ResponseBody<B>>, E>
where
    S: Store,
{
    let mut response = response.await?;
    let code = response.status().as_u16();
    if let Some(status) = policy.settle(pending, code).await {
        add_status_headers(response.headers_mut(), &status, policy.header_style());
    }
    Ok(response.map(Either::Left))
}

pin_project_lite::pin_project! {
    /// The future of [`RateLimitService`]'s response.
    #[project = ResponseFutureProjection]
    pub enum ResponseFuture<F, B, E> {
        /// Admitted: the inner service's response, plus these headers.
        Inner {
            #[pin]
            future: F,
            headers: Option<Status>,
            style: HeaderStyle,
        },
        /// Rejected without calling the inner service.
        Rejected { response: Option<Response<Full<Bytes>>> },
        /// Waiting on the store (or on the response, to count it).
        Boxed { future: BoxFuture<Result<Response<ResponseBody<B>>, E>> },
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResponseFuture::Inner { .. } => "ResponseFuture::Inner",
            ResponseFuture::Rejected { .. } => "ResponseFuture::Rejected",
            ResponseFuture::Boxed { .. } => "ResponseFuture::Boxed",
        })
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProjection::Inner {
                future,
                headers,
                style,
            } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                if let Some(status) = headers.take() {
                    add_status_headers(response.headers_mut(), &status, *style);
                }
                Poll::Ready(Ok(response.map(Either::Left)))
            }
            ResponseFutureProjection::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response.map(Either::Right))),
                // Polled again after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
            ResponseFutureProjection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

/// An `http` response for `rejection`.
fn rejection_response(rejection: RejectionResponse) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(rejection.body)));
    *response.status_mut() =
        StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    write_headers(response.headers_mut(), rejection.headers, true);
    response
}

/// Adds `status`'s headers of `style` where the response has none of that name: one
/// allocation for all values, sliced without copying.
fn add_status_headers(headers: &mut HeaderMap, status: &Status, style: HeaderStyle) {
    let (text, fields) = status.header_values().into_parts();
    let text = Bytes::from(text);
    headers.reserve(6);
    for (name, range) in fields.filter(|(name, _)| style.includes(name)) {
        if let (Some(name), Ok(value)) = (
            header_name(name),
            HeaderValue::from_maybe_shared(text.slice(range)),
        ) {
            headers.entry(name).or_insert(value);
        }
    }
}

impl HeaderSink for HeaderMap {
    fn set(&mut self, name: &str, value: String, replace: bool) -> bool {
        let (Some(name), Ok(value)) = (header_name(name), HeaderValue::try_from(value)) else {
            return false;
        };
        if replace {
            self.insert(name, value);
        } else {
            self.entry(name).or_insert(value);
        }
        true
    }
}

const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The header name; the ones `Status::headers` uses are constants.
fn header_name(name: &str) -> Option<HeaderName> {
    Some(match name {
        "X-RateLimit-Limit" => X_RATELIMIT_LIMIT,
        "X-RateLimit-Remaining" => X_RATELIMIT_REMAINING,
        "X-RateLimit-Reset" => X_RATELIMIT_RESET,
        "Retry-After" => http::header::RETRY_AFTER,
        "RateLimit-Policy" => RATELIMIT_POLICY,
        "RateLimit" => RATELIMIT,
        "content-type" => http::header::CONTENT_TYPE,
        other => HeaderName::try_from(other).ok()?,
    })
}

impl sealed::Sealed for Parts {}

impl RequestView for Parts {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    /// axum's `MatchedPath` (feature `axum`); `None` otherwise.
    fn route(&self) -> Option<Cow<'_, str>> {
        #[cfg(feature = "axum")]
        {
            self.extensions
                .get::<MatchedPath>()
                .map(|route| Cow::Borrowed(route.as_str()))
        }
        #[cfg(not(feature = "axum"))]
        {
            None
        }
    }

    fn header_values(&self, name: &'static str) -> impl Iterator<Item = &[u8]> {
        self.headers.get_all(name).iter().map(HeaderValue::as_bytes)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(HeaderValue::as_bytes)
    }

    /// axum's `ConnectInfo<SocketAddr>` (feature `axum`), or a `SocketAddr` another layer
    /// inserted.
    fn peer(&self) -> Option<IpAddr> {
        let extensions = &self.extensions;
        #[cfg(feature = "axum")]
        if let Some(ConnectInfo(addr)) = extensions.get::<ConnectInfo<SocketAddr>>() {
            return Some(addr.ip());
        }
        extensions.get::<SocketAddr>().map(SocketAddr::ip)
    }
}
