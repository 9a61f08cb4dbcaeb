//! `ratethrottle serve`: the limiter as a service, for applications in any language. An HTTP
//! API decides checks (`POST /v1/check`, `POST /v1/peek`), lists the rules and the metrics,
//! and manages the whitelist and blacklist; `GET /healthcheck` answers `OK`; `GET /metrics` is
//! a Prometheus target (per rule `total_hits`, `over_limit`, `near_limit`, `blocked`,
//! `whitelisted`, the decision latency, the store's errors and circuit). With a bearer token
//! (compared in constant time) every `/v1` call must carry it.
//!
//! Errors are `application/problem+json` (RFC 9457): 400 for a malformed body, 401 without the
//! token, 404 for an unknown rule or list, 503 when the store cannot decide.
//!
//! ```no_run
//! use ratethrottle::{Limiter, Rule};
//! use ratethrottle_server::{Server, ServerOptions};
//! use std::time::Duration;
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let limiter = Limiter::in_memory();
//! limiter.add_rule(Rule::new("api", 100, Duration::from_secs(60))).unwrap();
//! let options = ServerOptions {
//!     token: Some("s3cret".into()),
//!     ..ServerOptions::default()
//! };
//! let server = Server::bind(limiter, &options).await?;
//! println!("HTTP API on http://{}", server.http_address());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use ratethrottle::store::{KeyValueStore, ListKind, Store};
use ratethrottle::{Error, HeaderValues, Limiter, Status};
use ratethrottle_protect::adaptive::AdaptiveLimiter;
use ratethrottle_protect::ddos::{DdosProtection, Screen};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

pub mod dashboard;
pub mod rls;

pub use ratethrottle_http::prometheus::{DecisionMetrics, PrometheusMetrics, StoreHealth};
pub use rls::{Rls, RlsConfig, RlsConfigError};

/// Where and how the server listens.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// The HTTP API's address (`127.0.0.1:8080` when unset).
    pub http: Option<SocketAddr>,
    /// The Envoy rate limit service's address (`127.0.0.1:8081` when unset); it runs when
    /// `rls` has domains.
    pub grpc: Option<SocketAddr>,
    /// The rate limit service's domains ([`RlsConfig`]).
    pub rls: Option<Arc<RlsConfig>>,
    /// A bearer token every `/v1` call must carry (none: open).
    pub token: Option<String>,
}

/// A bound server, ready to run.
pub struct Server<S: Store> {
    listener: tokio::net::TcpListener,
    app: App<S>,
    rls: Option<(tokio::net::TcpListener, Arc<Rls<S>>)>,
    /// Told `true` when the server stops (ends the dashboard's event streams).
    stop: tokio::sync::watch::Sender<bool>,
}

