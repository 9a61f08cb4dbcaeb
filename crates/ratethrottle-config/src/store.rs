//! [`ConfiguredStore`]: the store a configuration names, memory or Redis, behind one type.

use std::sync::Arc;
use std::time::Duration;

use ratethrottle::clock::Nanos;
use ratethrottle::store::{
    BackedStore, FaultStats, KeyValueNow, KeyValueStore, ListEntry, ListKind, MemoryStore, Outcome,
    Query, RuleSpec, SetMode, Store, StoreError, Value,
};
#[cfg(feature = "redis")]
use ratethrottle_redis::{RedisConfig, RedisStore};

use crate::error::ConfigError;
use crate::schema::{StorageConfig, StorageKind};
use crate::values::RedisUrl;

/// The store chosen by `storage.type`. The memory variant keeps the in-memory fast path (its
/// checks complete without a future).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConfiguredStore {
    /// `storage.type: memory`.
    Memory(MemoryStore),
    /// A key-value backend given in code, not in a file (such as a Python `StorageBackend`
    /// subclass): see [`BackedStore`].
    Backed(Arc<BackedStore<Arc<dyn KeyValueNow>>>),
    /// `storage.type: redis` (feature `redis`).
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

impl ConfiguredStore {
    /// Sets up the store `storage` describes. A Redis that cannot be reached is an error only
    /// with `storage.require_connection`; otherwise the store starts and connects later.
    pub async fn connect(storage: &StorageConfig) -> Result<Self, ConfigError> {
        match storage.kind {
            StorageKind::Memory => Ok(ConfiguredStore::Memory(MemoryStore::new())),
            #[cfg(not(feature = "redis"))]
            StorageKind::Redis => Err(ConfigError::invalid(
                "storage.type",
                None,
                "storage.type is redis, but this build has no Redis store: build \
                 ratethrottle-config with its `redis` feature (on by default)"
                    .to_owned(),
            )),
            #[cfg(feature = "redis")]
            StorageKind::Redis => {
                let config = storage.redis_config()?;
                RedisStore::with_config(config)
                    .await
                    .map(ConfiguredStore::Redis)
                    .map_err(|source| ConfigError::Store {
                        kind: "redis",
                        source,
                    })
            }
        }
    }

    /// The Redis store, when that is what was configured.
    #[cfg(feature = "redis")]
    pub fn as_redis(&self) -> Option<&RedisStore> {
        match self {
            ConfiguredStore::Redis(store) => Some(store),
            ConfiguredStore::Memory(_) | ConfiguredStore::Backed(_) => None,
        }
    }
}

