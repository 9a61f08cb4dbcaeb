//! The framework-neutral part of the middleware: which rules apply to a request, who the
//! client is, and what the limiter's answers mean for the response.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};

use ratethrottle::store::{MemoryStore, Store};
use ratethrottle::{Limiter, RuleHandle, Scope, Status, Verdict};

use ratethrottle::store::KeyValueStore;
use ratethrottle_protect::adaptive::{AdaptiveLimiter, AdaptiveSettings, Saver};
use ratethrottle_protect::analytics::{Analytics, ViolationRecord};
use ratethrottle_protect::ddos::{DdosProtection, Screen};

use crate::client_ip::{ClientIp, ClientKey};
use crate::response::{HeaderStyle, Rejection, RejectionKind, RejectionResponse};
use crate::{Error, user};

/// What the middleware needs to know of a request. Implemented for `http::request::Parts`
/// (feature `tower`) and `actix_web::HttpRequest` (feature `actix`); sealed.
pub trait RequestView: sealed::Sealed {
    /// The method, like `GET`.
    fn method(&self) -> &str;
    /// The path, like `/users/42`.
    fn path(&self) -> &str;
    /// The matched route template, like `/users/{id}`, when the framework knows it.
    fn route(&self) -> Option<Cow<'_, str>>;
    /// Every value of the header `name` (lower case), in the order received.
    fn header_values(&self, name: &'static str) -> impl Iterator<Item = &[u8]>;
    /// The first value of the header `name` (lower case).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The TCP peer's address, when known.
    fn peer(&self) -> Option<IpAddr>;
    /// The user the request carries itself, for a policy without its own way to find it
    /// ([`PlainRequest::user`](crate::PlainRequest)); `None` by default.
    fn user(&self) -> Option<&str> {
        None
    }
    /// A key chosen for the client by the adapter (a key function), counted instead of the
    /// address and the user by IP- and user-scoped rules ([`PlainRequest::client_key`](crate::PlainRequest)); `None` by default.
    fn client_key(&self) -> Option<&str> {
        None
    }
}

pub(crate) mod sealed {
    /// Keeps [`RequestView`](super::RequestView) implemented only here.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

/// Where a rule applies: a path prefix (whole segments: `/api` matches `/api` and
/// `/api/users`, not `/apix`), optionally only for some methods.
///
/// ```
/// use ratethrottle_http::Route;
///
/// let login = Route::prefix("/login").method("POST");
/// assert!(login.matches("POST", "/login"));
/// assert!(!login.matches("GET", "/login"));
/// assert!(!Route::prefix("/api").matches("GET", "/apix"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    prefix: String,
    methods: Vec<String>,
}

impl Route {
    /// Requests whose path starts with `prefix` (which must start with `/`).
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Route {
            prefix: prefix.into(),
            methods: Vec::new(),
        }
    }

    /// Only requests with this method (may be called again for more methods).
    pub fn method(mut self, method: impl AsRef<str>) -> Self {
        self.methods.push(method.as_ref().to_ascii_uppercase());
        self
    }

    /// Whether a request with this method and path is on this route.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let on_path = match path.strip_prefix(self.prefix.trim_end_matches('/')) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        };
        on_path && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

impl From<&str> for Route {
    fn from(prefix: &str) -> Self {
        Route::prefix(prefix)
    }
}

#[derive(Clone, Debug)]
struct Binding {
    rule: String,
    route: Option<Route>,
}

type Extract<R, T> = Arc<dyn Fn(&R) -> T + Send + Sync>;
type RejectionHook = Arc<dyn Fn(&Rejection) -> RejectionResponse + Send + Sync>;

/// Where the identifier of `user`-scoped rules comes from.
enum UserSource<R> {
    Closure(Extract<R, Option<String>>),
    Header(String),
    JwtSubject,
}

impl<R> Clone for UserSource<R> {
    fn clone(&self) -> Self {
        match self {
            UserSource::Closure(f) => UserSource::Closure(f.clone()),
            UserSource::Header(name) => UserSource::Header(name.clone()),
            UserSource::JwtSubject => UserSource::JwtSubject,
        }
    }
}

impl<R> fmt::Debug for UserSource<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSource::Closure(_) => f.write_str("closure"),
            UserSource::Header(name) => write!(f, "header {name:?}"),
            UserSource::JwtSubject => f.write_str("JWT subject"),
        }
    }
}

/// What to do with a request whose peer address is unknown when an IP-scoped rule applies
/// (with axum: a server built without `into_make_service_with_connect_info::<SocketAddr>()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownPeer {
    /// Answer 500 with a problem body naming the fix, and log it at ERROR once (the default):
    /// otherwise every client would share one allowance, and one could starve the others.
    #[default]
    Reject,
    /// Count every such request under `0.0.0.0`: all clients share one allowance (logged at
    /// WARN once). Choose it knowingly, e.g. behind a socket that has no peer addresses.
    SharedBucket,
}

/// Builds a [`Policy`]: the rules, the client key, and what to do with the answers.
///
/// `R` is the framework's request view: `http::request::Parts` for tower/axum
/// ([`RateLimitLayer::builder`](crate::RateLimitLayer::builder)), `actix_web::HttpRequest`
/// for actix-web.
pub struct PolicyBuilder<S: Store = MemoryStore, R = ()> {
    policy: Policy<S, R>,
    errors: Vec<Error>,
}