impl<S: Store> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("http", &self.http_address())
            .field("grpc", &self.grpc_address())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Server<S> {
    /// Binds the HTTP API of `limiter`, and the rate limit service when domains are given
    /// (their rules are added to `limiter`). Port 0 picks a free one.
    pub async fn bind(limiter: Limiter<S>, options: &ServerOptions) -> std::io::Result<Self> {
        let http = options
            .http
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let listener = tokio::net::TcpListener::bind(http).await?;
        let prometheus = PrometheusMetrics::new(&limiter);
        let metrics = prometheus.decisions().clone();
        let rls = match &options.rls {
            Some(config) if config.domains().next().is_some() => {
                for rule in config.rules() {
                    limiter
                        .add_rule(rule.clone())
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                }
                let grpc = options
                    .grpc
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081)));
                let listener = tokio::net::TcpListener::bind(grpc).await?;
                let rls = Rls::new(limiter.clone(), Arc::clone(config), metrics.clone());
                Some((listener, Arc::new(rls)))
            }
            _ => None,
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let app = App {
            limiter,
            token: options.token.clone(),
            prometheus,
            rls: rls.as_ref().map(|(_, rls)| Arc::clone(rls)),
            ddos: None,
            adaptive: None,
            view: Arc::new(dashboard::View::new(dashboard::Source::Local)),
            stopped,
        };
        Ok(Server {
            listener,
            app,
            rls,
            stop,
        })
    }

    /// Where the dashboard's figures come from ([`dashboard::Source::Local`], this server's
    /// limiter, unless told otherwise: a fleet's telemetry).
    pub fn dashboard_source(mut self, source: dashboard::Source) -> Self {
        self.app.view = Arc::new(dashboard::View::new(source));
        self
    }

    /// Decides the checks of `adaptive`'s rule (`POST /v1/check` and `/v1/peek` naming it) at
    /// each identifier's learned limit; its figures join `/metrics`. `adaptive` must be on
    /// the server's limiter.
    pub fn adaptive(mut self, adaptive: Arc<AdaptiveLimiter<S>>) -> Self {
        self.app.prometheus.watch_adaptive(Arc::clone(&adaptive));
        self.app.adaptive = Some(adaptive);
        self
    }

    /// The HTTP API's address.
    pub fn http_address(&self) -> SocketAddr {
        address_of(&self.listener)
    }

    /// The rate limit service's address, when it runs.
    pub fn grpc_address(&self) -> Option<SocketAddr> {
        self.rls.as_ref().map(|(listener, _)| address_of(listener))
    }

    /// Serves until `shutdown` completes, then stops accepting and lets the calls in flight
    /// finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = (self.stop, self.app.stopped.clone());
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        tokio::spawn(Arc::clone(&self.app.view).follow(self.app.limiter.clone(), stopped.clone()));
        let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let app = routes(Arc::new(self.app));
        let http = axum::serve(self.listener, app).with_graceful_shutdown(until(stopped.clone()));
        match self.rls {
            None => http.await,
            Some((listener, rls)) => {
                let grpc = tonic::transport::Server::builder()
                    .add_service(rls.service())
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener)
                            .with_nodelay(Some(true)),
                        until(stopped),
                    );
                let (http, grpc) = tokio::join!(http, grpc);
                http?;
                grpc.map_err(std::io::Error::other)
            }
        }
    }
}

impl<S: Store + KeyValueStore> Server<S> {
    /// Scores with `ddos` the identifier of every `POST /v1/check` by rule that describes a
    /// client's request: one with an `endpoint` or a `user_agent` (checks without them, whose
    /// identifier need not be a client, are not scored). An identifier it calls for blocking
    /// goes on the limiter's blacklist (on Redis, for the whole fleet), escalating for repeat
    /// offences. Its figures join `/metrics`.
    pub fn ddos(mut self, ddos: Arc<DdosProtection>) -> Self {
        self.app.prometheus.watch_ddos(Arc::clone(&ddos));
        self.app.ddos = Some(Screen::new(self.app.limiter.clone(), ddos));
        self
    }
}

fn address_of(listener: &tokio::net::TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: the signals a server drains on.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

struct App<S: Store> {
    limiter: Limiter<S>,
    token: Option<String>,
    prometheus: PrometheusMetrics,
    rls: Option<Arc<Rls<S>>>,
    /// Screens the identifiers checked by rule.
    ddos: Option<Screen>,
    /// Decides its rule's checks at learned limits.
    adaptive: Option<Arc<AdaptiveLimiter<S>>>,
    /// The dashboard's figures.
    view: Arc<dashboard::View>,
    /// Whether the server is stopping.
    stopped: tokio::sync::watch::Receiver<bool>,
}

fn routes<S: Store>(app: Arc<App<S>>) -> Router {
    let api = Router::new()
        .route("/v1/check", post(check::<S>))
        .route("/v1/peek", post(peek::<S>))
        .route("/v1/rules", get(rules::<S>))
        .route("/v1/metrics", get(metrics::<S>))
        .route(
            "/v1/lists/{list}",
            get(list_entries::<S>).post(list_add::<S>),
        )
        .route("/v1/lists/{list}/{identifier}", delete(list_remove::<S>))
        .route("/json", post(rls_json::<S>))
        // The dashboard's figures name clients: behind the token too.
        .route("/dashboard/events", get(dashboard_events::<S>));
    // Without a token there is nothing to check: no layer at all.
    let api = if app.token.is_some() {
        api.route_layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            authorize::<S>,
        ))
    } else {
        api
    };
    Router::new()
        .route("/healthcheck", get(|| async { "OK" }))
        .route("/metrics", get(prometheus::<S>))
        .route("/dashboard", get(dashboard::page))
        .merge(api)
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "Not Found", "no such endpoint") })
        .with_state(app)
}

