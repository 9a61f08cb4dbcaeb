//! Configuration for ratethrottle: a YAML file with the original library's schema, `${VAR}`
//! interpolation and `RT_*` environment overrides, validated with errors that name the file,
//! line and column, then built into a ready [`Limiter`] over the configured store, with hot
//! reload.
//!
//! Priority: defaults < YAML < `RT_*` variables.
//!
//! ```
//! use ratethrottle_config::{Config, Environment};
//!
//! let yaml = r#"
//! rules:
//!   - name: api
//!     rate: 100/minute
//!     strategy: token_bucket
//!     burst: 120
//!   - name: login
//!     limit: 5
//!     window: 5m
//!     block_duration: 900
//! whitelist: ["10.0.0.1"]
//! "#;
//! let env = Environment::empty().with("RT_LOG_LEVEL", "WARNING");
//! let config = Config::from_yaml(yaml, "example.yaml", &env)?;
//! assert_eq!(config.rules.len(), 2);
//! assert_eq!(config.global.log_level.as_filter(), "warn");
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let limiter = config.build_limiter().await?;
//! assert!(limiter.check("203.0.113.7", "api").await?.allowed);
//! assert!(limiter.is_whitelisted("10.0.0.1").await?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//!
//! let error = Config::from_yaml("rules:\n  - name: api\n    limt: 5\n", "bad.yaml", &env)
//!     .unwrap_err();
//! assert!(error.to_string().starts_with("bad.yaml:3:5: rules[0]: unknown field `limt`"));
//! assert!(error.to_string().ends_with("(did you mean `limit`?)"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod env;
mod error;
mod guard;
mod locate;
mod reload;
mod schema;
mod store;
mod values;

use std::collections::BTreeMap;
use std::path::Path;
#[cfg(feature = "redis")]
use std::sync::Arc;
use std::time::Duration;

use ratethrottle::store::Store;
use ratethrottle::{Limiter, Rule, Strategy};
#[cfg(feature = "redis")]
use ratethrottle_redis::telemetry::Telemetry;

pub use env::{Environment, override_names};
pub use error::{ConfigError, Location};
pub use guard::LoadLimits;
pub use reload::{ConfigWatcher, ReloadStatus};
pub use schema::{
    AdaptiveConfig, AdaptivePersistence, AlertThresholds, AlertingConfig, AnalyticsConfig,
    BlacklistEntry, ClusterConfig, Config, DdosConfig, EmailConfig, FaultPolicyName, GlobalConfig,
    GraphqlBudget, GraphqlConfig, GrpcConfig, LogLevel, MonitoringConfig, PagerDutyConfig,
    RedisAddress, RedisOptions, RuleConfig, ScopeName, SentinelConfig, SlackConfig, StorageConfig,
    StorageKind, StrategyName, TimeSourceName, WebSocketConfig, WebhookConfig,
};
pub use store::ConfiguredStore;
pub use values::{Fraction, MASK, Positive, RedisUrl, Seconds, Secret, parse_bool};

/// The commented example configuration (what `ratethrottle config init` writes, and what the
/// command line uses when no file is given).
pub const EXAMPLE_YAML: &str = include_str!("example.yaml");