/// How the middleware limits requests; built by [`PolicyBuilder`], shared by every clone of
/// the middleware.
pub struct Policy<S: Store = MemoryStore, R = ()> {
    limiter: Limiter<S>,
    bindings: Vec<Binding>,
    /// The bindings' rules, resolved when the policy is built (in the order of `bindings`).
    handles: Vec<RuleHandle<S>>,
    client_ip: ClientIp,
    unknown_peer: UnknownPeer,
    user: Option<UserSource<R>>,
    cost: Option<Extract<R, u64>>,
    exempt: Option<Extract<R, bool>>,
    deduct_when: Option<Arc<dyn Fn(u16) -> bool + Send + Sync>>,
    on_rejection: Option<RejectionHook>,
    shadow: bool,
    header_style: HeaderStyle,
    /// `enabled` and `headers`: they may follow configuration reloads.
    switches: Arc<Switches>,
    /// Scores each request's client; a client it calls for blocking goes on the blacklist.
    ddos: Option<Screen>,
    /// Records each decision.
    analytics: Option<Arc<Analytics>>,
    #[cfg(feature = "prometheus")]
    prometheus: Option<crate::prometheus::DecisionMetrics>,
    /// Decides the checks of its rule at each client's learned limit.
    adaptive: Option<Arc<AdaptiveLimiter<S>>>,
    /// Saves the adaptive model while the policy lives, and once more when it is dropped.
    _saver: Option<Saver>,
}

/// The settings that may change while the middleware runs (`global.enabled` and
/// `global.headers_enabled` after a configuration reload): one relaxed load per request.
#[derive(Debug)]
struct Switches {
    enabled: AtomicBool,
    headers: AtomicBool,
    log_violations: AtomicBool,
}

impl Switches {
    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn headers(&self) -> bool {
        self.headers.load(Ordering::Relaxed)
    }

    fn log_violations(&self) -> bool {
        self.log_violations.load(Ordering::Relaxed)
    }

    #[cfg(feature = "config")]
    fn follow(&self, config: &ratethrottle_config::Config) {
        self.enabled.store(config.global.enabled, Ordering::Relaxed);
        self.headers
            .store(config.global.headers_enabled, Ordering::Relaxed);
        self.log_violations
            .store(config.global.log_violations, Ordering::Relaxed);
    }
}

impl<S: Store, R> fmt::Debug for Policy<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.bindings)
            .field("client_ip", &self.client_ip)
            .field("unknown_peer", &self.unknown_peer)
            .field("user", &self.user)
            .field("cost", &self.cost.is_some())
            .field("exempt_when", &self.exempt.is_some())
            .field("deduct_when", &self.deduct_when.is_some())
            .field("on_rejection", &self.on_rejection.is_some())
            .field("shadow", &self.shadow)
            .field("headers", &self.switches.headers())
            .field("header_style", &self.header_style)
            .field("enabled", &self.switches.enabled())
            .finish_non_exhaustive()
    }
}

impl<S: Store, R> fmt::Debug for PolicyBuilder<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("policy", &self.policy)
            .field("errors", &self.errors)
            .finish()
    }
}

/// # Building
impl<S: Store, R> PolicyBuilder<S, R> {
    /// A builder checking requests with `limiter`: no rules yet, client = peer address,
    /// headers on, shadow mode off.
    pub fn new(limiter: Limiter<S>) -> Self {
        PolicyBuilder {
            policy: Policy {
                limiter,
                bindings: Vec::new(),
                handles: Vec::new(),
                client_ip: ClientIp::default(),
                unknown_peer: UnknownPeer::default(),
                user: None,
                cost: None,
                exempt: None,
                deduct_when: None,
                on_rejection: None,
                shadow: false,
                header_style: HeaderStyle::default(),
                switches: Arc::new(Switches {
                    enabled: AtomicBool::new(true),
                    headers: AtomicBool::new(true),
                    // Off unless a configuration says so (`global.log_violations`).
                    log_violations: AtomicBool::new(false),
                }),
                ddos: None,
                analytics: None,
                #[cfg(feature = "prometheus")]
                prometheus: None,
                adaptive: None,
                _saver: None,
            },
            errors: Vec::new(),
        }
    }

    /// Limits adaptively: an [`AdaptiveLimiter`] with `settings` on the policy's limiter
    /// (which gains its rule, `settings.rule`, `"adaptive"` by default). Bind that rule
    /// ([`rule`](Self::rule), [`rule_for`](Self::rule_for)) where requests should be limited
    /// at each client's learned limit; its scope picks the client as for any rule.
    pub fn adaptive(mut self, settings: AdaptiveSettings) -> Self {
        match AdaptiveLimiter::new(self.policy.limiter.clone(), settings) {
            Ok(adaptive) => self.adaptive_limiter(Arc::new(adaptive)),
            Err(error) => {
                self.errors.push(error.into());
                self
            }
        }
    }

    /// Limits adaptively with `adaptive`, which may be shared (with other policies, or code
    /// that reads its profiles). Bindings of its rule are decided by it, on its limiter.
    pub fn adaptive_limiter(mut self, adaptive: Arc<AdaptiveLimiter<S>>) -> Self {
        self.policy.adaptive = Some(adaptive);
        self
    }