/// An `application/problem+json` answer.
fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Refuses `/v1` calls without the token, when there is one.
async fn authorize<S: Store>(
    State(app): State<Arc<App<S>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &app.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this server needs `Authorization: Bearer <token>`",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// A body that is not the JSON asked for: 400 naming what is wrong.
fn bad_body(rejection: &JsonRejection) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "Bad Request",
        &rejection.body_text(),
    )
}

/// A check: a rule and an identifier, or a rate limit service domain and its descriptors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    rule: Option<String>,
    identifier: Option<String>,
    domain: Option<String>,
    descriptors: Option<Vec<JsonDescriptor>>,
    #[serde(default = "one")]
    cost: u64,
    /// What DDoS protection scores the identifier's request by (a rule's checks).
    endpoint: Option<String>,
    user_agent: Option<String>,
}

fn one() -> u64 {
    1
}

/// A limiter error as an answer.
fn failed(error: &Error) -> Response {
    match error {
        Error::UnknownRule { .. } => {
            problem(StatusCode::NOT_FOUND, "Unknown Rule", &error.to_string())
        }
        Error::InvalidCost { .. } | Error::InvalidLimit { .. } => {
            problem(StatusCode::BAD_REQUEST, "Bad Request", &error.to_string())
        }
        _ if error.is_store_unavailable() => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Store Unavailable",
            &error.to_string(),
        ),
        _ => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            &error.to_string(),
        ),
    }
}

/// A decision as JSON, its rate-limit headers on the response too.
fn decided(status: &Status) -> Response {
    let values = status.header_values();
    let mut json = Vec::with_capacity(512);
    if let Err(error) = serde_json::to_writer(&mut json, &Decision::of(status, &values)) {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            &error.to_string(),
        );
    }
    // Straight into the response's own map (no second map to merge).
    let mut response = Response::new(axum::body::Body::from(json));
    let headers = response.headers_mut();
    headers.reserve(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in values.iter() {
        if let (Some(name), Ok(value)) = (
            HeaderValues::lower_case(name).map(HeaderName::from_static),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

/// The body of a decision.
#[derive(serde::Serialize)]
struct Decision<'a> {
    allowed: bool,
    verdict: &'static str,
    rule: &'static str,
    strategy: &'static str,
    limit: u64,
    remaining: u64,
    window: f64,
    reset_after: f64,
    retry_after: Option<f64>,
    blocked: bool,
    degraded: bool,
    headers: Headers<'a>,
}

impl<'a> Decision<'a> {
    fn of(status: &Status, values: &'a HeaderValues) -> Self {
        Decision {
            allowed: status.allowed,
            verdict: status.verdict.as_str(),
            rule: status.rule,
            strategy: status.strategy.as_str(),
            limit: status.limit,
            remaining: status.remaining,
            window: status.window.as_secs_f64(),
            reset_after: status.reset_after.as_secs_f64(),
            retry_after: status.retry_after.map(|d| d.as_secs_f64()),
            blocked: status.blocked,
            degraded: status.degraded,
            headers: Headers(values),
        }
    }
}

/// The rate-limit headers as a JSON object.
struct Headers<'a>(&'a HeaderValues);

impl serde::Serialize for Headers<'_> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.collect_map(self.0.iter())
    }
}

