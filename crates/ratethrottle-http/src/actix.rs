//! The actix-web middleware (feature `actix`).

use std::borrow::Cow;
use std::future::{Future, Ready, ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use ratethrottle::Limiter;
use ratethrottle::store::{MemoryStore, Store};

use crate::Error;
use crate::policy::{Admission, Policy, PolicyBuilder, RequestView, sealed};
use crate::response::{HeaderSink, RejectionResponse, write_headers};

/// actix-web middleware limiting requests with a [`Policy`]; `App::wrap` it.
///
/// ```
/// use actix_web::{App, web};
/// use ratethrottle::{Limiter, Rule};
/// use ratethrottle_http::actix::RateLimit;
/// use std::time::Duration;
///
/// let limiter = Limiter::in_memory();
/// limiter.add_rule(Rule::new("api", 100, Duration::from_secs(60)))?;
/// let rate_limit = RateLimit::builder(limiter).rule("api").middleware()?;
/// let app = App::new()
///     .wrap(rate_limit)
///     .route("/", web::get().to(|| async { "hello" }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RateLimit<S: Store = MemoryStore> {
    policy: Arc<Policy<S, HttpRequest>>,
}

impl<S: Store> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        RateLimit {
            policy: self.policy.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S: Store> RateLimit<S> {
    /// A builder for the middleware's policy; finish with
    /// [`middleware`](PolicyBuilder::middleware).
    pub fn builder(limiter: Limiter<S>) -> PolicyBuilder<S, HttpRequest> {
        PolicyBuilder::new(limiter)
    }

    /// The middleware enforcing `policy`.
    pub fn new(policy: Policy<S, HttpRequest>) -> Self {
        RateLimit {
            policy: Arc::new(policy),
        }
    }

    /// The policy it enforces.
    pub fn policy(&self) -> &Policy<S, HttpRequest> {
        &self.policy
    }
}

impl<S: Store> PolicyBuilder<S, HttpRequest> {
    /// Builds the policy into actix-web middleware.
    pub fn middleware(self) -> Result<RateLimit<S>, Error> {
        Ok(RateLimit::new(self.build()?))
    }
}

impl<Svc, B, S> Transform<Svc, ServiceRequest> for RateLimit<S>
where
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    S: Store,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RateLimitMiddleware<Svc, S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: Svc) -> Self::Future {
        ready(Ok(RateLimitMiddleware {
            service: Rc::new(service),
            policy: self.policy.clone(),
        }))
    }
}

/// The service [`RateLimit`] wraps around the app's.
pub struct RateLimitMiddleware<Svc, S: Store = MemoryStore> {
    service: Rc<Svc>,
    policy: Arc<Policy<S, HttpRequest>>,
}

impl<Svc, S: Store> std::fmt::Debug for RateLimitMiddleware<Svc, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitMiddleware")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<Svc, B, S> Service<ServiceRequest> for RateLimitMiddleware<Svc, S>
where
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    S: Store,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let pending = match policy.admit(request.request()).await {
                Admission::Pass => {
                    return Ok(service.call(request).await?.map_into_left_body());
                }
                Admission::Reject(rejection) => {
                    let (request, _payload) = request.into_parts();
                    let response = rejection_response(rejection);
                    return Ok(ServiceResponse::new(request, response).map_into_right_body());
                }
                Admission::Admit(pending) => pending,
            };
            let mut response = service.call(request).await?;
            if let Some(status) = policy.settle(pending, response.status().as_u16()).await {
                let values = status.header_values();
                let style = policy.header_style();
                let headers = values
                    .iter()
                    .filter(|(name, _)| style.includes(name))
                    .map(|(n, v)| (Cow::Borrowed(n), v.to_owned()));
                write_headers(response.headers_mut(), headers, false);
            }
            Ok(response.map_into_left_body())
        })
    }
}

fn rejection_response(rejection: RejectionResponse) -> HttpResponse {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let mut response = HttpResponse::with_body(status, rejection.body).map_into_boxed_body();
    write_headers(response.headers_mut(), rejection.headers, true);
    response
}

impl HeaderSink for HeaderMap {
    fn set(&mut self, name: &str, value: String, replace: bool) -> bool {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
        else {
            return false;
        };
        if replace || !self.contains_key(&name) {
            self.insert(name, value);
        }
        true
    }
}

impl sealed::Sealed for HttpRequest {}

impl RequestView for HttpRequest {
    fn method(&self) -> &str {
        HttpRequest::method(self).as_str()
    }

    fn path(&self) -> &str {
        HttpRequest::path(self)
    }

    fn route(&self) -> Option<Cow<'_, str>> {
        self.match_pattern().map(Cow::Owned)
    }

    fn header_values(&self, name: &'static str) -> impl Iterator<Item = &[u8]> {
        self.headers().get_all(name).map(HeaderValue::as_bytes)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().get(name).map(HeaderValue::as_bytes)
    }

    fn peer(&self) -> Option<IpAddr> {
        self.peer_addr().map(|addr| addr.ip())
    }
}
