//! The configuration schema: one struct per YAML section, with the original library's keys and
//! defaults. Every struct refuses unknown keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ratethrottle::store::FaultPolicy;
use ratethrottle::{Rule, Scope, Strategy, parse_rate};
#[cfg(feature = "redis")]
use ratethrottle_redis::TimeSource;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::values::{Fraction, Positive, RedisUrl, Seconds, Secret, named};

/// Declares a newtype over a `FromStr + Display` name (strategy, scope, …) that deserializes
/// with a "did you mean" hint and serializes as its name.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $names:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let names: Vec<&str> = $names;
                named(deserializer, &names).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A [`Strategy`] by its snake_case name.
    StrategyName(Strategy),
    Strategy::ALL.iter().map(|s| s.as_str()).collect()
);
name_type!(
    /// A [`Scope`] by its name (`ip`, `user`, `endpoint`, `global`).
    ScopeName(Scope),
    Scope::ALL.iter().map(|s| s.as_str()).collect()
);
name_type!(
    /// A [`FaultPolicy`] by its name (`fail_open`, `fail_closed`, `fallback_memory`).
    FaultPolicyName(FaultPolicy),
    vec!["fail_open", "fail_closed", "fallback_memory"]
);

/// The Redis store's default `list_cache_ttl` (equal to `ratethrottle_redis`'s; a test keeps
/// them equal).
const DEFAULT_LIST_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The whole configuration file. Missing sections take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Where limiter state lives.
    pub storage: StorageConfig,
    /// Switches that apply everywhere.
    pub global: GlobalConfig,
    /// The rate-limit rules.
    pub rules: Vec<RuleConfig>,
    /// Identifiers never limited.
    pub whitelist: Vec<String>,
    /// Identifiers always refused (optionally for a while).
    pub blacklist: Vec<BlacklistEntry>,
    /// DDoS detection (the original's `ddos_protection`, also accepted as `ddos`).
    #[serde(alias = "ddos")]
    pub ddos_protection: DdosConfig,
    /// The adaptive (learning) limiter.
    pub adaptive: AdaptiveConfig,
    /// Periodic metric snapshots.
    pub monitoring: MonitoringConfig,
    /// Alerts on thresholds, to Slack, webhooks, email and PagerDuty.
    pub alerting: AlertingConfig,
    /// WebSocket limits.
    pub websocket: WebSocketConfig,
    /// gRPC limits.
    pub grpc: GrpcConfig,
    /// GraphQL limits.
    pub graphql: GraphqlConfig,
    /// Request analytics.
    pub analytics: AnalyticsConfig,
    /// Remarks about settings that are accepted but have no effect here, and about unknown
    /// `RT_*` variables. Not part of the file.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `memory` (one process) or `redis` (shared by a fleet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// In this process only.
    #[default]
    Memory,
    /// In Redis (standalone, TLS, Sentinel or Cluster).
    Redis,
}

impl fmt::Display for StorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageKind::Memory => "memory",
            StorageKind::Redis => "redis",
        })
    }
}

/// The `storage` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StorageConfig {
    /// `memory` or `redis`.
    #[serde(rename = "type")]
    pub kind: StorageKind,
    /// `redis://[user:password@]host:port/db`, `rediss://…` (TLS) or `unix:///path`. The
    /// fields below override its parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<RedisUrl>,
    /// Redis host (default `localhost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Redis port (default 6379).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Redis database number (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    /// Redis ACL user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Redis password.
    #[serde(skip_serializing_if = "Secret::is_empty")]
    pub password: Secret,
    /// The original's nested form: `storage: {redis: {host, port, db, password}}`.
    #[serde(skip_serializing)]
    pub redis: Option<RedisAddress>,
    /// Prefix of every key (default `ratethrottle:`).
    pub key_prefix: String,
    /// Use TLS (`rediss://`).
    pub ssl: bool,
    /// A PEM file with the authority to trust for TLS instead of the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ca_certs: Option<PathBuf>,
    /// The longest one Redis call may take before the fault policy applies (default 0.05 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    /// The longest one attempt to connect may take, TLS and authentication included
    /// (default 1 s). Checks never wait for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Seconds>,
    /// Refuse to start while Redis cannot be reached (default false: start, answer by the
    /// fault policy, and connect in the background as soon as Redis answers). Credentials or
    /// a database that Redis refuses stop the start either way.
    pub require_connection: bool,
    /// What checks answer while Redis fails: `fail_open` (default), `fail_closed`,
    /// `fallback_memory`.
    pub fault_policy: FaultPolicyName,
    /// Whose clock decides: `server` (default, one clock for the fleet) or `caller`.
    pub time_source: TimeSourceName,
    /// How long a process may screen checks against its copy of the lists (default 1 s).
    pub list_cache_ttl: Seconds,
    /// Redis Sentinel: find the master through these sentinels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelConfig>,
    /// Redis Cluster: reach it through these nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// The original's redis-py connection options.
    pub options: RedisOptions,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Memory,
            url: None,
            host: None,
            port: None,
            db: None,
            username: None,
            password: Secret::default(),
            redis: None,
            key_prefix: "ratethrottle:".to_owned(),
            ssl: false,
            ssl_ca_certs: None,
            timeout: None,
            connect_timeout: None,
            require_connection: false,
            fault_policy: FaultPolicyName::default(),
            time_source: TimeSourceName::Server,
            list_cache_ttl: Seconds(DEFAULT_LIST_CACHE_TTL),
            sentinel: None,
            cluster: None,
            options: RedisOptions::default(),
        }
    }
}