    /// Applies the limiter's rule `rule` to every request. Its
    /// [`scope`](ratethrottle::Rule::scope) picks the identifier: `ip` the client address,
    /// `user` the [user](Self::user), `endpoint` the method and route template, `global` one
    /// key for everybody. Several rules may apply; all are checked in the order added.
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.policy.bindings.push(Binding {
            rule: rule.into(),
            route: None,
        });
        self
    }

    /// Applies `rule` to requests on `route` only (a path prefix like `"/login"` or a
    /// [`Route`] with methods). With axum, a layer per route (`route_layer`) does the same.
    pub fn rule_for(mut self, route: impl Into<Route>, rule: impl Into<String>) -> Self {
        let route = route.into();
        if !route.prefix.starts_with('/') {
            self.errors.push(Error::InvalidRoute {
                prefix: route.prefix.clone(),
            });
        }
        self.policy.bindings.push(Binding {
            rule: rule.into(),
            route: Some(route),
        });
        self
    }

    /// How the client address is found (trusted proxies, IPv6 grouping). Default: the peer.
    pub fn client_ip(mut self, mut client_ip: ClientIp) -> Self {
        self.errors.extend(client_ip.take_error());
        self.policy.client_ip = client_ip;
        self
    }

    /// What to do when an IP-scoped rule applies and the peer address is unknown (default
    /// [`UnknownPeer::Reject`]: a 500 that names the fix).
    pub fn unknown_peer(mut self, unknown_peer: UnknownPeer) -> Self {
        self.policy.unknown_peer = unknown_peer;
        self
    }

    /// The identifier of `user`-scoped rules. `None` (anonymous) falls back to the client
    /// address.
    pub fn user<F>(mut self, user: F) -> Self
    where
        F: Fn(&R) -> Option<String> + Send + Sync + 'static,
    {
        self.policy.user = Some(UserSource::Closure(Arc::new(user)));
        self
    }

    /// Takes the user from the header `name` (an API key, or a user id set by an
    /// authenticating proxy).
    pub fn user_header(mut self, name: &str) -> Self {
        if !user::is_header_name(name) {
            self.errors.push(Error::InvalidHeaderName {
                name: name.to_owned(),
            });
        }
        self.policy.user = Some(UserSource::Header(name.to_ascii_lowercase()));
        self
    }

    /// Takes the user from the `sub` claim of an `Authorization: Bearer` JWT. The token is
    /// **not verified** here: verify it before this layer (or also limit by IP), or a client
    /// can spread its requests over made-up subjects.
    pub fn user_jwt_subject(mut self) -> Self {
        self.policy.user = Some(UserSource::JwtSubject);
        self
    }

    /// The cost of a request (default 1). A cost of 0 counts nothing (the client is still
    /// rejected while over a limit or blocked); a cost above a rule's capacity is rejected
    /// (429), so a request cannot skip a limit by costing too much.
    pub fn cost<F>(mut self, cost: F) -> Self
    where
        F: Fn(&R) -> u64 + Send + Sync + 'static,
    {
        self.policy.cost = Some(Arc::new(cost));
        self
    }

    /// Requests for which this returns `true` are not limited, counted or given headers.
    pub fn exempt_when<F>(mut self, exempt: F) -> Self
    where
        F: Fn(&R) -> bool + Send + Sync + 'static,
    {
        self.policy.exempt = Some(Arc::new(exempt));
        self
    }

    /// Counts a request only when its response status makes this return `true` (for
    /// example `|status| status >= 400` to limit failed logins). A client over the limit
    /// is still rejected before the handler runs.
    ///
    /// ## Behavior
    /// Before the handler, each rule is *peeked*; after it, the rules are counted if the
    /// status qualifies. A client already over the limit is rejected, which records a
    /// violation and starts the rule's block. Requests running at the same time all see the
    /// count before any of them, so a burst of concurrent requests can pass a limit by up to
    /// its concurrency.
    pub fn deduct_when<F>(mut self, deduct: F) -> Self
    where
        F: Fn(u16) -> bool + Send + Sync + 'static,
    {
        self.policy.deduct_when = Some(Arc::new(deduct));
        self
    }

    /// Shadow mode: decide and count as usual (metrics, violations, blocks) and log what
    /// would be rejected, but let every request through without rate-limit headers.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.policy.shadow = shadow;
        self
    }

    /// Whether allowed responses carry the rate-limit headers (default `true`; config
    /// `global.headers_enabled`). Rejections always carry them.
    pub fn headers(self, headers: bool) -> Self {
        self.policy
            .switches
            .headers
            .store(headers, Ordering::Relaxed);
        self
    }

    /// Which rate-limit headers to send (default [`HeaderStyle::Both`]); fewer headers cost
    /// less per response.
    pub fn header_style(mut self, style: HeaderStyle) -> Self {
        self.policy.header_style = style;
        self
    }

    /// When `false`, every request passes and nothing is counted (config `global.enabled`).
    pub fn enabled(self, enabled: bool) -> Self {
        self.policy
            .switches
            .enabled
            .store(enabled, Ordering::Relaxed);
        self
    }

    /// Builds rejections with `hook` instead of [`Rejection::default_response`].
    pub fn on_rejection<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Rejection) -> RejectionResponse + Send + Sync + 'static,
    {
        self.policy.on_rejection = Some(Arc::new(hook));
        self
    }

    /// The policy, or the first mistake: no rule bound, a rule the limiter does not have, a
    /// bad route, proxy network or header name.
    pub fn build(mut self) -> Result<Policy<S, R>, Error> {
        if let Some(error) = self.errors.into_iter().next() {
            return Err(error);
        }
        if self.policy.bindings.is_empty() {
            return Err(Error::NoRules);
        }
        let limiter = &self.policy.limiter;
        let adaptive = self.policy.adaptive.as_deref();
        self.policy.handles = self
            .policy
            .bindings
            .iter()
            .map(|binding| match adaptive {
                // The adaptive limiter's rule lives on its limiter.
                Some(adaptive) if adaptive.rule().name() == binding.rule => {
                    Ok(adaptive.rule().clone())
                }
                _ => limiter.rule_handle(&binding.rule),
            })
            .collect::<Result<_, _>>()?;
        self.policy.bindings.shrink_to_fit();
        Ok(self.policy)
    }
}

