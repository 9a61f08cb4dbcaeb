//! A Redis [`Store`] for [`ratethrottle`]: every process that shares the Redis server shares the
//! limits, the lists and the blocks.
//!
//! Each check is one round trip: one `EVALSHA` of a Lua script that screens the lists, honours
//! the block, applies the strategy and starts the block of a violation, atomically, and returns
//! the key's state before the request; this crate then derives `remaining`, `reset_after` and
//! `retry_after` with the very functions the in-memory store uses, so both stores give the same
//! answers. Ordinary bucket and window rules go to `fast.lua` (exact in doubles, several
//! concurrent checks per call); the rest to `check.lua`, which carries its own
//! arbitrary-precision integers. While the process's copy of the lists is fresh (at most
//! [`RedisConfig::list_cache_ttl`] old), checks screen against it instead of Redis.
//!
//! ```no_run
//! use ratethrottle::{Limiter, Rule};
//! use ratethrottle_redis::RedisStore;
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let limiter = Limiter::builder().store(store).build();
//! limiter.add_rule(Rule::new("api", 100, Duration::from_secs(60)))?;
//! let status = limiter.check("203.0.113.7", "api").await?;
//! # Ok(()) }
//! ```
//!
//! Keys (default prefix `ratethrottle:`): `ratethrottle:{i:<identifier>}:<rule fingerprint>`
//! holds a key's state (a 48-byte string for `fast.lua` rules; a hash, with a `:log` list for
//! sliding_window, for the others), and `ratethrottle:{i:<identifier>}:wl` / `:bl` its list
//! entries. The braces are a Redis Cluster hash tag: everything one check touches lives in one
//! slot. `ratethrottle:whitelist` and `ratethrottle:blacklist` index the listed identifiers,
//! `ratethrottle:lists_version` counts list changes. State keys expire once idle.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratethrottle::clock::Nanos;
use ratethrottle::store::{
    ListEntry, ListKind, MemoryStore, Outcome, Query, RuleSpec, Store, StoreError, StoreErrorKind,
    peek_view,
};
use ratethrottle::strategy::{self, Compact, Decision, State};
use redis::AsyncCommands;

mod batch;
mod connection;
mod fast;
mod faults;
mod lists;
pub mod telemetry;

use connection::{Connection, Opener, Pending, SentinelMaster, Standalone};
use faults::Breaker;
pub use faults::FaultPolicy;
use lists::{ListCache, Screen};
pub use ratethrottle::store::FaultStats;

/// The check script for everything `fast.lua` does not decide: exact integers, then the
/// decision.
const CHECK_SCRIPT: &str = concat!(include_str!("bignum.lua"), include_str!("check.lua"));

/// The default time one Redis call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// The default time connecting may take (TCP, TLS handshake, authentication).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The default [`RedisConfig::list_cache_ttl`].
pub const DEFAULT_LIST_CACHE_TTL: Duration = Duration::from_secs(1);

/// Whose clock decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeSource {
    /// The Redis server's `TIME` (microseconds): every process agrees, whatever its own clock.
    #[default]
    Server,
    /// The time the limiter passes in (its [`Clock`](ratethrottle::clock::Clock)): exact to
    /// the nanosecond and drivable by a `ManualClock` in tests; the processes' clocks must agree.
    Caller,
}