/// # Loading
impl Config {
    /// Reads `path` with the process's environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &Environment::from_process())
    }

    /// Reads `path` with the variables of `env` (and the file size limit of
    /// `RT_CONFIG_MAX_BYTES`, default 1 MiB).
    pub fn load_with_env(path: impl AsRef<Path>, env: &Environment) -> Result<Config, ConfigError> {
        Config::load_with_limits(path, env, &LoadLimits::from_env(env)?)
    }

    /// Reads `path` with the variables of `env` under `limits` (file size, nesting, aliases).
    /// Reading stops one byte past the size limit, so `/dev/zero` is refused, not read.
    pub fn load_with_limits(
        path: impl AsRef<Path>,
        env: &Environment,
        limits: &LoadLimits,
    ) -> Result<Config, ConfigError> {
        use std::io::Read;
        let path = path.as_ref();
        let origin = path.display().to_string();
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        let cap = u64::try_from(limits.max_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        file.take(cap).read_to_end(&mut bytes).map_err(read_error)?;
        if bytes.len() > limits.max_bytes {
            return Err(ConfigError::invalid(
                &origin,
                None,
                format!(
                    "the file is larger than {} bytes, the limit (set {} to allow more)",
                    limits.max_bytes,
                    LoadLimits::MAX_BYTES_VARIABLE
                ),
            ));
        }
        let text = guard::decode(bytes, &origin)?;
        Config::from_yaml_with_limits(&text, &origin, env, limits)
    }

    /// The built-in example ([`EXAMPLE_YAML`]) with the `RT_*` variables of `env` applied.
    pub fn builtin(env: &Environment) -> Result<Config, ConfigError> {
        Config::from_yaml(EXAMPLE_YAML, "<builtin>", env)
    }

    /// Parses `text` (from `origin`, used in messages) under the default [`LoadLimits`]:
    /// substitutes `${VAR}`, reads the YAML, applies the `RT_*` variables of `env` and
    /// validates the result.
    pub fn from_yaml(text: &str, origin: &str, env: &Environment) -> Result<Config, ConfigError> {
        Config::from_yaml_with_limits(text, origin, env, &LoadLimits::default())
    }

    /// [`Config::from_yaml`] under `limits`.
    pub fn from_yaml_with_limits(
        text: &str,
        origin: &str,
        env: &Environment,
        limits: &LoadLimits,
    ) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (text, substitutions) = guard::prepare(text, origin, env, limits)?;
        let has_content = text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
        let mut config: Config = if has_content {
            serde_yaml_ng::from_str(&text).map_err(|e| {
                let mut error = ConfigError::from_yaml(origin, &e);
                if let ConfigError::Invalid {
                    location, message, ..
                } = &mut error
                    && let Some(note) = substitutions.note_for(*location)
                {
                    message.push_str(&note);
                }
                error
            })?
        } else {
            Config::default()
        };
        let fail = |path: &str, message: String| {
            // `ddos_protection` may be spelled `ddos` in the file.
            let location = locate::locate(&text, path)
                .or_else(|| locate::locate(&text, &path.replacen("ddos_protection", "ddos", 1)));
            let note = substitutions.note_for(location).unwrap_or_default();
            ConfigError::invalid(origin, location, message + &note)
        };
        config.merge_nested_redis().map_err(|(p, m)| fail(p, m))?;
        env::apply_overrides(&mut config, env)?;
        config.validate().map_err(|(p, m)| fail(&p, m))?;
        config.note_ignored_settings();
        Ok(config)
    }

    /// The configuration as YAML, secrets masked (`config show`, `config export`).
    pub fn to_yaml(&self) -> String {
        // Serializing plain data structures cannot fail.
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }
}

/// # Using
impl Config {
    /// The rules as core [`Rule`]s (with `global.default_strategy` applied), and the adaptive
    /// limiter's rule when `adaptive` is enabled.
    pub fn rules(&self) -> Vec<Rule> {
        let default = self.default_strategy();
        let mut rules: Vec<Rule> = self.rules.iter().map(|r| r.to_rule(default)).collect();
        if self.adaptive.enabled {
            rules.push(self.adaptive.settings().as_rule());
        }
        if self.grpc.enabled {
            rules.extend(self.grpc.rules());
        }
        if self.websocket.enabled {
            rules.extend(self.websocket.rules());
        }
        if self.graphql.enabled {
            rules.extend(self.graphql.rules());
        }
        rules
    }

    fn default_strategy(&self) -> Strategy {
        self.global
            .default_strategy
            .map_or_else(Strategy::default, |s| s.0)
    }

    /// A limiter over the configured store with the rules and lists of this configuration.
    /// Connecting to Redis needs it to answer.
    pub async fn build_limiter(&self) -> Result<Limiter<ConfiguredStore>, ConfigError> {
        let store = ConfiguredStore::connect(&self.storage).await?;
        let limiter = Limiter::builder().store(store).build();
        self.apply_to(&limiter, None).await?;
        Ok(limiter)
    }