/// The original's `storage.redis` block.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisAddress {
    /// Host.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Database number.
    pub db: Option<u32>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Secret,
    /// Key prefix (the original keeps it here; same as `storage.key_prefix`).
    pub key_prefix: Option<String>,
    /// As `storage.options.max_connections`.
    pub max_connections: Option<u32>,
    /// As `storage.options.socket_timeout`.
    pub socket_timeout: Option<Seconds>,
    /// As `storage.options.socket_connect_timeout`.
    pub socket_connect_timeout: Option<Seconds>,
    /// As `storage.options.retry_on_timeout`.
    pub retry_on_timeout: Option<bool>,
    /// As `storage.options.health_check_interval`.
    pub health_check_interval: Option<Seconds>,
}

/// `server` or `caller`: whose clock the Redis store uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSourceName {
    /// Redis's `TIME`: one clock for the whole fleet.
    #[default]
    Server,
    /// Each process's own clock.
    Caller,
}

#[cfg(feature = "redis")]
impl From<TimeSourceName> for TimeSource {
    fn from(name: TimeSourceName) -> Self {
        match name {
            TimeSourceName::Server => TimeSource::Server,
            TimeSourceName::Caller => TimeSource::Caller,
        }
    }
}

/// `storage.sentinel`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SentinelConfig {
    /// The monitored master's name (`service_name` in some clients).
    #[serde(alias = "service_name", alias = "master_name")]
    pub master: String,
    /// The sentinels, as `host:port` or `redis://host:port`.
    pub nodes: Vec<String>,
}

/// `storage.cluster`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Some of the cluster's nodes, as `host:port` or `redis://host:port`.
    pub nodes: Vec<String>,
}

/// `storage.options`: the original's redis-py options. `socket_timeout` sets the per-call
/// timeout when `storage.timeout` is not given, `socket_connect_timeout` the connect timeout
/// when `storage.connect_timeout` is not; the others are accepted for compatibility and
/// reported as having no effect (the store multiplexes one connection that reconnects itself).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Pool size in redis-py (no effect here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Per-call timeout, when `storage.timeout` is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_timeout: Option<Seconds>,
    /// Connect timeout, when `storage.connect_timeout` is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_connect_timeout: Option<Seconds>,
    /// Retry in redis-py (no effect here: the fault policy decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on_timeout: Option<bool>,
    /// Health checks in redis-py (no effect here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_interval: Option<Seconds>,
}

/// `global`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GlobalConfig {
    /// When false, adapters let every request through (and count nothing).
    pub enabled: bool,
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    pub log_level: LogLevel,
    /// Whether responses carry rate-limit headers (also accepted as `headers`).
    #[serde(alias = "headers")]
    pub headers_enabled: bool,
    /// The strategy of rules that do not name one (default `sliding_counter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_strategy: Option<StrategyName>,
    /// Log each request refused for exceeding a rule (at INFO: "Rate limit exceeded: …").
    pub log_violations: bool,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            enabled: true,
            log_level: LogLevel::Info,
            headers_enabled: true,
            default_strategy: None,
            log_violations: true,
        }
    }
}

/// A log level, named as in Python's `logging`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Problems that do not stop anything.
    Warning,
    /// Failures.
    Error,
    /// Only the worst (logged as errors).
    Critical,
}