impl StorageConfig {
    /// The Redis connection settings this section describes (feature `redis`): the URL (or
    /// `host`, `port`, `db`,
    /// `username`, `password`, `ssl`), Sentinel or Cluster nodes, and the store's options.
    #[cfg(feature = "redis")]
    pub fn redis_config(&self) -> Result<RedisConfig, ConfigError> {
        let invalid = |message: String| ConfigError::invalid("storage", None, message);
        let scheme = if self.ssl { "rediss" } else { "redis" };
        let node_url = |node: &String| {
            if node.contains("://") {
                node.clone()
            } else {
                format!("{scheme}://{node}")
            }
        };
        let mut config = if let Some(sentinel) = &self.sentinel {
            RedisConfig::sentinel(&sentinel.master, sentinel.nodes.iter().map(node_url))
        } else if let Some(cluster) = &self.cluster {
            RedisConfig::cluster(cluster.nodes.iter().map(node_url))
        } else {
            RedisConfig::new(self.redis_url()?)
        };
        if let Some(path) = &self.ssl_ca_certs {
            let pem = std::fs::read(path).map_err(|e| {
                invalid(format!(
                    "storage.ssl_ca_certs: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            config = config.tls_root_certificate(pem);
        }
        if let Some(timeout) = self.timeout.or(self.options.socket_timeout) {
            config = config.timeout(timeout.0);
        }
        let connect_timeout = self.connect_timeout.or(self.options.socket_connect_timeout);
        if let Some(timeout) = connect_timeout {
            config = config.connect_timeout(timeout.0);
        }
        Ok(config
            .key_prefix(self.key_prefix.clone())
            .fault_policy(self.fault_policy.0)
            .time(self.time_source.into())
            .list_cache_ttl(self.list_cache_ttl.0)
            .require_connection(self.require_connection))
    }

    /// The standalone server's URL: `url` (default `redis://localhost:6379/0`) with `host`,
    /// `port`, `db`, `username`, `password` and `ssl` applied over it.
    pub fn redis_url(&self) -> Result<String, ConfigError> {
        let base = self
            .url
            .clone()
            .unwrap_or_else(|| RedisUrl::new("redis://localhost:6379/0"));
        let mut url = base
            .parse()
            .map_err(|message| ConfigError::invalid("storage", None, message))?;
        let scheme = url.scheme().to_owned();
        let cannot = |what: &str| {
            ConfigError::invalid(
                "storage",
                None,
                format!("storage.{what} cannot be applied to a {scheme}:// URL"),
            )
        };
        if self.ssl && url.scheme() == "redis" {
            url.set_scheme("rediss").map_err(|()| cannot("ssl"))?;
        }
        if let Some(host) = &self.host {
            url.set_host(Some(host)).map_err(|_| cannot("host"))?;
        }
        if let Some(port) = self.port {
            url.set_port(Some(port)).map_err(|()| cannot("port"))?;
        }
        if let Some(db) = self.db {
            url.set_path(&format!("/{db}"));
        }
        if let Some(user) = &self.username {
            url.set_username(user).map_err(|()| cannot("username"))?;
        }
        if !self.password.is_empty() {
            url.set_password(Some(self.password.expose()))
                .map_err(|()| cannot("password"))?;
        }
        Ok(url.into())
    }
}

/// Runs the same call on whichever store this is.
macro_rules! either {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            ConfiguredStore::Memory($store) => $call,
            ConfiguredStore::Backed(backed) => {
                let $store = &**backed;
                $call
            }
            #[cfg(feature = "redis")]
            ConfiguredStore::Redis($store) => $call,
        }
    };
}

impl KeyValueStore for ConfiguredStore {
    async fn get(&self, key: &str, now: Nanos) -> Result<Option<Value>, StoreError> {
        either!(self, s => KeyValueStore::get(s, key, now).await)
    }

    async fn set(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        mode: SetMode,
        now: Nanos,
    ) -> Result<bool, StoreError> {
        either!(self, s => KeyValueStore::set(s, key, value, ttl, mode, now).await)
    }

    async fn increment(
        &self,
        key: &str,
        amount: i64,
        ttl: Option<Duration>,
        now: Nanos,
    ) -> Result<i64, StoreError> {
        either!(self, s => s.increment(key, amount, ttl, now).await)
    }

    async fn delete(&self, keys: &[&str], now: Nanos) -> Result<u64, StoreError> {
        either!(self, s => s.delete(keys, now).await)
    }

    async fn exists(&self, key: &str, now: Nanos) -> Result<bool, StoreError> {
        either!(self, s => s.exists(key, now).await)
    }

    async fn clear(&self) -> Result<u64, StoreError> {
        either!(self, s => KeyValueStore::clear(s).await)
    }
}

impl Store for ConfiguredStore {
    fn kind(&self) -> &'static str {
        either!(self, s => s.kind())
    }

    async fn check(&self, query: Query<'_>) -> Result<Outcome, StoreError> {
        either!(self, s => s.check(query).await)
    }

    #[inline]
    fn check_at_once(&self, query: &Query<'_>) -> Option<Result<Outcome, StoreError>> {
        either!(self, s => s.check_at_once(query))
    }

    #[inline]
    fn answers_at_once(&self) -> bool {
        either!(self, s => s.answers_at_once())
    }

    async fn reset(&self, rule: &RuleSpec, identifier: &str) -> Result<(), StoreError> {
        either!(self, s => s.reset(rule, identifier).await)
    }

    async fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires_at: Option<Nanos>,
    ) -> Result<(), StoreError> {
        either!(self, s => s.list_add(list, identifier, expires_at).await)
    }

    async fn list_remove(&self, list: ListKind, identifier: &str) -> Result<bool, StoreError> {
        either!(self, s => s.list_remove(list, identifier).await)
    }

    async fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: Nanos,
    ) -> Result<bool, StoreError> {
        either!(self, s => s.list_contains(list, identifier, now).await)
    }

    async fn list_entries(&self, list: ListKind, now: Nanos) -> Result<Vec<ListEntry>, StoreError> {
        either!(self, s => s.list_entries(list, now).await)
    }

    fn list_len_hint(&self, list: ListKind, now: Nanos) -> u64 {
        either!(self, s => s.list_len_hint(list, now))
    }

    fn fault_stats(&self) -> Option<FaultStats> {
        either!(self, s => Store::fault_stats(s))
    }
}
