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
//! holds a key's state (a 48-byte string for `lua/fast.lua` rules; a hash, with a `:log` list for
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
};
use ratethrottle::strategy::Decision;
use redis::AsyncCommands;

mod batch;
mod check;
mod config;
mod connection;
mod errors;
mod fast;
mod faults;
mod keys;
mod kv;
mod lists;
pub mod telemetry;

use connection::{Connection, Pending};
use errors::{connect_failure, failure};
use faults::Breaker;
use keys::{list_expiry, unexpired};
use lists::{ListCache, Screen};

pub(crate) use check::derive_decision;
pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_LIST_CACHE_TTL, DEFAULT_TIMEOUT, RedisConfig, TimeSource,
};
pub use kv::ScriptReply;
pub use ratethrottle::store::{FaultPolicy, FaultStats};

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
        let (opener, address) = connection::opener(&config)?;
        let breaker = Breaker::new(address.clone(), config.fault_policy);
        let connection = match opener.open(config.connect_timeout).await {
            Ok(connection) => connection,
            Err(error) if errors::unreachable(&error) && !config.require_connection => {
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
                script: redis::Script::new(check::CHECK_SCRIPT),
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
            _ => shared
                .lists
                .last_known(query.identifier, query.now)
                .unwrap_or_else(|| {
                    let capacity = query.params.capacity;
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

/// The README's examples, compiled (and run, unless marked `no_run`) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