impl LogLevel {
    /// The `tracing` level filter with the same meaning (`"warn"`, …).
    pub const fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical => "error",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_uppercase().as_str() {
            "DEBUG" | "TRACE" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARNING" | "WARN" => Ok(LogLevel::Warning),
            "ERROR" => Ok(LogLevel::Error),
            "CRITICAL" | "FATAL" => Ok(LogLevel::Critical),
            _ => Err(format!(
                "unknown log level {text:?}; expected DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        named(
            deserializer,
            &["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        )
    }
}

/// One rule: `limit` requests per `window` (or `rate: "100/minute"`), with its strategy, scope,
/// burst and block. Validated as it is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRule")]
#[non_exhaustive]
pub struct RuleConfig {
    /// Unique name.
    pub name: String,
    /// Requests per window.
    pub limit: u64,
    /// The window.
    pub window: Seconds,
    /// The strategy; `global.default_strategy` when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyName>,
    /// What the identifier stands for.
    pub scope: ScopeName,
    /// Burst capacity (default: `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// How long a violator stays blocked (default 300 s; 0 = no block).
    pub block_duration: Seconds,
}

impl RuleConfig {
    /// The core [`Rule`], with `default_strategy` when the rule names none.
    pub fn to_rule(&self, default_strategy: Strategy) -> Rule {
        let rule = Rule::new(self.name.clone(), self.limit, self.window.0)
            .strategy(self.strategy.map_or(default_strategy, |s| s.0))
            .scope(self.scope.0)
            .block_duration(self.block_duration.0);
        match self.burst {
            Some(burst) => rule.burst(burst),
            None => rule,
        }
    }
}

/// A rule as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    limit: Option<u64>,
    window: Option<Seconds>,
    rate: Option<RateText>,
    strategy: Option<StrategyName>,
    #[serde(default)]
    scope: ScopeName,
    burst: Option<u64>,
    block_duration: Option<Seconds>,
}

impl TryFrom<RawRule> for RuleConfig {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, String> {
        let name = raw.name;
        let (limit, window) = match (raw.rate, raw.limit, raw.window) {
            (Some(rate), None, None) => (rate.limit, Seconds(rate.window)),
            (Some(_), _, _) => {
                return Err(format!(
                    "rule {name:?}: give either `rate` or `limit` and `window`, not both"
                ));
            }
            (None, Some(limit), Some(window)) => (limit, window),
            (None, limit, _) => {
                let missing = if limit.is_none() { "limit" } else { "window" };
                return Err(format!(
                    "rule {name:?}: missing `{missing}` (give `limit` and `window`, or `rate: \"100/minute\"`)"
                ));
            }
        };
        let config = RuleConfig {
            name,
            limit,
            window,
            strategy: raw.strategy,
            scope: raw.scope,
            burst: raw.burst,
            block_duration: raw
                .block_duration
                .unwrap_or(Seconds(Rule::DEFAULT_BLOCK_DURATION)),
        };
        config
            .to_rule(Strategy::default())
            .validate()
            .map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// `"100/minute"`, parsed where it is written.
struct RateText {
    limit: u64,
    window: Duration,
}

impl<'de> Deserialize<'de> for RateText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;
        impl Visitor<'_> for RateVisitor {
            type Value = RateText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"100/minute\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RateText, E> {
                parse_rate(v)
                    .map(|(limit, window)| RateText { limit, window })
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_str(RateVisitor)
    }
}

/// A blacklist entry: an identifier, or `{identifier: …, duration: 3600}` for a while.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BlacklistEntry {
    /// Who is refused.
    pub identifier: String,
    /// For how long from when the configuration is applied (`None`: until removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<Seconds>,
}

impl BlacklistEntry {
    /// An entry for `identifier`, optionally expiring `duration` after it is applied.
    pub fn new(identifier: impl Into<String>, duration: Option<Duration>) -> Self {
        BlacklistEntry {
            identifier: identifier.into(),
            duration: duration.map(Seconds),
        }
    }
}

impl<'de> Deserialize<'de> for BlacklistEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = BlacklistEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an identifier, or {identifier: ..., duration: seconds}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BlacklistEntry, E> {
                Ok(BlacklistEntry::new(v, None))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BlacklistEntry, E> {
                Ok(BlacklistEntry::new(v.to_string(), None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BlacklistEntry, A::Error> {
                const FIELDS: &[&str] = &["identifier", "duration"];
                let (mut identifier, mut duration) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "identifier" | "id" => identifier = Some(map.next_value::<String>()?),
                        "duration" => duration = Some(map.next_value::<Seconds>()?),
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    }
                }
                let identifier =
                    identifier.ok_or_else(|| de::Error::missing_field("identifier"))?;
                Ok(BlacklistEntry {
                    identifier,
                    duration,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// `ddos_protection` (also `ddos`): detection of floods, bursts, scans and bots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DdosConfig {
    /// Whether DDoS protection runs.
    pub enabled: bool,
    /// Requests per `window` from one client that count as an attack.
    pub threshold: u64,
    /// The window of `threshold`.
    pub window: Seconds,
    /// Block attackers automatically.
    pub auto_block: bool,
    /// How long an automatic block lasts.
    pub block_duration: Seconds,
    /// Suspicion score (0–1) from which a client is suspicious.
    pub suspicious_threshold: Fraction,
    /// Distinct endpoints per window from which a client looks like a scanner.
    pub max_unique_endpoints: u64,
    /// Requests per `burst_window` that count as a burst.
    pub burst_threshold: u64,
    /// The window of `burst_threshold`.
    pub burst_window: Seconds,
    /// Requests closer together than this look automated.
    pub min_interval_threshold: Seconds,
    /// Stop analysing clients with a long good record.
    pub whitelist_on_good_behavior: bool,
    /// Requests without suspicion needed for that.
    pub good_behavior_threshold: u64,
    /// The most clients tracked at once (the oldest are forgotten first).
    pub max_tracked_identifiers: u64,
    /// Each automatic block of a repeat offender lasts this many times the one before (1:
    /// always `block_duration`, as in the original).
    pub block_increment: f64,
    /// The longest an escalated block lasts.
    pub max_block_duration: Seconds,
    /// How long a client's offences are remembered after its last one.
    pub offence_memory: Seconds,
}

impl DdosConfig {
    /// These settings for [`ratethrottle_protect::ddos::DdosProtection`].
    pub fn settings(&self) -> ratethrottle_protect::ddos::DdosSettings {
        let mut settings = ratethrottle_protect::ddos::DdosSettings::default();
        settings.enabled = self.enabled;
        settings.threshold = self.threshold;
        settings.window = self.window.0;
        settings.auto_block = self.auto_block;
        settings.block_duration = self.block_duration.0;
        settings.suspicious_threshold = self.suspicious_threshold.0;
        settings.max_unique_endpoints = self.max_unique_endpoints;
        settings.burst_threshold = self.burst_threshold;
        settings.burst_window = self.burst_window.0;
        settings.min_interval_threshold = self.min_interval_threshold.0;
        settings.whitelist_on_good_behavior = self.whitelist_on_good_behavior;
        settings.good_behavior_threshold = self.good_behavior_threshold;
        settings.max_tracked_identifiers =
            usize::try_from(self.max_tracked_identifiers).unwrap_or(usize::MAX);
        settings.block_increment = self.block_increment;
        settings.max_block_duration = self.max_block_duration.0;
        settings.offence_memory = self.offence_memory.0;
        settings
    }
}

impl Default for DdosConfig {
    fn default() -> Self {
        DdosConfig {
            enabled: true,
            threshold: 10_000,
            window: Seconds::new(60),
            auto_block: true,
            block_duration: Seconds::new(3600),
            suspicious_threshold: Fraction(0.5),
            max_unique_endpoints: 50,
            burst_threshold: 100,
            burst_window: Seconds::new(10),
            min_interval_threshold: Seconds::from_millis(100),
            whitelist_on_good_behavior: true,
            good_behavior_threshold: 1000,
            max_tracked_identifiers: 100_000,
            block_increment: 2.0,
            max_block_duration: Seconds::new(7 * 24 * 3600),
            offence_memory: Seconds::new(7 * 24 * 3600),
        }
    }
}

/// `adaptive`: the learning limiter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// Whether the adaptive limiter runs.
    pub enabled: bool,
    /// The starting limit per window.
    pub base_limit: u64,
    /// The window.
    pub window: Seconds,
    /// How fast it learns (0–1; 0.01 slow, 0.1 balanced, 0.3 fast).
    pub learning_rate: Fraction,
    /// Z-score from which traffic is anomalous (2 strict, 3 balanced, 4 lenient).
    pub anomaly_threshold: Positive,
    /// Whether clients earn trust.
    pub trust_enabled: bool,
    /// The lowest multiple of `base_limit` a client can get.
    pub min_multiplier: Positive,
    /// The highest multiple of `base_limit` a client can get.
    pub max_multiplier: Positive,
    /// Saving and loading what it learned.
    pub persistence: AdaptivePersistence,
    /// The rule the adjusted limits are enforced under; routes name it to be limited
    /// adaptively (not in the original).
    pub rule: String,
    /// The strategy enforcing them (the original's: sliding_counter).
    pub strategy: StrategyName,
    /// The most clients with a profile, the least recently seen forgotten first (not in the
    /// original, whose profiles grow without bound).
    pub max_profiles: u64,
}

impl AdaptiveConfig {
    /// These settings for [`ratethrottle_protect::adaptive::AdaptiveLimiter`].
    pub fn settings(&self) -> ratethrottle_protect::adaptive::AdaptiveSettings {
        let mut settings = ratethrottle_protect::adaptive::AdaptiveSettings::default();
        settings.base_limit = self.base_limit;
        settings.window = self.window.0;
        settings.learning_rate = self.learning_rate.0;
        settings.anomaly_threshold = self.anomaly_threshold.0;
        settings.trust_enabled = self.trust_enabled;
        settings.min_multiplier = self.min_multiplier.0;
        settings.max_multiplier = self.max_multiplier.0;
        settings.rule = self.rule.clone();
        settings.strategy = self.strategy.0;
        settings.max_profiles = usize::try_from(self.max_profiles).unwrap_or(usize::MAX);
        settings
    }
}

impl AdaptivePersistence {
    /// How the model is kept, when `enabled`.
    pub fn persistence(&self) -> Option<ratethrottle_protect::adaptive::Persistence> {
        if !self.enabled {
            return None;
        }
        let mut persistence = ratethrottle_protect::adaptive::Persistence::new(&self.filepath);
        persistence.save_every = Some(self.auto_save_interval.0).filter(|d| !d.is_zero());
        persistence.load_on_start = self.auto_load_on_start;
        Some(persistence)
    }
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            enabled: false,
            base_limit: 100,
            window: Seconds::new(60),
            learning_rate: Fraction(0.1),
            anomaly_threshold: Positive(3.0),
            trust_enabled: true,
            min_multiplier: Positive(0.5),
            max_multiplier: Positive(3.0),
            persistence: AdaptivePersistence::default(),
            rule: "adaptive".to_owned(),
            strategy: StrategyName(Strategy::SlidingCounter),
            max_profiles: 100_000,
        }
    }
}

/// `adaptive.persistence`: where the adaptive limiter keeps what it learned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdaptivePersistence {
    /// Whether the model is saved and loaded.
    pub enabled: bool,
    /// The model's file.
    pub filepath: PathBuf,
    /// Seconds between saves (0: only on shutdown).
    pub auto_save_interval: Seconds,
    /// Load the file when starting.
    pub auto_load_on_start: bool,
}

impl Default for AdaptivePersistence {
    fn default() -> Self {
        AdaptivePersistence {
            enabled: false,
            filepath: PathBuf::from("models/adaptive_model.json"),
            auto_save_interval: Seconds::new(3600),
            auto_load_on_start: true,
        }
    }
}

/// `websocket`: limits of WebSocket connections and messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Whether WebSocket limiting runs.
    pub enabled: bool,
    /// New connections per minute from one client.
    pub connections_per_minute: u64,
    /// Messages per minute from one client, over all its connections (as 1.4.0 counts them).
    pub messages_per_minute: u64,
    /// Connections one client may hold open at once (in each process).
    pub max_concurrent_connections: u64,
    /// The largest message, in bytes.
    pub max_message_size: u64,
    /// Bytes of messages per minute from one client (none: no bound; 1.4.0 counted messages).
    pub bytes_per_minute: Option<u64>,
}