async fn check<S: Store>(
    State(app): State<Arc<App<S>>>,
    body: Result<axum::Json<CheckBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(rejection) => return bad_body(&rejection),
    };
    match body {
        CheckBody {
            rule: Some(rule),
            identifier: Some(identifier),
            domain: None,
            descriptors: None,
            cost,
            endpoint,
            user_agent,
        } => {
            // A check that describes a client's request (its endpoint or user agent) is
            // scored; others (an identifier that need not be a client) are not.
            let describes_request = endpoint.is_some() || user_agent.is_some();
            if let Some(screen) = app.ddos.as_ref().filter(|_| describes_request) {
                let endpoint = endpoint.as_deref().unwrap_or(&rule);
                let now = app.limiter.now();
                if screen.calls_for_block(&identifier, endpoint, user_agent.as_deref(), now) {
                    screen.block(&identifier).await;
                }
            }
            let started = Instant::now();
            let answer = match &app.adaptive {
                Some(adaptive) if adaptive.rule().name() == rule => adaptive
                    .check_n(&identifier, cost, None)
                    .await
                    .map(|decision| decision.status),
                _ => app.limiter.check_n(&identifier, &rule, cost).await,
            };
            match answer {
                Ok(status) => {
                    app.prometheus.decisions().record(
                        &rule,
                        &status,
                        cost,
                        Some(started.elapsed()),
                    );
                    decided(&status)
                }
                Err(error) => failed(&error),
            }
        }
        CheckBody {
            rule: None,
            identifier: None,
            domain: Some(domain),
            descriptors: Some(descriptors),
            cost,
            endpoint: None,
            user_agent: None,
        } => check_descriptors(&app, domain, descriptors, cost).await,
        _ => problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "a check is {\"rule\", \"identifier\", \"cost\"?, \"endpoint\"?, \"user_agent\"?} \
             or {\"domain\", \"descriptors\", \"cost\"?}",
        ),
    }
}

/// The 404 for a rate limit service call when no domains are configured.
fn no_domains() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not Found",
        "no rate limit service domains are configured (--rls FILE)",
    )
}

/// A request's descriptors, from JSON.
fn descriptors_of(
    descriptors: Vec<JsonDescriptor>,
) -> Vec<envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor> {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    descriptors
        .into_iter()
        .map(|d| RateLimitDescriptor {
            entries: d
                .entries
                .into_iter()
                .map(|e| Entry {
                    key: e.key,
                    value: e.value,
                })
                .collect(),
            ..RateLimitDescriptor::default()
        })
        .collect()
}

/// A request the rate limit service refused, as an HTTP answer.
fn refused(status: &tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(code, "Rate Limit Request Refused", status.message())
}

/// The response headers the rate limit service asks for.
fn headers_to_add(response: &RateLimitResponse) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for header in &response.response_headers_to_add {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.key.as_bytes()),
            HeaderValue::from_str(&header.value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

/// The name of a response code.
fn code_name(code: i32) -> &'static str {
    Code::try_from(code).unwrap_or(Code::Unknown).as_str_name()
}

/// The per-descriptor statuses, in protobuf JSON names.
fn statuses_json(response: &RateLimitResponse) -> Vec<Value> {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
    response
        .statuses
        .iter()
        .map(|s| {
            let mut status = json!({
                "code": code_name(s.code),
                "limitRemaining": s.limit_remaining,
            });
            if let Some(limit) = &s.current_limit {
                let unit = Unit::try_from(limit.unit).unwrap_or(Unit::Unknown);
                status["currentLimit"] = json!({
                    "name": limit.name,
                    "requestsPerUnit": limit.requests_per_unit,
                    "unit": unit.as_str_name(),
                });
            }
            if let Some(reset) = &s.duration_until_reset {
                status["durationUntilReset"] = json!(format!("{}s", reset.seconds));
            }
            status
        })
        .collect()
}