/// How to reach Redis and name keys.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS) or `redis+unix:///path`
    /// (for a cluster, the first seed node).
    pub url: String,
    /// Prepended to every key (default `ratethrottle:`).
    pub key_prefix: String,
    /// Whose clock decides (default [`TimeSource::Server`]).
    pub time: TimeSource,
    /// The most one call may take (default [`DEFAULT_TIMEOUT`]); past it the fault policy
    /// answers.
    pub timeout: Duration,
    /// The most one attempt to connect may take: TCP, the TLS handshake, authentication and
    /// a `PING` (default [`DEFAULT_CONNECT_TIMEOUT`]). Checks never wait for a connection.
    pub connect_timeout: Duration,
    /// Whether [`RedisStore::with_config`] fails when Redis cannot be reached (default
    /// `false`: the store starts, its fault policy answers, and it connects in the
    /// background as soon as Redis answers). Redis refusing the credentials or the database
    /// is an error at start either way.
    pub require_connection: bool,
    /// What checks answer while Redis is failing (default [`FaultPolicy::FailOpen`]).
    pub fault_policy: FaultPolicy,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each); empty for a standalone server
    /// at [`RedisConfig::url`].
    pub cluster_nodes: Vec<String>,
    /// The master name to ask Redis Sentinel for; `None` when not using Sentinel.
    pub sentinel_master: Option<String>,
    /// The Sentinel nodes (`redis://host:26379` each) when [`RedisConfig::sentinel_master`]
    /// is set.
    pub sentinel_nodes: Vec<String>,
    /// For `rediss://` URLs: the PEM certificate(s) of the authority that signed the server's
    /// certificate, trusted instead of the system's roots (e.g. a private CA). `None` uses the
    /// system's roots.
    pub tls_root_certificate: Option<Vec<u8>>,
    /// How long this process may screen identifiers against its own copy of the whitelist
    /// and blacklist (default [`DEFAULT_LIST_CACHE_TTL`]): an entry another process adds or
    /// removes takes effect here within this time (changes made here, at once). Zero screens
    /// every check in Redis.
    pub list_cache_ttl: Duration,
}