impl WebSocketConfig {
    /// The section as the WebSocket guard's limits, per minute.
    pub fn limits(&self) -> ratethrottle_ws::WsLimits {
        ratethrottle_ws::WsLimits {
            connections_per_window: self.connections_per_minute,
            messages_per_window: self.messages_per_minute,
            messages_per_connection: None,
            bytes_per_window: self.bytes_per_minute,
            max_concurrent_connections: u32::try_from(self.max_concurrent_connections)
                .unwrap_or(u32::MAX),
            max_message_size: usize::try_from(self.max_message_size).unwrap_or(usize::MAX),
            window: Duration::from_secs(60),
        }
    }

    /// The rules enforcing the section: `ws_connections`, `ws_messages` and, with
    /// `bytes_per_minute`, `ws_bandwidth` (per minute, sliding_counter, no block).
    pub fn rules(&self) -> Vec<Rule> {
        self.limits().rules()
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            enabled: false,
            connections_per_minute: 60,
            messages_per_minute: 1000,
            max_concurrent_connections: 10,
            max_message_size: 65_536,
            bytes_per_minute: None,
        }
    }
}

/// `grpc`: limits of gRPC calls and streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GrpcConfig {
    /// Whether gRPC limiting runs.
    pub enabled: bool,
    /// Calls per minute from one client.
    pub requests_per_minute: u64,
    /// Calls one client may have running at once.
    pub concurrent_requests: u64,
    /// Stream messages per minute on one call.
    pub stream_messages_per_minute: u64,
}