/// `POST /v1/check` with descriptors: the rate limit service's decision, with the fields of
/// the tightest limit's status (as a check by rule has them) and the per-descriptor
/// `statuses`.
async fn check_descriptors<S: Store>(
    app: &App<S>,
    domain: String,
    descriptors: Vec<JsonDescriptor>,
    cost: u64,
) -> Response {
    let Some(rls) = app.rls.as_deref() else {
        return no_domains();
    };
    let Ok(hits_addend) = u32::try_from(cost) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("cost {cost} is above the rate limit service's {}", u32::MAX),
        );
    };
    let request = RateLimitRequest {
        domain,
        descriptors: descriptors_of(descriptors),
        hits_addend,
    };
    let (response, tightest) = match rls.decide(request).await {
        Ok(decided) => decided,
        Err(status) => return refused(&status),
    };
    let mut body = match &tightest {
        Some(status) => serde_json::to_value(Decision::of(status, &status.header_values()))
            .unwrap_or_else(|_| json!({})),
        None => json!({}),
    };
    body["allowed"] = json!(response.overall_code != Code::OverLimit as i32);
    body["overallCode"] = json!(code_name(response.overall_code));
    body["statuses"] = json!(statuses_json(&response));
    (headers_to_add(&response), axum::Json(body)).into_response()
}

/// A request of the reference service's `/json` endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    domain: String,
    #[serde(default)]
    descriptors: Vec<JsonDescriptor>,
    #[serde(default, alias = "hitsAddend")]
    hits_addend: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDescriptor {
    #[serde(default)]
    entries: Vec<JsonEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    key: String,
    #[serde(default)]
    value: String,
}

/// `POST /json`: the rate limit service over JSON, as envoyproxy/ratelimit's endpoint: 200
/// when OK, 429 when over the limit, the response in protobuf JSON names.
async fn rls_json<S: Store>(
    State(app): State<Arc<App<S>>>,
    body: Result<axum::Json<JsonRequest>, JsonRejection>,
) -> Response {
    let Some(rls) = app.rls.as_deref() else {
        return no_domains();
    };
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(rejection) => return bad_body(&rejection),
    };
    let request = RateLimitRequest {
        domain: body.domain,
        descriptors: descriptors_of(body.descriptors),
        hits_addend: body.hits_addend,
    };
    let response = match rls.answer(request).await {
        Ok(response) => response,
        Err(status) => return refused(&status),
    };
    let status = if response.overall_code == Code::OverLimit as i32 {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    let body = json!({
        "overallCode": code_name(response.overall_code),
        "statuses": statuses_json(&response),
    });
    (status, headers_to_add(&response), axum::Json(body)).into_response()
}

/// `GET /dashboard/events`: the dashboard's frames.
async fn dashboard_events<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    dashboard::events(
        Arc::clone(&app.view),
        app.limiter.clone(),
        app.token.is_some(),
        app.stopped.clone(),
    )
}

/// `GET /metrics`: the OpenMetrics text of the registry.
async fn prometheus<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    (
        [(header::CONTENT_TYPE, PrometheusMetrics::CONTENT_TYPE)],
        app.prometheus.encode(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeekBody {
    rule: String,
    identifier: String,
}

async fn peek<S: Store>(
    State(app): State<Arc<App<S>>>,
    body: Result<axum::Json<PeekBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(rejection) => return bad_body(&rejection),
    };
    let peeked = match &app.adaptive {
        Some(adaptive) if adaptive.rule().name() == body.rule => {
            let limit = adaptive.limit_for(&body.identifier);
            adaptive.rule().peek_at_limit(&body.identifier, limit).await
        }
        _ => app.limiter.peek(&body.identifier, &body.rule).await,
    };
    match peeked {
        Ok(status) => decided(&status),
        Err(error) => failed(&error),
    }
}

async fn rules<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    let rules: Vec<Value> = app
        .limiter
        .rules()
        .iter()
        .map(|rule| {
            json!({
                "name": rule.name,
                "limit": rule.limit,
                "window": rule.window.as_secs_f64(),
                "strategy": rule.strategy.as_str(),
                "burst": rule.burst,
                "scope": rule.scope.as_str(),
                "block_duration": rule.block_duration.as_secs_f64(),
            })
        })
        .collect();
    axum::Json(json!({ "rules": rules })).into_response()
}