/// What a [`Policy`] decided for one request ([`Policy::decide`]), for adapters outside
/// this crate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decided {
    /// The answer that speaks for the request (the denial, or the admission with the least
    /// left) and the identifier it was for; `None` when no rule applied, limiting is off, the
    /// request was exempt or it failed before a rule answered.
    pub status: Option<(Status, String)>,
    /// The response to send instead of calling the handler, when refused.
    pub rejection: Option<RejectionResponse>,
    /// The rate-limit headers for the response of an admitted request (none when the policy
    /// sends none).
    pub headers: Vec<(&'static str, String)>,
}

impl Decided {
    fn of<S: Store, R>(
        policy: &Policy<S, R>,
        admission: Admission,
        status: Option<(Status, String)>,
    ) -> Self {
        let (rejection, headers) = match admission {
            Admission::Reject(response) => (Some(response), Vec::new()),
            Admission::Pass => (None, Vec::new()),
            Admission::Admit(pending) => {
                let style = policy.header_style;
                let headers = pending
                    .into_headers()
                    .map(|status| {
                        status
                            .headers()
                            .into_iter()
                            .filter(|(name, _)| style.includes(name))
                            .collect()
                    })
                    .unwrap_or_default();
                (None, headers)
            }
        };
        Decided {
            status,
            rejection,
            headers,
        }
    }
}

/// What the middleware does with a request once the rules have answered.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Let it through; nothing to add to the response.
    Pass,
    /// Let it through; [`Policy::settle`] gives the headers once the response status is known.
    Admit(Pending),
    /// Answer with this instead of calling the handler.
    Reject(RejectionResponse),
}

/// The part of a decision that waits for the response.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The most restrictive status, when headers are wanted.
    headers: Option<Status>,
    /// Rules to count once the response qualifies (`deduct_when`).
    deferred: Vec<Deferred>,
}

#[cfg_attr(not(feature = "tower"), allow(dead_code))]
impl Pending {
    /// Whether nothing waits for the response (no deferred counting), so the headers are
    /// known now.
    pub(crate) fn is_settled(&self) -> bool {
        self.deferred.is_empty()
    }

    /// The headers' status of a settled decision.
    pub(crate) fn into_headers(self) -> Option<Status> {
        self.headers
    }
}

#[derive(Debug)]
struct Deferred {
    /// The binding whose rule counts it.
    binding: usize,
    identifier: String,
    cost: u64,
}

/// A client key, borrowed from the request or the resolved address.
enum Identifier<'a> {
    Client(ClientKey),
    Text(Cow<'a, str>),
}

impl Identifier<'_> {
    fn as_str(&self) -> &str {
        match self {
            Identifier::Client(key) => key.as_str(),
            Identifier::Text(text) => text,
        }
    }
}

/// # Abuse protection and configuration (for stores with keys and values, as every store of
/// this workspace is)
impl<S: Store + KeyValueStore, R> PolicyBuilder<S, R> {
    /// Applies `global.enabled`, `global.headers_enabled` and `global.log_violations` (each
    /// refusal for a rule logged at INFO) of `config`, and its `ddos_protection`
    /// ([`PolicyBuilder::ddos`]) and `analytics` ([`PolicyBuilder::analytics`]) when enabled
    /// (feature `config`).
    #[cfg(feature = "config")]
    pub fn config(self, config: &ratethrottle_config::Config) -> Self {
        self.policy.switches.follow(config);
        self.protection_of(config)
    }

    /// Applies `global.enabled`, `global.headers_enabled` and `global.log_violations` of the
    /// configuration `watcher` keeps, now and after every reload of the file, and its
    /// `ddos_protection` and `analytics` as they are when the policy is built (feature
    /// `config`).
    #[cfg(feature = "config")]
    pub fn follow(self, watcher: &ratethrottle_config::ConfigWatcher) -> Self {
        let config = watcher.current();
        self.policy.switches.follow(&config);
        let switches = Arc::clone(&self.policy.switches);
        watcher.on_reload(move |config| switches.follow(config));
        self.protection_of(&config)
    }

    /// Analytics and DDoS protection as `config`'s `analytics` and `ddos_protection` say,
    /// when enabled.
    #[cfg(feature = "config")]
    fn protection_of(mut self, config: &ratethrottle_config::Config) -> Self {
        match config.build_adaptive(&self.policy.limiter) {
            Ok(Some((adaptive, saver))) => {
                self = self.adaptive_limiter(adaptive);
                self.policy._saver = saver;
            }
            Ok(None) => {}
            Err(error) => self.errors.push(error.into()),
        }
        if config.analytics.enabled {
            match Analytics::new(config.analytics.settings()) {
                Ok(analytics) => self = self.analytics(Arc::new(analytics)),
                Err(error) => self.errors.push(error.into()),
            }
        }
        match config.build_ddos() {
            Ok(Some(ddos)) => self.ddos(ddos),
            Ok(None) => self,
            Err(error) => {
                self.errors.push(error.into());
                self
            }
        }
    }