impl GrpcConfig {
    /// The rule of calls per client (`requests_per_minute`).
    pub const CALL_RULE: &'static str = "grpc";
    /// The rule of messages per stream (`stream_messages_per_minute`).
    pub const STREAM_RULE: &'static str = "grpc_stream";

    /// The section's two rules: [`GrpcConfig::CALL_RULE`] and [`GrpcConfig::STREAM_RULE`],
    /// per minute, sliding_counter, no block after a violation (the next window decides).
    pub fn rules(&self) -> [Rule; 2] {
        let per_minute = |name: &str, limit: u64| {
            Rule::new(name, limit, Duration::from_secs(60)).block_duration(Duration::ZERO)
        };
        [
            per_minute(Self::CALL_RULE, self.requests_per_minute),
            per_minute(Self::STREAM_RULE, self.stream_messages_per_minute),
        ]
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            enabled: false,
            requests_per_minute: 1000,
            concurrent_requests: 50,
            stream_messages_per_minute: 5000,
        }
    }
}

/// `graphql`: limits of GraphQL operations, their complexity and depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GraphqlConfig {
    /// Whether GraphQL limiting runs.
    pub enabled: bool,
    /// Queries per minute from one client.
    pub queries_per_minute: u64,
    /// Mutations per minute from one client.
    pub mutations_per_minute: u64,
    /// Subscriptions per minute from one client.
    pub subscriptions_per_minute: u64,
    /// The most complex operation accepted.
    pub max_complexity: u64,
    /// The deepest operation accepted.
    pub max_depth: u64,
    /// Requests per minute for single fields, by field name.
    pub field_limits: std::collections::BTreeMap<String, u64>,
    /// The complexity of single fields, by field name.
    pub field_costs: std::collections::BTreeMap<String, u64>,
    /// A points budget per client (not in 1.4.0): `points` at most, restoring
    /// `restore_per_second`; each query is charged its cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<GraphqlBudget>,
}