async fn metrics<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    let m = app.limiter.metrics();
    let rules: Vec<Value> = m
        .rules
        .iter()
        .map(|r| {
            json!({
                "rule": r.rule,
                "allowed": r.allowed,
                "denied": r.denied,
                "violations": r.violations,
                "degraded": r.degraded,
            })
        })
        .collect();
    axum::Json(json!({
        "total_requests": m.total_requests,
        "allowed_requests": m.allowed_requests,
        "blocked_requests": m.blocked_requests,
        "block_rate": m.block_rate,
        "violations": m.violations,
        "degraded_requests": m.degraded_requests,
        "store_errors": m.store_errors,
        "store_circuit_opens": m.store_circuit_opens,
        "store_circuit_open": m.store_circuit_open,
        "active_rules": m.active_rules,
        "whitelisted": m.whitelisted,
        "blacklisted": m.blacklisted,
        "rules": rules,
    }))
    .into_response()
}

/// List entries as JSON: `identifier`, and `expires_at` (Unix seconds, or null for good).
pub(crate) fn entries_json(entries: &[ratethrottle::store::ListEntry]) -> Vec<Value> {
    entries
        .iter()
        .map(|e| {
            let expires = e.expires_at.map(|at| {
                at.to_system_time()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
            });
            json!({ "identifier": e.identifier, "expires_at": expires })
        })
        .collect()
}

/// The list named in a path.
fn list_of(name: &str) -> Option<ListKind> {
    match name {
        "whitelist" => Some(ListKind::Whitelist),
        "blacklist" => Some(ListKind::Blacklist),
        _ => None,
    }
}

/// The 404 for a list that does not exist.
fn unknown_list(name: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Unknown List",
        &format!("no list {name:?}: the lists are whitelist and blacklist"),
    )
}

async fn list_entries<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(name): Path<String>,
) -> Response {
    let Some(list) = list_of(&name) else {
        return unknown_list(&name);
    };
    match app.limiter.list_entries(list).await {
        Ok(entries) => axum::Json(json!({ "entries": entries_json(&entries) })).into_response(),
        Err(error) => failed(&error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListBody {
    identifier: String,
    /// Seconds until the entry expires (blacklist only; none: for good).
    duration: Option<f64>,
}

async fn list_add<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(name): Path<String>,
    body: Result<axum::Json<ListBody>, JsonRejection>,
) -> Response {
    let Some(list) = list_of(&name) else {
        return unknown_list(&name);
    };
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(rejection) => return bad_body(&rejection),
    };
    let duration = match body.duration {
        None => None,
        Some(secs) if secs.is_finite() && secs > 0.0 && secs < 1e12 => {
            Some(Duration::from_secs_f64(secs))
        }
        Some(secs) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("duration must be a number of seconds above 0, got {secs}"),
            );
        }
    };
    let added = match list {
        ListKind::Whitelist if duration.is_some() => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "whitelist entries do not expire: leave out duration",
            );
        }
        ListKind::Whitelist => app.limiter.whitelist_add(&body.identifier).await,
        _ => app.limiter.blacklist_add(&body.identifier, duration).await,
    };
    match added {
        Ok(()) => (
            StatusCode::CREATED,
            axum::Json(json!({ "added": body.identifier })),
        )
            .into_response(),
        Err(error) => failed(&error),
    }
}

async fn list_remove<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((name, identifier)): Path<(String, String)>,
) -> Response {
    let Some(list) = list_of(&name) else {
        return unknown_list(&name);
    };
    let removed = match list {
        ListKind::Whitelist => app.limiter.whitelist_remove(&identifier).await,
        _ => app.limiter.blacklist_remove(&identifier).await,
    };
    match removed {
        Ok(true) => axum::Json(json!({ "removed": identifier })).into_response(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            "Not Listed",
            &format!("{identifier:?} is not on the list"),
        ),
        Err(error) => failed(&error),
    }
}
