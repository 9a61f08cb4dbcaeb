//! [`RedisConfig`]: how to reach Redis, name keys and ride out its failures.

use std::time::Duration;

use ratethrottle::store::{StoreError, StoreErrorKind};

use crate::FaultPolicy;

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
    /// Whether [`RedisStore::with_config`](crate::RedisStore::with_config) fails when Redis cannot be reached (default
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
        for url in self.addresses() {
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

    /// Makes [`RedisStore::with_config`](crate::RedisStore::with_config) fail when Redis cannot be reached (instead of
    /// starting and connecting in the background).
    #[must_use]
    pub fn require_connection(mut self, required: bool) -> Self {
        self.require_connection = required;
        self
    }

    /// The addresses the store connects to: the Sentinel nodes, the Cluster nodes, or the URL.
    fn addresses(&self) -> &[String] {
        if self.sentinel_master.is_some() {
            &self.sentinel_nodes
        } else if !self.cluster_nodes.is_empty() {
            &self.cluster_nodes
        } else {
            std::slice::from_ref(&self.url)
        }
    }

    /// Whether the store talks TLS (`rediss://`).
    pub(crate) fn uses_tls(&self) -> bool {
        self.addresses()
            .iter()
            .any(|url| url.starts_with("rediss://"))
    }

    /// Sets how long the process's copy of the lists may screen checks (zero: never).
    #[must_use]
    pub fn list_cache_ttl(mut self, ttl: Duration) -> Self {
        self.list_cache_ttl = ttl;
        self
    }
}

/// `url` without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
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
}