/// `graphql.budget`: a points budget per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GraphqlBudget {
    /// The most points a client holds.
    pub points: u64,
    /// Points restored per second.
    pub restore_per_second: u64,
}

impl GraphqlConfig {
    /// The section as the GraphQL limits (`ratethrottle-graphql`).
    pub fn limits(&self) -> ratethrottle_graphql::GraphqlLimits {
        ratethrottle_graphql::GraphqlLimits {
            queries_per_minute: self.queries_per_minute,
            mutations_per_minute: self.mutations_per_minute,
            subscriptions_per_minute: self.subscriptions_per_minute,
            max_complexity: self.max_complexity,
            max_depth: u32::try_from(self.max_depth).unwrap_or(u32::MAX),
            field_limits: self.field_limits.clone(),
            budget: self.budget.map(|b| ratethrottle_graphql::Budget {
                points: b.points,
                restore_per_second: b.restore_per_second,
            }),
        }
    }

    /// The pricing of the section's `field_costs` (1.4.0's, depth-weighted).
    pub fn pricing(&self) -> ratethrottle_graphql::Pricing {
        ratethrottle_graphql::Pricing {
            field_costs: self.field_costs.clone().into_iter().collect(),
            ..ratethrottle_graphql::Pricing::default()
        }
    }

    /// The rules enforcing the section: `graphql_queries`, `graphql_mutations`,
    /// `graphql_subscriptions`, `graphql_field_<name>` and, with a budget, `graphql_points`.
    pub fn rules(&self) -> Vec<Rule> {
        self.limits().rules()
    }
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            enabled: false,
            queries_per_minute: 1000,
            mutations_per_minute: 100,
            subscriptions_per_minute: 50,
            max_complexity: 1000,
            max_depth: 15,
            field_limits: Default::default(),
            field_costs: Default::default(),
            budget: None,
        }
    }
}

/// `analytics`: the record of requests and violations for reports and exports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AnalyticsConfig {
    /// Whether analytics are recorded.
    pub enabled: bool,
    /// The most records kept.
    pub max_history: u64,
    /// Keep each request's metadata.
    pub enable_metadata: bool,
    /// Remove secrets and personal data from what is kept.
    pub sanitize_data: bool,
}