    /// Scores the client of every request with `ddos` (by its address, the route and the
    /// `User-Agent`) before the rules are asked; a client it calls for blocking goes on the
    /// limiter's blacklist (on Redis, for the whole fleet) and is refused with 403, as every
    /// blacklisted client is. The block escalates for a repeat offender, whose offences are
    /// counted in the limiter's store ([`ratethrottle_protect::ddos::ban`]).
    pub fn ddos(mut self, ddos: Arc<DdosProtection>) -> Self {
        self.policy.ddos = Some(Screen::new(self.policy.limiter.clone(), ddos));
        self
    }

    /// Counts every decision of the rules in Prometheus metrics (`total_hits`, `over_limit`,
    /// `near_limit`, `blocked`, per rule; feature `prometheus`).
    #[cfg(feature = "prometheus")]
    pub fn prometheus(mut self, metrics: crate::prometheus::DecisionMetrics) -> Self {
        self.policy.prometheus = Some(metrics);
        self
    }

    /// Records every decision of the rules (identifier, rule, admitted) in `analytics`, and
    /// every violation of the limiter (through [`Limiter::on_violation`]).
    pub fn analytics(mut self, analytics: Arc<Analytics>) -> Self {
        let record = Arc::clone(&analytics);
        self.policy
            .limiter
            .on_violation(move |violation| record.record_violation(ViolationRecord::of(violation)));
        self.policy.analytics = Some(analytics);
        self
    }
}

/// # Deciding
impl<S: Store, R: RequestView> Policy<S, R> {
    /// The limiter this policy checks with.
    pub fn limiter(&self) -> &Limiter<S> {
        &self.limiter
    }

    /// The rate-limit headers it sends.
    pub fn header_style(&self) -> HeaderStyle {
        self.header_style
    }

    /// The adaptive limiter deciding its rule's checks, when there is one: for its profiles,
    /// statistics, trust adjustments and model files.
    pub fn adaptive(&self) -> Option<&Arc<AdaptiveLimiter<S>>> {
        self.adaptive.as_ref()
    }

    /// The DDoS protection scoring each request's client, when there is one: for its
    /// statistics.
    pub fn ddos(&self) -> Option<&Arc<DdosProtection>> {
        self.ddos.as_ref().map(Screen::protection)
    }

    /// The DDoS verdict on `request`'s client: the client to blacklist, if any. The client
    /// key it resolves is kept in `client`, for the walk over the rules.
    fn screen(&self, request: &R, client: &mut Option<Option<ClientKey>>) -> Option<ClientKey> {
        let screen = self.ddos.as_ref()?;
        let client = (*client.get_or_insert_with(|| self.client_key(request)))?;
        let route = request.route();
        let endpoint = route.as_deref().unwrap_or_else(|| request.path());
        let agent = request
            .header("user-agent")
            .and_then(|agent| std::str::from_utf8(agent).ok());
        screen
            .calls_for_block(client.as_str(), endpoint, agent, self.limiter.now())
            .then_some(client)
    }

    /// Blacklists a client DDoS protection called for blocking, for as long as its offences
    /// call for (a failure is logged: the rules still answer).
    async fn block(&self, client: &ClientKey) {
        if let Some(screen) = &self.ddos {
            screen.block(client.as_str()).await;
        }
    }

    /// [`Policy::block`] for a store that answers at once.
    fn block_now(&self, client: &ClientKey) {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        // The memory store's futures are ready when first polled.
        let _ = std::pin::pin!(self.block(client)).poll(&mut context);
    }

    /// Checks `request` against every rule that applies to it, awaiting the store.
    pub(crate) async fn admit(&self, request: &R) -> Admission {
        self.walk(request, false).await.0
    }

    /// [`Policy::admit`] for a store that answers at once ([`Store::answers_at_once`]): no
    /// future. A check that still does not answer at once (its rule was removed a moment
    /// ago) fails as an unknown rule would.
    #[cfg(feature = "tower")]
    pub(crate) fn admit_now(&self, request: &R) -> Admission {
        self.walk_now(request, false).0
    }

    /// Decides `request` for an adapter outside this crate (such as the Python package's):
    /// the same walk over the rules as the middleware's, awaiting the store. Counting that
    /// waits for the response ([`PolicyBuilder::deduct_when`]) is not done here.
    pub async fn decide(&self, request: &R) -> Decided {
        let (done, concluded) = self.walk(request, true).await;
        Decided::of(self, done, concluded)
    }

    /// [`Policy::decide`] without a future, for a store that answers at once
    /// ([`Store::answers_at_once`]); `None` for one that does not.
    pub fn decide_now(&self, request: &R) -> Option<Decided> {
        if !self.limiter.store().answers_at_once() {
            return None;
        }
        let (done, concluded) = self.walk_now(request, true);
        Some(Decided::of(self, done, concluded))
    }

    /// Screens `request` and walks it through the rules, awaiting each check: the admission
    /// and, when `keep`, the answer that spoke.
    async fn walk(&self, request: &R, keep: bool) -> (Admission, Option<(Status, String)>) {
        let mut client = None;
        if let Some(blocked) = self.screen(request, &mut client) {
            self.block(&blocked).await;
        }
        let (mut walk, mut ask) = match Walk::start(self, request, keep, client) {
            Ok(started) => started,
            Err(done) => return (done, None),
        };
        loop {
            let answer = ask.wait().await;
            ask = match walk.step(ask, answer) {
                Ok(next) => next,
                Err(done) => return (done, walk.concluded.flatten()),
            };
        }
    }