impl RedisConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: "ratethrottle:".to_owned(),
            time: TimeSource::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            require_connection: false,
            fault_policy: FaultPolicy::default(),
            cluster_nodes: Vec::new(),
            sentinel_master: None,
            sentinel_nodes: Vec::new(),
            tls_root_certificate: None,
            list_cache_ttl: DEFAULT_LIST_CACHE_TTL,
        }
    }

    /// The defaults for the master named `master` that the `sentinels` monitor. The store asks
    /// them for the master at start, and again whenever the master stops answering or refuses
    /// writes (after a failover).
    pub fn sentinel<S: Into<String>>(
        master: impl Into<String>,
        sentinels: impl IntoIterator<Item = S>,
    ) -> Self {
        let sentinels: Vec<String> = sentinels.into_iter().map(Into::into).collect();
        RedisConfig {
            sentinel_master: Some(master.into()),
            sentinel_nodes: sentinels.clone(),
            ..RedisConfig::new(sentinels.first().cloned().unwrap_or_default())
        }
    }

    /// Trusts the authority in `pem` (instead of the system's roots) for `rediss://` servers.
    #[must_use]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// The defaults for a Redis Cluster reached through `nodes` (any of its nodes will do; more
    /// than one survives one being down).
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        RedisConfig {
            cluster_nodes: nodes.clone(),
            ..RedisConfig::new(nodes.first().cloned().unwrap_or_default())
        }
    }

    /// Checks that every address parses as a Redis URL, without connecting: the scheme must
    /// be `redis://`, `rediss://` (TLS) or `unix://`.
    pub fn check(&self) -> Result<(), StoreError> {
        use redis::IntoConnectionInfo;
        let urls: Vec<&String> = if self.sentinel_master.is_some() {
            self.sentinel_nodes.iter().collect()
        } else if !self.cluster_nodes.is_empty() {
            self.cluster_nodes.iter().collect()
        } else {
            vec![&self.url]
        };
        for url in urls {
            let invalid = |why: String| {
                StoreError::new(
                    StoreErrorKind::Protocol,
                    format!("invalid Redis URL {:?}: {why}", redact(url)),
                )
            };
            let scheme = url.split_once("://").map(|(scheme, _)| scheme);
            if !matches!(scheme, Some("redis" | "rediss" | "unix" | "redis+unix")) {
                return Err(invalid(
                    "the scheme must be redis://, rediss:// (TLS) or unix://; write redis://host:6379/0"
                        .to_owned(),
                ));
            }
            url.as_str()
                .into_connection_info()
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// Sets what checks answer while Redis is failing.
    #[must_use]
    pub fn fault_policy(mut self, policy: FaultPolicy) -> Self {
        self.fault_policy = policy;
        self
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets whose clock decides.
    #[must_use]
    pub fn time(mut self, time: TimeSource) -> Self {
        self.time = time;
        self
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the time one attempt to connect may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Makes [`RedisStore::with_config`] fail when Redis cannot be reached (instead of
    /// starting and connecting in the background).
    #[must_use]
    pub fn require_connection(mut self, required: bool) -> Self {
        self.require_connection = required;
        self
    }

    /// Whether the store talks TLS (`rediss://`).
    fn uses_tls(&self) -> bool {
        let tls = |url: &String| url.starts_with("rediss://");
        tls(&self.url) || self.cluster_nodes.iter().any(tls) || self.sentinel_nodes.iter().any(tls)
    }

    /// Sets how long the process's copy of the lists may screen checks (zero: never).
    #[must_use]
    pub fn list_cache_ttl(mut self, ttl: Duration) -> Self {
        self.list_cache_ttl = ttl;
        self
    }
}

/// A [`Store`] in Redis, shared by every process that uses the same server and key prefix.
///
/// Cloning is cheap; clones share one multiplexed connection that reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    shared: Arc<Shared>,
}

struct Shared {
    config: RedisConfig,
    /// `host:port` (or the socket path), for error messages.
    address: String,
    script: redis::Script,
    fast_script: redis::Script,
    batcher: batch::Batcher,
    /// The process's copy of the lists.
    lists: ListCache,
    breaker: Breaker,
    /// Decides while Redis is down under [`FaultPolicy::FallbackMemory`]; mirrors the lists
    /// this process sets.
    fallback: MemoryStore,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.shared.address)
            .field("key_prefix", &self.shared.config.key_prefix)
            .field("time", &self.shared.config.time)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` with the default settings.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_config(RedisConfig::new(url)).await
    }

    /// Connects with `config`, trying once within [`RedisConfig::connect_timeout`].
    ///
    /// When Redis cannot be reached, the store starts anyway (unless
    /// [`RedisConfig::require_connection`]): its checks follow the fault policy, the outage is
    /// logged, and it connects in the background as soon as Redis answers. Fails, naming the
    /// server, when the configuration is wrong: a bad URL, credentials or database Redis
    /// refuses, a TLS certificate it cannot trust.
    pub async fn with_config(config: RedisConfig) -> Result<Self, StoreError> {
        if config.uses_tls() {
            // rustls needs one process-wide crypto provider; another one already installed is
            // fine too.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let (opener, address) = opener(&config)?;
        let breaker = Breaker::new(address.clone(), config.fault_policy);
        let connection = match opener.open(config.connect_timeout).await {
            Ok(connection) => connection,
            Err(error) if connection::unreachable(&error) && !config.require_connection => {
                breaker.failure(Instant::now(), &connect_failure(&config, &address, &error));
                let pending =
                    Pending::start(opener, &error, address.clone(), config.connect_timeout);
                Connection::Pending(pending)
            }
            Err(error) => return Err(connect_failure(&config, &address, &error)),
        };
        let list_cache_ttl = u64::try_from(config.list_cache_ttl.as_nanos()).unwrap_or(u64::MAX);
        Ok(RedisStore {
            connection,
            shared: Arc::new(Shared {
                config,
                address,
                script: redis::Script::new(CHECK_SCRIPT),
                fast_script: redis::Script::new(fast::SCRIPT),
                batcher: batch::Batcher::default(),
                lists: ListCache::new(list_cache_ttl),
                breaker,
                fallback: MemoryStore::new(),
            }),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Errors, degraded decisions and the circuit's state so far (also in the limiter's
    /// [`Metrics`](ratethrottle::Metrics)).
    pub fn fault_stats(&self) -> FaultStats {
        self.shared.breaker.stats()
    }

    /// A check through the circuit breaker, with the fault policy when Redis fails.
    async fn check_guarded(&self, query: Query<'_>) -> Result<Outcome, StoreError> {
        let shared = &*self.shared;
        // A listed identifier is answered here: that says nothing of Redis's health.
        let screen_in_redis = match shared.lists.screen(query.identifier, query.now) {
            Screen::Listed(outcome) => return Ok(outcome),
            Screen::Clear => false,
            Screen::Unknown => {
                self.refresh_lists_soon(query.now);
                true
            }
        };
        let error = match shared.breaker.allow(Instant::now()) {
            Err(wait) => StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "redis at {} is unavailable (circuit open after repeated failures; next \
                     try in {wait:?})",
                    shared.address
                ),
            ),
            Ok(()) => match self.decide(query, screen_in_redis).await {
                Ok(outcome) => {
                    shared.breaker.success();
                    return Ok(outcome);
                }
                // A reply we cannot read is a bug, not an outage: no policy hides it.
                Err(error) if error.kind() == StoreErrorKind::Protocol => return Err(error),
                Err(error) => {
                    if shared.breaker.failure(Instant::now(), &error) {
                        tracing::debug!(
                            target: "ratethrottle::redis",
                            "{error}; circuit open: checks skip redis until it answers again"
                        );
                    }
                    error
                }
            },
        };
        self.degrade(&query, error)
    }

    /// The fault policy's answer to `query` while Redis fails with `error`: the error, with
    /// the answer attached (see [`StoreError::with_fallback`]) unless failing closed.
    fn degrade(&self, query: &Query<'_>, error: StoreError) -> Result<Outcome, StoreError> {
        let shared = &*self.shared;
        shared.breaker.degraded();
        let answer = match shared.config.fault_policy {
            FaultPolicy::FailClosed => return Err(error),
            FaultPolicy::FallbackMemory => shared.fallback.check_now(query),
            _ => self
                .shared
                .lists
                .last_known(query.identifier, query.now)
                .unwrap_or_else(|| {
                    let capacity = query.rule.params.capacity;
                    Outcome::Decided {
                        decision: Decision {
                            allowed: true,
                            remaining: if query.consume {
                                capacity.saturating_sub(query.cost)
                            } else {
                                capacity
                            },
                            reset_after: 0,
                            retry_after: None,
                        },
                        blocked_until: None,
                    }
                }),
        };
        Err(error.with_fallback(answer))
    }

    fn key(&self, identifier: &str, suffix: &str) -> String {
        format!(
            "{}{{i:{identifier}}}:{suffix}",
            self.shared.config.key_prefix
        )
    }

    fn state_key(&self, rule: &RuleSpec, identifier: &str) -> String {
        self.key(identifier, &format!("{:016x}", rule.fingerprint))
    }

    fn list_key(&self, list: ListKind, identifier: &str) -> String {
        self.key(identifier, list_suffix(list))
    }

    fn index_key(&self, list: ListKind) -> String {
        format!("{}{}", self.shared.config.key_prefix, list.as_str())
    }

    /// A fleet telemetry key (all in one cluster slot).
    fn telemetry_key(&self, name: &str) -> String {
        format!("{}{{telemetry}}:{name}", self.shared.config.key_prefix)
    }

    /// A handle on the shared connection.
    fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// Where the store's server is: `host:port`, the socket path, or the Cluster or Sentinel
    /// nodes (passwords removed).
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// Like `run`, with at least 2 s for calls that carry more than one check (telemetry).
    async fn run_slow<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let limit = self.shared.config.timeout.max(Duration::from_secs(2));
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(|error| failure(&self.shared.address, error)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// The counter every list change increments.
    fn list_version_key(&self) -> String {
        format!("{}lists_version", self.shared.config.key_prefix)
    }

    /// Starts a refresh of the process's copy of the lists when it is due.
    fn refresh_lists_soon(&self, now: Nanos) {
        let lists = &self.shared.lists;
        if !lists.start_refresh(now) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            lists.refreshed();
            return;
        };
        let store = self.clone();
        runtime.spawn(async move {
            if let Err(error) = store.refresh_lists(now).await {
                tracing::debug!("list refresh failed (checks screen in redis meanwhile): {error}");
            }
            store.shared.lists.refreshed();
        });
    }

    async fn refresh_lists(&self, now: Nanos) -> Result<(), StoreError> {
        let lists = &self.shared.lists;
        let changes = lists.changes();
        let mut connection = self.connection.clone();
        let version: Option<u64> = self.run(connection.get(self.list_version_key())).await?;
        let version = version.unwrap_or(0);
        if lists.confirm(now, version) {
            return Ok(());
        }
        let white = self.read_list(ListKind::Whitelist, now).await?;
        let black = self.read_list(ListKind::Blacklist, now).await?;
        lists.install(now, version, [white, black], changes);
        Ok(())
    }

    /// Runs one command (or pipeline) within the timeout, naming the server on failure.
    async fn run<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let shared = &self.shared;
        match tokio::time::timeout(shared.config.timeout, call).await {
            Ok(result) => result.map_err(|error| failure(&shared.address, error)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> StoreError {
        let shared = &self.shared;
        StoreError::new(
            StoreErrorKind::Timeout,
            format!(
                "redis at {} did not answer within {:?}",
                shared.address, shared.config.timeout
            ),
        )
    }

    /// Whether the caller's time decides (else the server's).
    fn caller_time(&self) -> bool {
        self.shared.config.time == TimeSource::Caller
    }

    /// Every unexpired entry of `list`, read from Redis; expired ones are deleted.
    async fn read_list(&self, list: ListKind, now: Nanos) -> Result<Vec<ListEntry>, StoreError> {
        let mut connection = self.connection.clone();
        let mut identifiers: Vec<String> =
            self.run(connection.smembers(self.index_key(list))).await?;
        identifiers.sort();
        if identifiers.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline on a single server; key by key on a cluster, where the entries live in
        // different slots.
        let expiries: Vec<Option<String>> = if self.connection.is_cluster() {
            let mut expiries = Vec::with_capacity(identifiers.len());
            for identifier in &identifiers {
                let key = self.list_key(list, identifier);
                expiries.push(self.run(connection.get(key)).await?);
            }
            expiries
        } else {
            let mut pipe = redis::pipe();
            for identifier in &identifiers {
                pipe.get(self.list_key(list, identifier));
            }
            self.run(pipe.query_async(&mut connection)).await?
        };
        let mut entries = Vec::new();
        for (identifier, expiry) in identifiers.into_iter().zip(expiries) {
            match expiry {
                Some(expiry) if unexpired(&expiry, now) => {
                    entries.push(ListEntry::new(identifier, parse_seconds_nanos(&expiry)));
                }
                _ => {
                    let key = self.list_key(list, &identifier);
                    self.run(connection.del::<_, ()>(key)).await?;
                    let index = self.index_key(list);
                    self.run(connection.srem::<_, _, ()>(index, &identifier))
                        .await?;
                }
            }
        }
        Ok(entries)
    }

    /// After this process changed `list`: other processes' copies learn of it through the
    /// version, this one's at once.
    async fn lists_changed(
        &self,
        list: ListKind,
        identifier: &str,
        entry: Option<Option<Nanos>>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run(connection.incr::<_, _, ()>(self.list_version_key(), 1))
            .await?;
        self.shared.lists.record(list, identifier, entry);
        Ok(())
    }

    /// Decides `query` in Redis; `screen_in_redis` when the process's copy of the lists is not
    /// fresh enough to screen the identifier.
    async fn decide(&self, query: Query<'_>, screen_in_redis: bool) -> Result<Outcome, StoreError> {
        let rule = query.rule;
        if let Some(kind) = fast::kind(rule) {
            return self.decide_fast(query, kind, screen_in_redis).await;
        }
        let params = &rule.params;
        let kind = match rule.compact {
            Some(Compact::Tat) => "tat",
            Some(Compact::FixedWindow) => "fixed",
            Some(Compact::SlidingCounter) => "counter",
            None => "log",
        };
        let now = if self.caller_time() {
            hex(query.now.as_nanos())
        } else {
            String::new()
        };
        let mut invocation = self.shared.script.prepare_invoke();
        invocation
            .key(self.state_key(rule, query.identifier))
            .key(self.list_key(ListKind::Whitelist, query.identifier))
            .key(self.list_key(ListKind::Blacklist, query.identifier))
            .arg(kind)
            .arg(now)
            .arg(hex(query.cost))
            .arg(if query.consume { "1" } else { "0" })
            .arg(hex(rule.block))
            .arg(hex(params.limit))
            .arg(hex(params.window))
            .arg(hex(params.capacity));
        let mut connection = self.connection.clone();
        let reply: Vec<String> = self.run(invocation.invoke_async(&mut connection)).await?;
        Reply::new(&reply, &self.shared.address).outcome(&query)
    }
}

/// The script's number format: hexadecimal, six digits to one of its limbs.
fn hex(value: u64) -> String {
    format!("{value:x}")
}

/// A list entry's expiry as stored: `"seconds:nanoseconds"`, or `""` for none.
fn list_expiry(expires_at: Option<Nanos>) -> String {
    expires_at.map_or_else(String::new, |at| {
        let nanos = at.as_nanos();
        format!("{}:{}", nanos / 1_000_000_000, nanos % 1_000_000_000)
    })
}

/// A time written as `"seconds:nanoseconds"` (a list expiry, or a script's time), read back;
/// `None` for `""` or anything unreadable.
fn parse_seconds_nanos(expiry: &str) -> Option<Nanos> {
    let (seconds, nanos) = expiry.split_once(':')?;
    let nanos: u64 = nanos.parse().ok().filter(|&n| n < 1_000_000_000)?;
    let at = seconds.parse::<u64>().ok()?.checked_mul(1_000_000_000)?;
    Some(Nanos::from_nanos(at.checked_add(nanos)?))
}

fn list_suffix(list: ListKind) -> &'static str {
    match list {
        ListKind::Whitelist => "wl",
        ListKind::Blacklist => "bl",
    }
}

/// The script's answer, read field by field.
struct Reply<'a> {
    fields: &'a [String],
    address: &'a str,
}

impl<'a> Reply<'a> {
    fn new(fields: &'a [String], address: &'a str) -> Self {
        Reply { fields, address }
    }

    fn malformed(&self, what: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::Protocol,
            format!(
                "redis at {} sent an unexpected check reply ({what}): {:?}",
                self.address, self.fields
            ),
        )
    }

    fn text(&self, at: usize) -> Result<&'a str, StoreError> {
        self.fields
            .get(at)
            .map(String::as_str)
            .ok_or_else(|| self.malformed("too short"))
    }

    /// A decimal count.
    fn count(&self, at: usize) -> Result<u64, StoreError> {
        self.text(at)?
            .parse()
            .map_err(|_| self.malformed("not a count"))
    }

    /// A hexadecimal number that fits in 128 bits.
    fn wide(&self, at: usize) -> Result<u128, StoreError> {
        u128::from_str_radix(self.text(at)?, 16).map_err(|_| self.malformed("not a number"))
    }

    /// A hexadecimal number that fits in 64 bits, or a time as `"seconds:nanoseconds"`.
    fn number(&self, at: usize) -> Result<u64, StoreError> {
        let text = self.text(at)?;
        if text.contains(':') {
            return parse_seconds_nanos(text)
                .map(Nanos::as_nanos)
                .ok_or_else(|| self.malformed("not a time"));
        }
        u64::try_from(self.wide(at)?).map_err(|_| self.malformed("number too large"))
    }

    /// A time field, `None` when empty.
    fn time(&self, at: usize) -> Result<Option<Nanos>, StoreError> {
        match self.text(at)? {
            "" => Ok(None),
            _ => Ok(Some(Nanos::from_nanos(self.number(at)?))),
        }
    }

    fn outcome(&self, query: &Query<'_>) -> Result<Outcome, StoreError> {
        let now = self.number(1)?;
        match self.text(0)? {
            "white" => Ok(Outcome::Whitelisted),
            "black" => Ok(Outcome::Blacklisted {
                until: self.time(2)?,
            }),
            "blocked" => Ok(Outcome::Blocked {
                until: self
                    .time(2)?
                    .ok_or_else(|| self.malformed("no block end"))?,
            }),
            "decided" => {
                let allowed = self.text(2)? == "1";
                let blocked_until = self.time(3)?;
                let decision = match query.rule.compact {
                    Some(kind) => self.compact_decision(kind, query, now)?,
                    None => Decision {
                        allowed,
                        remaining: self.count(4)?,
                        reset_after: self.number(5)?,
                        retry_after: self.time(6)?.map(Nanos::as_nanos),
                    },
                };
                if decision.allowed != allowed {
                    return Err(self.malformed("the script and the strategy disagree"));
                }
                Ok(Outcome::Decided {
                    decision,
                    blocked_until,
                })
            }
            _ => Err(self.malformed("unknown outcome")),
        }
    }

    /// The decision from the key's state before the request, with the in-memory math.
    fn compact_decision(
        &self,
        kind: Compact,
        query: &Query<'_>,
        now: u64,
    ) -> Result<Decision, StoreError> {
        let state = match kind {
            Compact::Tat => {
                let scaled = self.wide(4)?;
                let limit = u128::from(query.rule.params.limit);
                let whole =
                    u64::try_from(scaled / limit).map_err(|_| self.malformed("TAT too large"))?;
                let frac = u64::try_from(scaled % limit).unwrap_or(0);
                State([whole, frac, 0])
            }
            Compact::FixedWindow => State([self.number(4)?, self.number(5)?, 0]),
            Compact::SlidingCounter => State([self.number(4)?, self.number(5)?, self.number(6)?]),
        };
        Ok(derive_decision(kind, query, &state, now))
    }
}

/// The decision for `query` at `now` from the key's state before it, with the in-memory math.
pub(crate) fn derive_decision(
    kind: Compact,
    query: &Query<'_>,
    state: &State,
    now: u64,
) -> Decision {
    let params = &query.rule.params;
    let (decision, _) = strategy::decide(kind, params, state, now, query.cost);
    if query.consume {
        decision
    } else {
        let idle = strategy::idle_at(kind, params, state, now);
        peek_view(decision, query.cost, idle, now)
    }
}

/// A Redis failure as a [`StoreError`] that names the server.
fn failure(address: &str, error: redis::RedisError) -> StoreError {
    if connection::refused(&error) {
        return StoreError::new(
            StoreErrorKind::Refused,
            format!(
                "redis at {address} refused us: {error} (check the user, password and \
                 database in the URL: redis://user:password@host:6379/0)"
            ),
        )
        .with_source(error);
    }
    if connection::server_unavailable(&error) {
        return StoreError::new(
            StoreErrorKind::Unavailable,
            format!("redis at {address} cannot serve now: {error}"),
        )
        .with_source(error);
    }
    let kind = if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
    {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Protocol
    };
    if error.kind() == redis::ErrorKind::Parse {
        // Something answered, but not in the Redis protocol (an HTTP server, a database).
        return StoreError::new(
            StoreErrorKind::Protocol,
            format!(
                "the server at {address} did not answer like Redis (is it a Redis or Valkey server, and is this its port?)"
            ),
        )
        .with_source(error);
    }
    let what = match kind {
        StoreErrorKind::Unavailable => "unreachable",
        StoreErrorKind::Timeout => "timed out",
        _ => "failed",
    };
    StoreError::new(kind, format!("redis at {address} {what}: {error}")).with_source(error)
}

/// A failure to connect, as [`failure`] words it, saying when TLS may be the cause.
fn connect_failure(config: &RedisConfig, address: &str, error: &redis::RedisError) -> StoreError {
    let base = failure(address, error.clone());
    let handshake = error.is_timeout() || connection::tls_failure(error);
    if config.uses_tls() && handshake {
        return StoreError::new(
            base.kind(),
            format!(
                "{base} (TLS: the handshake did not complete; is this port serving TLS? \
                 rediss:// needs a TLS-enabled Redis, redis:// a plain one)"
            ),
        )
        .with_source(error.clone());
    }
    base
}

/// The connection `config` describes, how to open it (again), and where it goes (for
/// messages).
fn opener(config: &RedisConfig) -> Result<(Opener, String), StoreError> {
    let invalid = |error: redis::RedisError| {
        StoreError::new(
            StoreErrorKind::Protocol,
            format!("invalid redis url {:?}: {error}", redact(&config.url)),
        )
    };
    // One quick retry: the circuit breaker, not the connection, rides out outages.
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100));
    if let Some(master) = &config.sentinel_master {
        let address = format!(
            "sentinel master {master:?} via {}",
            redact(&config.sentinel_nodes.join(","))
        );
        let (nodes, master) = (config.sentinel_nodes.clone(), master.clone());
        let sentinel = move || {
            redis::sentinel::SentinelClient::build(
                nodes.clone(),
                master.clone(),
                None,
                redis::sentinel::SentinelServerType::Master,
            )
        };
        // Fails now on a malformed node address, rather than on every attempt later.
        sentinel().map_err(invalid)?;
        let opener = Opener::new(false, move || {
            let (sentinel, manager_config) = (sentinel(), manager_config.clone());
            Box::pin(async move {
                let master = SentinelMaster::connect(sentinel?, manager_config).await?;
                answering(Connection::Sentinel(master)).await
            })
        });
        Ok((opener, address))
    } else if config.cluster_nodes.is_empty() {
        let client = match &config.tls_root_certificate {
            Some(root) => redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root.clone()),
                },
            ),
            None => redis::Client::open(config.url.as_str()),
        }
        .map_err(invalid)?;
        let address = client.get_connection_info().addr().to_string();
        let opener = Opener::new(false, move || {
            let (client, manager_config) = (client.clone(), manager_config.clone());
            Box::pin(async move {
                let standalone = Standalone::connect(client, manager_config).await?;
                answering(Connection::Standalone(standalone)).await
            })
        });
        Ok((opener, address))
    } else {
        let address = format!("cluster {}", redact(&config.cluster_nodes.join(",")));
        let client = redis::cluster::ClusterClientBuilder::new(config.cluster_nodes.clone())
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.timeout)
            .retries(2)
            .build()
            .map_err(invalid)?;
        let opener = Opener::new(true, move || {
            let client = client.clone();
            Box::pin(async move {
                let cluster = client.get_async_connection().await?;
                answering(Connection::Cluster(cluster)).await
            })
        });
        Ok((opener, address))
    }
}

/// `connection` once it has answered a `PING`: a server that wants a password (or a
/// database that does not exist) says so now, not on the first check.
async fn answering(mut connection: Connection) -> redis::RedisResult<Connection> {
    redis::cmd("PING")
        .query_async::<()>(&mut connection)
        .await?;
    Ok(connection)
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn check(&self, query: Query<'_>) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        self.check_guarded(query)
    }

    async fn reset(&self, rule: &RuleSpec, identifier: &str) -> Result<(), StoreError> {
        let state = self.state_key(rule, identifier);
        let log = format!("{state}:log");
        let mut connection = self.connection.clone();
        self.run(connection.del::<_, ()>(&[state, log])).await
    }

    async fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires_at: Option<Nanos>,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        let key = self.list_key(list, identifier);
        pipe.set(&key, list_expiry(expires_at)).ignore();
        // Redis drops the entry itself at its expiry when Redis's clock is the one deciding;
        // with the caller's clock (which may be a test's), expired entries are dropped when
        // next seen.
        if let (Some(at), TimeSource::Server) = (expires_at, self.shared.config.time) {
            pipe.cmd("PEXPIREAT")
                .arg(&key)
                .arg(at.as_nanos().div_ceil(1_000_000))
                .ignore();
        }
        let mut connection = self.connection.clone();
        self.run(pipe.query_async::<()>(&mut connection)).await?;
        self.run(connection.sadd::<_, _, ()>(self.index_key(list), identifier))
            .await?;
        self.lists_changed(list, identifier, Some(expires_at))
            .await?;
        self.shared
            .fallback
            .list_add(list, identifier, expires_at)
            .await
    }

    async fn list_remove(&self, list: ListKind, identifier: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let removed: u64 = self
            .run(connection.del(self.list_key(list, identifier)))
            .await?;
        self.run(connection.srem::<_, _, ()>(self.index_key(list), identifier))
            .await?;
        self.lists_changed(list, identifier, None).await?;
        self.shared.fallback.list_remove(list, identifier).await?;
        Ok(removed > 0)
    }

    async fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: Nanos,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let entry: Option<String> = self
            .run(connection.get(self.list_key(list, identifier)))
            .await?;
        Ok(entry.is_some_and(|expiry| unexpired(&expiry, now)))
    }

    async fn list_entries(&self, list: ListKind, now: Nanos) -> Result<Vec<ListEntry>, StoreError> {
        let entries = self.read_list(list, now).await?;
        self.shared.lists.replace_list(list, &entries);
        Ok(entries)
    }

    fn list_len_hint(&self, list: ListKind, now: Nanos) -> u64 {
        self.shared.lists.len(list, now)
    }

    fn fault_stats(&self) -> Option<FaultStats> {
        Some(self.shared.breaker.stats())
    }
}

/// Whether a list entry's stored expiry (see [`list_expiry`]) is after `now`.
fn unexpired(expiry: &str, now: Nanos) -> bool {
    expiry.is_empty() || parse_seconds_nanos(expiry).is_some_and(|at| at > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn list_expiries_compare_exactly() {
        let now = Nanos::from_nanos(1_767_225_600_000_000_000);
        assert!(unexpired("", now));
        let at = |nanos| list_expiry(Some(Nanos::from_nanos(nanos)));
        assert_eq!(at(1_767_225_600_000_000_001), "1767225600:1");
        assert!(unexpired(&at(1_767_225_600_000_000_001), now));
        assert!(!unexpired(&at(1_767_225_600_000_000_000), now));
        assert!(!unexpired("1767225600:1000000000", now));
        assert!(!unexpired("garbage", now));
    }
}

/// The README's examples, compiled (and run, unless marked `no_run`) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