impl AnalyticsConfig {
    /// These settings for [`ratethrottle_protect::analytics::Analytics`].
    pub fn settings(&self) -> ratethrottle_protect::analytics::AnalyticsSettings {
        let mut settings = ratethrottle_protect::analytics::AnalyticsSettings::default();
        settings.max_history = usize::try_from(self.max_history).unwrap_or(usize::MAX);
        settings.enable_metadata = self.enable_metadata;
        settings.sanitize_data = self.sanitize_data;
        settings
    }
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            enabled: true,
            max_history: 10_000,
            enable_metadata: true,
            sanitize_data: true,
        }
    }
}

/// `monitoring`: periodic snapshots of the metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MonitoringConfig {
    /// Whether snapshots are taken (and, on Redis, published for `ratethrottle monitor`).
    pub enabled: bool,
    /// Seconds between snapshots.
    pub interval: Seconds,
    /// Log each snapshot.
    pub log_metrics: bool,
    /// Write each snapshot as JSON to `export_path`.
    pub export_json: bool,
    /// Where JSON snapshots go.
    pub export_path: PathBuf,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            enabled: true,
            interval: Seconds::new(60),
            log_metrics: true,
            export_json: false,
            export_path: PathBuf::from("metrics/metrics.json"),
        }
    }
}

/// `alerting`: thresholds and channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AlertingConfig {
    /// Whether alerts are sent.
    pub enabled: bool,
    /// The same alert is not repeated within this time.
    pub cooldown_seconds: Seconds,
    /// When to alert.
    pub thresholds: AlertThresholds,
    /// Slack incoming webhook.
    pub slack: SlackConfig,
    /// A generic JSON webhook.
    pub webhook: WebhookConfig,
    /// Email over SMTP.
    pub email: EmailConfig,
    /// PagerDuty Events API v2.
    pub pagerduty: PagerDutyConfig,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            enabled: false,
            cooldown_seconds: Seconds::new(300),
            thresholds: AlertThresholds::default(),
            slack: SlackConfig::default(),
            webhook: WebhookConfig::default(),
            email: EmailConfig::default(),
            pagerduty: PagerDutyConfig::default(),
        }
    }
}

/// `alerting.thresholds`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AlertThresholds {
    /// Block rate (%) for a warning.
    pub block_rate_warning: f64,
    /// Block rate (%) for a critical alert.
    pub block_rate_critical: f64,
    /// Violations per minute for a warning.
    pub violations_per_minute_warning: f64,
    /// Violations per minute for a critical alert.
    pub violations_per_minute_critical: f64,
    /// DDoS score (0–1) for a warning.
    pub ddos_score_warning: Fraction,
    /// DDoS score (0–1) for a critical alert.
    pub ddos_score_critical: Fraction,
    /// Store errors per minute for a warning (not in the original).
    pub store_errors_per_minute_warning: f64,
    /// Store errors per minute for a critical alert (not in the original).
    pub store_errors_per_minute_critical: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            block_rate_warning: 5.0,
            block_rate_critical: 20.0,
            violations_per_minute_warning: 50.0,
            violations_per_minute_critical: 200.0,
            ddos_score_warning: Fraction(0.5),
            ddos_score_critical: Fraction(0.8),
            store_errors_per_minute_warning: 1.0,
            store_errors_per_minute_critical: 60.0,
        }
    }
}

/// `alerting.slack`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SlackConfig {
    /// Whether to post to Slack.
    pub enabled: bool,
    /// The channel.
    pub channel: String,
    /// The name the message is posted under.
    pub username: String,
    /// The incoming-webhook URL (a secret; or `RT_SLACK_WEBHOOK_URL`).
    pub webhook_url: Secret,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            enabled: false,
            channel: "#alerts".to_owned(),
            username: "RateThrottle".to_owned(),
            webhook_url: Secret::default(),
        }
    }
}

/// `alerting.webhook`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Whether to post to the webhook.
    pub enabled: bool,
    /// Where to post (a secret: URLs often carry tokens; or `RT_WEBHOOK_URL`).
    pub url: Secret,
    /// Extra headers (values are secrets: they often carry tokens).
    pub headers: BTreeMap<String, Secret>,
    /// Request timeout.
    pub timeout: Seconds,
    /// Signs each body with HMAC-SHA256 (`X-RateThrottle-Signature: sha256=<hex>` of
    /// `<X-RateThrottle-Timestamp>.<body>`) when set (a secret; or `RT_WEBHOOK_SECRET`; not in
    /// the original).
    pub secret: Secret,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            enabled: false,
            url: Secret::default(),
            headers: BTreeMap::new(),
            timeout: Seconds::new(10),
            secret: Secret::default(),
        }
    }
}