    /// [`Policy::walk`] without awaiting, for a store that answers at once.
    #[inline]
    fn walk_now(&self, request: &R, keep: bool) -> (Admission, Option<(Status, String)>) {
        let mut client = None;
        if let Some(blocked) = self.screen(request, &mut client) {
            self.block_now(&blocked);
        }
        let (mut walk, mut ask) = match Walk::start(self, request, keep, client) {
            Ok(started) => started,
            Err(done) => return (done, None),
        };
        loop {
            let answer = ask.now().unwrap_or_else(|| Err(ask.gone()));
            ask = match walk.step(ask, answer) {
                Ok(next) => next,
                Err(done) => return (done, walk.concluded.flatten()),
            };
        }
    }

    /// Counts deferred rules if the response `status_code` qualifies; the headers to add.
    pub(crate) async fn settle(&self, pending: Pending, status_code: u16) -> Option<Status> {
        let Pending {
            mut headers,
            deferred,
        } = pending;
        let deduct = match &self.deduct_when {
            Some(deduct) if !deferred.is_empty() => {
                guarded("deduct_when", true, || deduct(status_code))
            }
            _ => false,
        };
        if deduct {
            for item in deferred {
                let handle = &self.handles[item.binding];
                match handle.check_n(&item.identifier, item.cost).await {
                    Ok(status) => {
                        if headers
                            .as_ref()
                            .is_some_and(|h| !more_restrictive(h, &status))
                        {
                            headers = Some(status);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            rule = handle.name(),
                            "counting a finished request failed: {error}"
                        )
                    }
                }
            }
        }
        headers
    }

    /// The rejection for a failed check, or `None` to go on without the rule (logged).
    fn failure(&self, error: ratethrottle::Error, identifier: &str) -> Option<Rejection> {
        let kind = match &error {
            e if e.is_store_unavailable() => RejectionKind::Unavailable,
            ratethrottle::Error::InvalidCost { .. } => RejectionKind::TooCostly,
            _ => {
                tracing::error!("rate limit check failed, request let through: {error}");
                return None;
            }
        };
        tracing::warn!(identifier, "request rejected: {error}");
        let mut rejection = Rejection::of_kind(kind, identifier, self.header_style);
        if kind == RejectionKind::TooCostly {
            rejection.detail = error.to_string();
        }
        Some(rejection)
    }

    fn reject_or_shadow(&self, rejection: Rejection, pending: Pending) -> Admission {
        if let (Some(status), true) = (&rejection.status, self.switches.log_violations()) {
            tracing::info!(
                identifier = %rejection.identifier,
                rule = status.rule,
                "Rate limit exceeded: {} for rule {}",
                rejection.identifier,
                status.rule
            );
        }
        if self.shadow {
            tracing::info!(
                identifier = %rejection.identifier,
                kind = ?rejection.kind,
                "shadow mode: would reject: {}",
                rejection.detail
            );
            return Admission::Admit(pending);
        }
        let response = match &self.on_rejection {
            Some(hook) => guarded("on_rejection", rejection.default_response(), || {
                hook(&rejection)
            }),
            None => rejection.default_response(),
        };
        Admission::Reject(response)
    }

    /// The identifier a rule of `scope` counts this request under; `None` when it needs the
    /// client address, which is unknown, and [`UnknownPeer::Reject`] applies.
    fn identifier<'r>(
        &self,
        scope: Scope,
        request: &'r R,
        client: &mut Option<Option<ClientKey>>,
    ) -> Option<Identifier<'r>> {
        let mut client_key = || {
            client
                .get_or_insert_with(|| self.client_key(request))
                .map(Identifier::Client)
        };
        if matches!(scope, Scope::User | Scope::Ip)
            && let Some(key) = request.client_key()
        {
            return Some(Identifier::Text(Cow::Borrowed(key)));
        }
        match scope {
            Scope::User => match self.user_of(request) {
                Some(user) => Some(Identifier::Text(Cow::Owned(user))),
                None => client_key(),
            },
            Scope::Endpoint => {
                let route = request.route();
                let route = route.as_deref().unwrap_or_else(|| request.path());
                Some(Identifier::Text(Cow::Owned(format!(
                    "{} {route}",
                    request.method()
                ))))
            }
            Scope::Global => Some(Identifier::Text(Cow::Borrowed("global"))),
            _ => client_key(),
        }
    }

    fn client_key(&self, request: &R) -> Option<ClientKey> {
        let peer = request.peer();
        let key = if self.client_ip.trusts_proxies() {
            let header = self.client_ip.forwarded_header().name();
            self.client_ip.resolve(peer, request.header_values(header))
        } else {
            self.client_ip.resolve(peer, std::iter::empty())
        };
        if key.is_some() {
            return key;
        }
        static WARNED: Once = Once::new();
        match self.unknown_peer {
            UnknownPeer::Reject => {
                WARNED.call_once(|| {
                    tracing::error!(
                        "answering 500 to requests IP-scoped rules apply to: {}",
                        crate::response::UNKNOWN_PEER_DETAIL
                    );
                });
                None
            }
            UnknownPeer::SharedBucket => {
                WARNED.call_once(|| {
                    tracing::warn!(
                        "the peer address of requests is unknown; as chosen \
                         (UnknownPeer::SharedBucket), IP-scoped rules count them all under 0.0.0.0"
                    );
                });
                Some(ClientKey::new(
                    IpAddr::from([0, 0, 0, 0]),
                    ClientIp::DEFAULT_IPV6_PREFIX,
                ))
            }
        }
    }

    fn user_of(&self, request: &R) -> Option<String> {
        let Some(source) = self.user.as_ref() else {
            return request.user().filter(|u| !u.is_empty()).map(str::to_owned);
        };
        let user = match source {
            UserSource::Closure(user) => guarded("user", None, || user(request)),
            UserSource::Header(name) => request.header(name).and_then(user::header_text),
            UserSource::JwtSubject => request.header("authorization").and_then(user::jwt_subject),
        };
        user.filter(|u| !u.is_empty())
    }
}