    /// Starts publishing `limiter`'s counts and violations to Redis each second, for
    /// `ratethrottle metrics`, `stats` and `monitor` (when `storage.type` is `redis` and
    /// `monitoring.enabled`; otherwise `None`). The task stops when the handle is dropped.
    #[cfg(feature = "redis")]
    pub fn start_telemetry(&self, limiter: &Limiter<ConfiguredStore>) -> Option<TelemetryTask> {
        let store = limiter.store().as_redis()?;
        if !self.monitoring.enabled {
            return None;
        }
        let telemetry = Arc::new(Telemetry::attach(limiter, store));
        let task = Arc::clone(&telemetry).spawn(limiter.clone(), Duration::from_secs(1));
        Some(TelemetryTask {
            telemetry,
            limiter: limiter.clone(),
            task,
        })
    }

    /// The `adaptive` section's limiter on `limiter` (which gains its rule), with the saver
    /// of its model when `persistence` is enabled; `None` when the section is disabled.
    #[allow(clippy::type_complexity)]
    pub fn build_adaptive<S: Store>(
        &self,
        limiter: &Limiter<S>,
    ) -> Result<
        Option<(
            std::sync::Arc<ratethrottle_protect::adaptive::AdaptiveLimiter<S>>,
            Option<ratethrottle_protect::adaptive::Saver>,
        )>,
        ratethrottle_protect::adaptive::AdaptiveError,
    > {
        if !self.adaptive.enabled {
            return Ok(None);
        }
        let adaptive = std::sync::Arc::new(ratethrottle_protect::adaptive::AdaptiveLimiter::new(
            limiter.clone(),
            self.adaptive.settings(),
        )?);
        let saver = match self.adaptive.persistence.persistence() {
            Some(persistence) => Some(adaptive.persist(persistence)?),
            None => None,
        };
        Ok(Some((adaptive, saver)))
    }

    /// The `ddos_protection` section's protection; `None` when the section is disabled.
    pub fn build_ddos(
        &self,
    ) -> Result<
        Option<std::sync::Arc<ratethrottle_protect::ddos::DdosProtection>>,
        ratethrottle_protect::ddos::SettingsError,
    > {
        if !self.ddos_protection.enabled {
            return Ok(None);
        }
        let ddos =
            ratethrottle_protect::ddos::DdosProtection::new(self.ddos_protection.settings())?;
        Ok(Some(std::sync::Arc::new(ddos)))
    }

    /// Starts the `monitoring` section's monitor of `limiter` (with DDoS protection's and
    /// analytics' figures when given): a snapshot every `interval`, logged and written as JSON
    /// as the section says, and checked against `alerting`'s thresholds when alerting is
    /// enabled, its cooldowns kept in the limiter's store (on Redis, shared by the fleet).
    /// `None` when monitoring is disabled. Runs on tokio until the handle is dropped.
    pub fn start_monitor(
        &self,
        limiter: &Limiter<ConfiguredStore>,
        ddos: Option<std::sync::Arc<ratethrottle_protect::ddos::DdosProtection>>,
        analytics: Option<std::sync::Arc<ratethrottle_protect::analytics::Analytics>>,
    ) -> Result<Option<ratethrottle_alert::MonitorTask>, ConfigError> {
        if !self.monitoring.enabled {
            return Ok(None);
        }
        let mut monitor =
            ratethrottle_alert::Monitor::new(limiter.clone(), self.monitoring.settings());
        if let Some(ddos) = ddos {
            monitor = monitor.ddos(ddos);
        }
        if let Some(analytics) = analytics {
            monitor = monitor.analytics(analytics);
        }
        if self.alerting.enabled {
            let dispatcher =
                ratethrottle_alert::Dispatcher::new(self.alerting.settings(), limiter.clone())
                    .map_err(|message| ConfigError::Invalid {
                        origin: "alerting".into(),
                        location: None,
                        message,
                    })?;
            monitor = monitor.alerts(dispatcher);
        }
        Ok(Some(monitor.start()))
    }