/// `alerting.email`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EmailConfig {
    /// Whether to send email.
    pub enabled: bool,
    /// SMTP server.
    pub smtp_host: String,
    /// SMTP port.
    pub smtp_port: u16,
    /// STARTTLS.
    pub use_tls: bool,
    /// SMTP user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SMTP password (a secret; or `RT_EMAIL_PASSWORD`).
    pub password: Secret,
    /// Sender.
    pub from_address: String,
    /// Recipients.
    pub to_addresses: Vec<String>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            enabled: false,
            smtp_host: "localhost".to_owned(),
            smtp_port: 587,
            use_tls: true,
            username: None,
            password: Secret::default(),
            from_address: "alerts@example.com".to_owned(),
            to_addresses: vec!["ops@example.com".to_owned()],
        }
    }
}

/// `alerting.pagerduty`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PagerDutyConfig {
    /// Whether to open PagerDuty incidents.
    pub enabled: bool,
    /// The Events API v2 routing key (a secret; or `RT_PAGERDUTY_KEY`).
    pub routing_key: Secret,
    /// The Events API endpoint (PagerDuty's; the original cannot change it).
    pub url: String,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        PagerDutyConfig {
            enabled: false,
            routing_key: Secret::default(),
            url: ratethrottle_alert::PAGERDUTY_EVENTS_URL.to_owned(),
        }
    }
}

impl MonitoringConfig {
    /// The monitor's settings.
    pub fn settings(&self) -> ratethrottle_alert::MonitorSettings {
        let mut settings = ratethrottle_alert::MonitorSettings::default();
        settings.interval = self.interval.0;
        settings.log_metrics = self.log_metrics;
        settings.export_json = self.export_json;
        settings.export_path = self.export_path.clone();
        settings
    }
}

impl AlertingConfig {
    /// The dispatcher's settings: the enabled channels, with their secrets.
    pub fn settings(&self) -> ratethrottle_alert::AlertSettings {
        use ratethrottle_alert::{Email, Levels, PagerDuty, Slack, Webhook};
        let levels = |warning: f64, critical: f64| Levels { warning, critical };
        let secret = |s: &Secret| (!s.is_empty()).then(|| s.expose().to_owned());
        let t = &self.thresholds;
        let mut settings = ratethrottle_alert::AlertSettings::default();
        settings.enabled = self.enabled;
        settings.cooldown = self.cooldown_seconds.0;
        settings.thresholds.block_rate = levels(t.block_rate_warning, t.block_rate_critical);
        settings.thresholds.violations_per_minute = levels(
            t.violations_per_minute_warning,
            t.violations_per_minute_critical,
        );
        settings.thresholds.ddos_score = levels(t.ddos_score_warning.0, t.ddos_score_critical.0);
        settings.thresholds.store_errors_per_minute = levels(
            t.store_errors_per_minute_warning,
            t.store_errors_per_minute_critical,
        );
        settings.timeout = self.webhook.timeout.0;
        settings.slack = self.slack.enabled.then(|| Slack {
            webhook_url: self.slack.webhook_url.expose().to_owned(),
            channel: self.slack.channel.clone(),
            username: self.slack.username.clone(),
        });
        settings.webhook = self.webhook.enabled.then(|| Webhook {
            url: self.webhook.url.expose().to_owned(),
            headers: self
                .webhook
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.expose().to_owned()))
                .collect(),
            secret: secret(&self.webhook.secret),
        });
        settings.email = self.email.enabled.then(|| Email {
            smtp_host: self.email.smtp_host.clone(),
            smtp_port: self.email.smtp_port,
            use_tls: self.email.use_tls,
            username: self.email.username.clone(),
            password: secret(&self.email.password),
            from_address: self.email.from_address.clone(),
            to_addresses: self.email.to_addresses.clone(),
        });
        settings.pagerduty = self.pagerduty.enabled.then(|| PagerDuty {
            routing_key: self.pagerduty.routing_key.expose().to_owned(),
            url: self.pagerduty.url.clone(),
        });
        settings
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[test]
    fn the_list_cache_default_is_the_redis_stores() {
        assert_eq!(
            StorageConfig::default().list_cache_ttl.0,
            ratethrottle_redis::DEFAULT_LIST_CACHE_TTL
        );
    }
}