/// One request's way through the bindings, one check at a time: [`Policy::walk`] and
/// [`Policy::walk_now`] drive it, awaiting each check or not.
struct Walk<'a, S: Store, R> {
    policy: &'a Policy<S, R>,
    request: &'a R,
    cost: u64,
    defer: bool,
    next: usize,
    pending: Pending,
    /// The most restrictive answer so far, with the identifier it was for when denied.
    worst: Option<(Status, String)>,
    client: Option<Option<ClientKey>>,
    /// For [`Policy::decide`]: the answer that spoke, kept when the walk ends.
    concluded: Option<Option<(Status, String)>>,
}

/// What one binding asks of its rule.
struct Ask<'a, S: Store> {
    binding: usize,
    handle: &'a RuleHandle<S>,
    /// Set when the rule is the adaptive limiter's: it decides, at the client's limit.
    adaptive: Option<&'a AdaptiveLimiter<S>>,
    identifier: Identifier<'a>,
    cost: u64,
    /// Only look: an earlier rule already rejects the request, or counting is deferred (then a
    /// denial is checked for real, so it records the violation as any other would).
    peek: bool,
    defer: bool,
}

impl<S: Store> Ask<'_, S> {
    /// The answer without waiting, when the store gives it.
    fn now(&self) -> Option<ratethrottle::Result<Status>> {
        let id = self.identifier.as_str();
        if !self.peek {
            return self.check_now(id);
        }
        let peeked = match self.adaptive {
            Some(adaptive) => self.handle.peek_now_at_limit(id, adaptive.limit_for(id))?,
            None => self.handle.peek_now(id)?,
        };
        if self.recheck(&peeked) {
            return self.check_now(id);
        }
        Some(peeked)
    }

    fn check_now(&self, id: &str) -> Option<ratethrottle::Result<Status>> {
        match self.adaptive {
            Some(adaptive) => adaptive
                .check_n_now(id, self.cost, None)
                .map(|decided| decided.map(|d| d.status)),
            None => self.handle.check_now(id, self.cost),
        }
    }

    /// The answer, awaiting the store.
    async fn wait(&self) -> ratethrottle::Result<Status> {
        let id = self.identifier.as_str();
        if !self.peek {
            return self.check(id).await;
        }
        let peeked = match self.adaptive {
            Some(adaptive) => self.handle.peek_at_limit(id, adaptive.limit_for(id)).await,
            None => self.handle.peek(id).await,
        };
        if self.recheck(&peeked) {
            return self.check(id).await;
        }
        peeked
    }

    async fn check(&self, id: &str) -> ratethrottle::Result<Status> {
        match self.adaptive {
            Some(adaptive) => Ok(adaptive.check_n(id, self.cost, None).await?.status),
            None => self.handle.check_n(id, self.cost).await,
        }
    }

    /// Whether a deferred peek found the client over the limit: then it is checked for real.
    fn recheck(&self, peeked: &ratethrottle::Result<Status>) -> bool {
        self.defer && self.cost > 0 && peeked.as_ref().is_ok_and(|s| !s.allowed)
    }

    /// The error for a rule that left while the request was being checked.
    fn gone(&self) -> ratethrottle::Error {
        ratethrottle::Error::UnknownRule {
            rule: self.handle.name().to_owned(),
            known: Vec::new(),
        }
    }
}

impl<'a, S: Store, R: RequestView> Walk<'a, S, R> {
    /// The walk for `request` and its first check, or the admission when no rule needs asking;
    /// `keep` keeps the answer that spoke (for [`Policy::decide`]), `client` is the client key
    /// if already resolved.
    fn start(
        policy: &'a Policy<S, R>,
        request: &'a R,
        keep: bool,
        client: Option<Option<ClientKey>>,
    ) -> Result<(Self, Ask<'a, S>), Admission> {
        if !policy.switches.enabled() {
            return Err(Admission::Pass);
        }
        if let Some(exempt) = &policy.exempt
            && guarded("exempt_when", false, || exempt(request))
        {
            return Err(Admission::Pass);
        }
        let cost = policy
            .cost
            .as_ref()
            .map_or(1, |cost| guarded("cost", 1, || cost(request)));
        let mut walk = Walk {
            policy,
            request,
            cost,
            defer: policy.deduct_when.is_some(),
            next: 0,
            pending: Pending::default(),
            worst: None,
            client,
            concluded: keep.then_some(None),
        };
        let first = walk.next_ask()?;
        Ok((walk, first))
    }