    /// Makes `limiter` follow this configuration: its rule set is replaced at once (unchanged
    /// rules keep their state and counters), and list entries are added — and, given the
    /// `previous` configuration, entries it had that this one dropped are removed. Entries
    /// added at run time (e.g. `ratethrottle manage`) are left alone.
    pub async fn apply_to(
        &self,
        limiter: &Limiter<ConfiguredStore>,
        previous: Option<&Config>,
    ) -> Result<(), ConfigError> {
        let store_error = |source| ConfigError::Store {
            kind: limiter.store().kind(),
            source,
        };
        let list_error = |e: ratethrottle::Error| match e {
            ratethrottle::Error::Store(source) => store_error(source),
            other => ConfigError::invalid("lists", None, other.to_string()),
        };
        limiter
            .set_rules(self.rules())
            .map_err(|e| ConfigError::invalid("rules", None, e.to_string()))?;
        if let Some(previous) = previous {
            for gone in previous
                .whitelist
                .iter()
                .filter(|id| !self.whitelist.contains(id))
            {
                limiter.whitelist_remove(gone).await.map_err(list_error)?;
            }
            let kept: Vec<&str> = self
                .blacklist
                .iter()
                .map(|e| e.identifier.as_str())
                .collect();
            for gone in previous
                .blacklist
                .iter()
                .filter(|e| !kept.contains(&e.identifier.as_str()))
            {
                limiter
                    .blacklist_remove(&gone.identifier)
                    .await
                    .map_err(list_error)?;
            }
        }
        for id in &self.whitelist {
            limiter.whitelist_add(id).await.map_err(list_error)?;
        }
        for entry in &self.blacklist {
            let unchanged = previous.is_some_and(|p| p.blacklist.contains(entry));
            if !unchanged {
                limiter
                    .blacklist_add(&entry.identifier, entry.duration.map(|d| d.0))
                    .await
                    .map_err(list_error)?;
            }
        }
        Ok(())
    }
}

/// Publishes a limiter's telemetry in the background (see [`Config::start_telemetry`]).
#[cfg(feature = "redis")]
#[derive(Debug)]
pub struct TelemetryTask {
    telemetry: Arc<Telemetry>,
    limiter: Limiter<ConfiguredStore>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "redis")]
impl TelemetryTask {
    /// Publishes what is not published yet, now (e.g. before the process exits).
    pub async fn flush(&self) -> Result<(), ratethrottle::store::StoreError> {
        self.telemetry.publish(&self.limiter).await
    }

    /// Adds a report to each publication (see [`Telemetry::report`]), such as an adaptive
    /// limiter's figures: `task.report("adaptive", move || adaptive.summary_json(10))`.
    pub fn report(&self, name: &str, make: impl Fn() -> String + Send + Sync + 'static) {
        self.telemetry.report(name, make);
    }
}

#[cfg(feature = "redis")]
impl Drop for TelemetryTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// # Checking
impl Config {
    /// Folds the original's `storage.redis` block into `storage`.
    fn merge_nested_redis(&mut self) -> Result<(), (&'static str, String)> {
        let Some(nested) = self.storage.redis.take() else {
            return Ok(());
        };
        fn merge<T: PartialEq + std::fmt::Debug>(
            top: &mut Option<T>,
            nested: Option<T>,
            key: &'static str,
        ) -> Result<(), (&'static str, String)> {
            match (top.as_ref(), nested) {
                (Some(a), Some(b)) if *a != b => Err((
                    "storage.redis",
                    format!(
                        "storage.{key} ({a:?}) and storage.redis.{} ({b:?}) disagree; give it once",
                        key.trim_start_matches("options.")
                    ),
                )),
                (None, Some(b)) => {
                    *top = Some(b);
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        merge(&mut self.storage.host, nested.host, "host")?;
        merge(&mut self.storage.port, nested.port, "port")?;
        merge(&mut self.storage.db, nested.db, "db")?;
        merge(&mut self.storage.username, nested.username, "username")?;
        if self.storage.password.is_empty() {
            self.storage.password = nested.password;
        }
        if let Some(prefix) = nested.key_prefix {
            let top = &mut self.storage.key_prefix;
            if *top != StorageConfig::default().key_prefix && *top != prefix {
                return Err((
                    "storage.redis",
                    format!(
                        "storage.key_prefix ({top:?}) and storage.redis.key_prefix ({prefix:?}) \
                         disagree; give it once"
                    ),
                ));
            }
            *top = prefix;
        }
        let options = &mut self.storage.options;
        merge(
            &mut options.max_connections,
            nested.max_connections,
            "options.max_connections",
        )?;
        merge(
            &mut options.socket_timeout,
            nested.socket_timeout,
            "options.socket_timeout",
        )?;
        merge(
            &mut options.socket_connect_timeout,
            nested.socket_connect_timeout,
            "options.socket_connect_timeout",
        )?;
        merge(
            &mut options.retry_on_timeout,
            nested.retry_on_timeout,
            "options.retry_on_timeout",
        )?;
        merge(
            &mut options.health_check_interval,
            nested.health_check_interval,
            "options.health_check_interval",
        )?;
        Ok(())
    }

    /// Checks across keys. Errors carry the key path they concern.
    fn validate(&self) -> Result<(), (String, String)> {
        let at = |path: String, message: String| Err((path, message));
        // The DDoS settings are checked where they are used (`ratethrottle_protect`).
        if let Err(error) = self.ddos_protection.settings().validate() {
            return at(format!("ddos_protection.{}", error.key), error.to_string());
        }
        if self.analytics.max_history == 0 {
            let message = "analytics.max_history must be at least 1, got 0".to_owned();
            return at("analytics.max_history".to_owned(), message);
        }
        let default = self.default_strategy();
        let mut names = BTreeMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(first) = names.insert(rule.name.as_str(), i) {
                return at(
                    format!("rules[{i}]"),
                    format!(
                        "rules[{i}]: duplicate rule name {:?} (already rules[{first}])",
                        rule.name
                    ),
                );
            }
            if let Err(e) = rule.to_rule(default).validate() {
                return at(format!("rules[{i}]"), format!("rules[{i}]: {e}"));
            }
        }
        let storage = &self.storage;
        if storage.kind == StorageKind::Redis {
            if let Some(Err(message)) = storage.url.as_ref().map(RedisUrl::parse) {
                return at("storage.url".into(), message);
            }
            if storage.sentinel.is_some() && storage.cluster.is_some() {
                return at(
                    "storage.cluster".into(),
                    "storage: give either sentinel or cluster, not both".into(),
                );
            }
            if let Some(s) = &storage.sentinel
                && (s.master.is_empty() || s.nodes.is_empty())
            {
                return at(
                    "storage.sentinel".into(),
                    "storage.sentinel needs `master` and at least one of `nodes`".into(),
                );
            }
            if storage.cluster.as_ref().is_some_and(|c| c.nodes.is_empty()) {
                return at(
                    "storage.cluster".into(),
                    "storage.cluster.nodes must list at least one node".into(),
                );
            }
            if storage.port == Some(0) {
                return at(
                    "storage.port".into(),
                    "storage.port must be a port number (1-65535), got 0".into(),
                );
            }
            #[cfg(feature = "redis")]
            {
                let addresses = storage.redis_config().and_then(|config| {
                    config
                        .check()
                        .map_err(|e| ConfigError::invalid("storage", None, e.to_string()))
                });
                if let Err(ConfigError::Invalid { message, .. }) = addresses {
                    let path = match (&storage.sentinel, &storage.cluster) {
                        (Some(_), _) => "storage.sentinel",
                        (_, Some(_)) => "storage.cluster",
                        _ => "storage.url",
                    };
                    return at(path.into(), format!("storage: {message}"));
                }
            }
            let timeouts = [
                ("storage.timeout", storage.timeout),
                ("storage.connect_timeout", storage.connect_timeout),
            ];
            for (key, timeout) in timeouts {
                if timeout.is_some_and(|t| t.0.is_zero()) {
                    return at(key.into(), format!("{key} must be above 0"));
                }
            }
        }
        let positive = [
            (
                "monitoring.interval",
                self.monitoring.interval.0 > Duration::ZERO,
            ),
            ("adaptive.base_limit", self.adaptive.base_limit > 0),
            ("adaptive.window", self.adaptive.window.0 > Duration::ZERO),
            (
                "adaptive.learning_rate",
                self.adaptive.learning_rate.0 > 0.0,
            ),
        ];
        for (path, ok) in positive {
            if !ok {
                return at(path.to_owned(), format!("{path} must be positive"));
            }
        }
        // Per enabled protocol section: its name, the keys that must be at least 1, its rules.
        type Section<'a> = (&'a str, Vec<(&'a str, u64)>, Vec<Rule>);
        let mut sections: Vec<Section<'_>> = Vec::new();
        if self.grpc.enabled {
            let g = &self.grpc;
            sections.push((
                "grpc",
                vec![
                    ("requests_per_minute", g.requests_per_minute),
                    ("concurrent_requests", g.concurrent_requests),
                    ("stream_messages_per_minute", g.stream_messages_per_minute),
                ],
                g.rules().into(),
            ));
        }
        if self.websocket.enabled {
            let w = &self.websocket;
            let mut at_least_one = vec![
                ("connections_per_minute", w.connections_per_minute),
                ("messages_per_minute", w.messages_per_minute),
                ("max_concurrent_connections", w.max_concurrent_connections),
                ("max_message_size", w.max_message_size),
            ];
            if let Some(bytes) = w.bytes_per_minute {
                at_least_one.push(("bytes_per_minute", bytes));
                if bytes < w.max_message_size {
                    return at(
                        "websocket.bytes_per_minute".into(),
                        format!(
                            "websocket.bytes_per_minute ({bytes}) is below \
                             websocket.max_message_size ({}): a message of the maximum size \
                             could never be sent",
                            w.max_message_size
                        ),
                    );
                }
            }
            sections.push(("websocket", at_least_one, w.rules()));
        }
        if self.graphql.enabled {
            let g = &self.graphql;
            let mut at_least_one = vec![
                ("queries_per_minute", g.queries_per_minute),
                ("mutations_per_minute", g.mutations_per_minute),
                ("subscriptions_per_minute", g.subscriptions_per_minute),
                ("max_complexity", g.max_complexity),
                ("max_depth", g.max_depth),
            ];
            if let Some(budget) = &g.budget {
                at_least_one.push(("budget.points", budget.points));
                at_least_one.push(("budget.restore_per_second", budget.restore_per_second));
            }
            if let Some((field, _)) = g.field_limits.iter().find(|&(_, &limit)| limit == 0) {
                let path = format!("graphql.field_limits.{field}");
                return at(path.clone(), format!("{path} must be at least 1"));
            }
            sections.push(("graphql", at_least_one, g.rules()));
        }
        for (section, at_least_one, rules) in sections {
            for (key, value) in at_least_one {
                if value == 0 {
                    let path = format!("{section}.{key}");
                    return at(path.clone(), format!("{path} must be at least 1"));
                }
            }
            let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
            if let Some(rule) = self.rules.iter().find(|r| names.contains(&r.name.as_str())) {
                return at(
                    format!("{section}.enabled"),
                    format!(
                        "the {section} section's rules are named {}; a rule in `rules` is \
                         named {:?} too: name it differently",
                        names.join(", "),
                        rule.name
                    ),
                );
            }
        }
        let a = &self.adaptive;
        if a.enabled {
            if self.rules.iter().any(|r| r.name == a.rule) {
                return at(
                    "adaptive.rule".into(),
                    format!(
                        "adaptive.rule {:?} is also the name of a rule in `rules`; the adaptive \
                         limiter enforces its limits under a rule of its own: name it differently",
                        a.rule
                    ),
                );
            }
            if let Err(ratethrottle_protect::adaptive::AdaptiveError::Setting { key, range, got }) =
                a.settings().validate()
            {
                let path = format!("adaptive.{key}");
                return at(path.clone(), format!("{path} must be {range}, got {got}"));
            }
        }
        if a.min_multiplier.0 > a.max_multiplier.0 {
            return at(
                "adaptive.min_multiplier".into(),
                format!(
                    "adaptive.min_multiplier ({}) is above adaptive.max_multiplier ({})",
                    a.min_multiplier.0, a.max_multiplier.0
                ),
            );
        }
        let t = &self.alerting.thresholds;
        for (name, warning, critical) in [
            ("block_rate", t.block_rate_warning, t.block_rate_critical),
            (
                "violations_per_minute",
                t.violations_per_minute_warning,
                t.violations_per_minute_critical,
            ),
            (
                "ddos_score",
                t.ddos_score_warning.0,
                t.ddos_score_critical.0,
            ),
            (
                "store_errors_per_minute",
                t.store_errors_per_minute_warning,
                t.store_errors_per_minute_critical,
            ),
        ] {
            if warning > critical || warning < 0.0 {
                return at(
                    format!("alerting.thresholds.{name}_warning"),
                    format!(
                        "alerting.thresholds.{name}_warning ({warning}) must be from 0 up to {name}_critical ({critical})"
                    ),
                );
            }
        }
        if self.alerting.enabled {
            let al = &self.alerting;
            let missing = [
                (
                    al.slack.enabled && al.slack.webhook_url.is_empty(),
                    "alerting.slack",
                    "Slack webhook_url not configured (set alerting.slack.webhook_url or RT_SLACK_WEBHOOK_URL)",
                ),
                (
                    al.webhook.enabled && al.webhook.url.is_empty(),
                    "alerting.webhook",
                    "Webhook url not configured (set alerting.webhook.url or RT_WEBHOOK_URL)",
                ),
                (
                    al.pagerduty.enabled && al.pagerduty.routing_key.is_empty(),
                    "alerting.pagerduty",
                    "PagerDuty routing_key not configured (set alerting.pagerduty.routing_key or RT_PAGERDUTY_KEY)",
                ),
                (
                    al.email.enabled && al.email.to_addresses.is_empty(),
                    "alerting.email",
                    "alerting.email.to_addresses is empty: name at least one recipient",
                ),
            ];
            for (wrong, path, message) in missing {
                if wrong {
                    return at(path.into(), format!("{path}: {message}"));
                }
            }
        }
        Ok(())
    }

    /// Warnings for settings that are accepted for compatibility but change nothing here.
    fn note_ignored_settings(&mut self) {
        let o = &self.storage.options;
        let ignored = [
            ("max_connections", o.max_connections.is_some()),
            ("retry_on_timeout", o.retry_on_timeout.is_some()),
            ("health_check_interval", o.health_check_interval.is_some()),
        ];
        for (key, set) in ignored {
            if set {
                self.warnings.push(format!(
                    "storage.options.{key} has no effect: the Redis store multiplexes one \
                     connection per process that reconnects by itself; storage.timeout and \
                     storage.fault_policy decide what a slow or failing Redis does"
                ));
            }
        }
        let overridden = [
            (
                "socket_timeout",
                "timeout",
                self.storage.timeout.is_some() && o.socket_timeout.is_some(),
            ),
            (
                "socket_connect_timeout",
                "connect_timeout",
                self.storage.connect_timeout.is_some() && o.socket_connect_timeout.is_some(),
            ),
        ];
        for (option, key, both) in overridden {
            if both {
                self.warnings.push(format!(
                    "storage.options.{option} is ignored because storage.{key} is set"
                ));
            }
        }
        for id in &self.whitelist {
            if self.blacklist.iter().any(|e| &e.identifier == id) {
                self.warnings.push(format!(
                    "{id:?} is on both the whitelist and the blacklist; the whitelist wins"
                ));
            }
        }
    }
}

/// The README's examples, compiled (and run, unless marked `no_run`) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