    /// Takes in the answer to `ask`; the next check, or the admission once the walk is over.
    fn step(
        &mut self,
        ask: Ask<'a, S>,
        answer: ratethrottle::Result<Status>,
    ) -> Result<Ask<'a, S>, Admission> {
        match self.answered(ask, answer) {
            Some(done) => Err(done),
            None => self.next_ask(),
        }
    }

    /// The next check to make, or the admission once every binding is done.
    fn next_ask(&mut self) -> Result<Ask<'a, S>, Admission> {
        let policy = self.policy;
        while let Some(binding) = policy.bindings.get(self.next) {
            let at = self.next;
            self.next += 1;
            if binding
                .route
                .as_ref()
                .is_some_and(|r| !r.matches(self.request.method(), self.request.path()))
            {
                continue;
            }
            let handle = &policy.handles[at];
            let Some(scope) = handle.scope() else {
                tracing::warn!(rule = %binding.rule, "rule no longer exists; not applied");
                continue;
            };
            let Some(identifier) = policy.identifier(scope, self.request, &mut self.client) else {
                let rejection =
                    Rejection::of_kind(RejectionKind::UnknownPeer, "", policy.header_style);
                return Err(self.reject(rejection));
            };
            let rejected = self.worst.as_ref().is_some_and(|(s, _)| !s.allowed);
            let adaptive = policy
                .adaptive
                .as_deref()
                .filter(|adaptive| adaptive.rule().name() == handle.name());
            return Ok(Ask {
                binding: at,
                handle,
                adaptive,
                identifier,
                cost: self.cost,
                peek: rejected || self.defer || self.cost == 0,
                defer: self.defer && !rejected,
            });
        }
        Err(self.finish())
    }

    /// Takes in the answer to `ask`; the admission if it ends the walk early.
    fn answered(
        &mut self,
        ask: Ask<'a, S>,
        answer: ratethrottle::Result<Status>,
    ) -> Option<Admission> {
        let identifier = ask.identifier.as_str();
        let status = match answer {
            Ok(status) => status,
            Err(error) => {
                return self
                    .policy
                    .failure(error, identifier)
                    .map(|rejection| self.reject(rejection));
            }
        };
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &self.policy.prometheus
            && !ask.peek
        {
            metrics.record(ask.handle.name(), &status, self.cost.max(1), None);
        }
        if status.verdict == Verdict::Whitelisted {
            return None;
        }
        if let Some(analytics) = &self.policy.analytics
            && !ask.peek
        {
            let now = self.policy.limiter.now();
            analytics.record_request(identifier, ask.handle.name(), status.allowed, None, now);
        }
        if self.defer && status.allowed && self.cost > 0 {
            self.pending.deferred.push(Deferred {
                binding: ask.binding,
                identifier: identifier.to_owned(),
                cost: self.cost,
            });
        }
        if self
            .worst
            .as_ref()
            .is_none_or(|(w, _)| more_restrictive(&status, w))
        {
            let id = if status.allowed {
                String::new()
            } else {
                identifier.to_owned()
            };
            self.worst = Some((status, id));
        }
        None
    }

    fn reject(&mut self, rejection: Rejection) -> Admission {
        self.policy
            .reject_or_shadow(rejection, std::mem::take(&mut self.pending))
    }

    fn finish(&mut self) -> Admission {
        let pending = std::mem::take(&mut self.pending);
        if let Some(concluded) = &mut self.concluded {
            concluded.clone_from(&self.worst);
        }
        match self.worst.take() {
            Some((status, identifier)) if !status.allowed => {
                let rejection = Rejection::of_status(status, identifier, self.policy.header_style);
                self.policy.reject_or_shadow(rejection, pending)
            }
            Some((status, _)) => Admission::Admit(Pending {
                headers: (self.policy.switches.headers() && !self.policy.shadow).then_some(status),
                ..pending
            }),
            None if pending.deferred.is_empty() => Admission::Pass,
            None => Admission::Admit(pending),
        }
    }
}

/// Runs a user closure; a panic inside is logged and replaced by `fallback`, so one bad
/// request cannot take the connection (or others) down.
fn guarded<T>(what: &str, fallback: T, run: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
        tracing::error!("the {what} closure panicked; using its default for this request");
        fallback
    })
}

/// Whether `a` should speak for the request rather than `than`: blacklisted first, then
/// denied with the longest wait, then allowed with the least left.
fn more_restrictive(a: &Status, than: &Status) -> bool {
    let rank = |s: &Status| {
        let blacklisted = s.verdict == Verdict::Blacklisted;
        let wait = if s.allowed {
            None
        } else {
            Some(s.retry_after.unwrap_or(std::time::Duration::MAX))
        };
        (
            blacklisted,
            !s.allowed,
            wait,
            std::cmp::Reverse(s.remaining),
            s.reset_after,
        )
    };
    rank(a) > rank(than)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_whole_segments_and_methods() {
        assert!(Route::prefix("/api").matches("GET", "/api"));
        assert!(Route::prefix("/api/").matches("GET", "/api/users"));
        assert!(Route::prefix("/api").matches("DELETE", "/api/users/1"));
        assert!(!Route::prefix("/api").matches("GET", "/apis"));
        assert!(Route::prefix("/").matches("GET", "/anything"));
        let login = Route::prefix("/login").method("post").method("PUT");
        assert!(login.matches("POST", "/login") && login.matches("PUT", "/login"));
        assert!(!login.matches("GET", "/login"));
    }

    #[test]
    fn panicking_closures_fall_back() {
        assert_eq!(guarded("cost", 1, || panic!("boom")), 1);
        assert_eq!(guarded("cost", 1, || 5), 5);
    }
}
