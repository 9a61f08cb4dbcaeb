//! The environment: `${VAR}` / `${VAR:-default}` interpolation in the file, and the `RT_*`
//! variables that override it.

use ratethrottle::identifier::elide;
use std::collections::BTreeMap;

use crate::error::{ConfigError, did_you_mean};
use crate::schema::{Config, LogLevel, StorageKind};
use crate::values::{MASK, RedisUrl, Seconds, Secret, parse_bool};

/// A set of environment variables: the process's ([`Environment::from_process`]) or given ones
/// (tests, embedding).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The process's variables (those that are valid UTF-8).
    pub fn from_process() -> Self {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// No variables at all.
    pub fn empty() -> Self {
        Environment::default()
    }

    /// Adds (or replaces) `name=value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Environment {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in one scalar's `value`; `$${` is a literal `${`.
/// Returns the new value and the variables used. A variable that is not set and has no default
/// is an error naming it.
pub(crate) fn substitute(value: &str, env: &Environment) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(value.len());
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err("unclosed \"${\": write ${VAR} or ${VAR:-default}".to_owned());
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid variable name {:?} in \"${{{}}}\"",
                elide(name),
                elide(inner)
            ));
        }
        let value = match (env.get(name), default) {
            (Some(value), None) => value,
            (Some(value), Some(_)) if !value.is_empty() => value,
            (_, Some(default)) => default,
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (referenced as ${{{name}}}; \
                     write ${{{name}:-default}} for a fallback)"
                ));
            }
        };
        out.push_str(value);
        names.push(name.to_owned());
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok((out, names))
}

/// One `RT_*` variable: its name, whether its value is a secret, and how it applies.
struct Override {
    name: &'static str,
    secret: bool,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.trim().parse().map_err(|_| format!("expected {what}"))
}

fn positive(text: &str) -> Result<u64, String> {
    match number::<u64>(text, "a whole number above 0")? {
        0 => Err("expected a whole number above 0".to_owned()),
        n => Ok(n),
    }
}

fn seconds(text: &str) -> Result<Seconds, String> {
    Seconds::parse(text)
}

/// Every variable the original documents, plus `RT_REDIS_URL`.
const OVERRIDES: &[Override] = &[
    Override {
        name: "RT_STORAGE_TYPE",
        secret: false,
        apply: |c, v| {
            c.storage.kind = match v.trim().to_ascii_lowercase().as_str() {
                "memory" => StorageKind::Memory,
                "redis" => StorageKind::Redis,
                _ => return Err("expected memory or redis".to_owned()),
            };
            Ok(())
        },
    },
    Override {
        name: "RT_REDIS_URL",
        secret: true,
        apply: |c, v| {
            url::Url::parse(v).map_err(|e| format!("expected a redis:// URL ({e})"))?;
            #[cfg(feature = "redis")]
            ratethrottle_redis::RedisConfig::new(v)
                .check()
                .map_err(|e| e.to_string())?;
            c.storage.url = Some(RedisUrl::new(v));
            Ok(())
        },
    },
    Override {
        name: "RT_REDIS_HOST",
        secret: false,
        apply: |c, v| {
            c.storage.host = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Override {
        name: "RT_REDIS_PORT",
        secret: false,
        apply: |c, v| {
            let port = number(v, "a port number (1-65535)")?;
            if port == 0 {
                return Err("expected a port number (1-65535)".to_owned());
            }
            c.storage.port = Some(port);
            Ok(())
        },
    },
    Override {
        name: "RT_REDIS_DB",
        secret: false,
        apply: |c, v| {
            c.storage.db = Some(number(v, "a database number")?);
            Ok(())
        },
    },
    Override {
        name: "RT_REDIS_PASSWORD",
        secret: true,
        apply: |c, v| {
            c.storage.password = Secret::new(v);
            Ok(())
        },
    },
    Override {
        name: "RT_REDIS_KEY_PREFIX",
        secret: false,
        apply: |c, v| {
            c.storage.key_prefix = v.to_owned();
            Ok(())
        },
    },
    Override {
        name: "RT_ENABLED",
        secret: false,
        apply: |c, v| {
            c.global.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_LOG_LEVEL",
        secret: false,
        apply: |c, v| {
            c.global.log_level = v.parse::<LogLevel>()?;
            Ok(())
        },
    },
    Override {
        name: "RT_HEADERS_ENABLED",
        secret: false,
        apply: |c, v| {
            c.global.headers_enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_DDOS_ENABLED",
        secret: false,
        apply: |c, v| {
            c.ddos_protection.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_DDOS_THRESHOLD",
        secret: false,
        apply: |c, v| {
            c.ddos_protection.threshold = positive(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_DDOS_BLOCK_DURATION",
        secret: false,
        apply: |c, v| {
            c.ddos_protection.block_duration = seconds(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_DDOS_BLOCK_INCREMENT",
        secret: false,
        apply: |c, v| {
            c.ddos_protection.block_increment = number(v, "a number from 1 to 1000")?;
            Ok(())
        },
    },
    Override {
        name: "RT_ANALYTICS_ENABLED",
        secret: false,
        apply: |c, v| {
            c.analytics.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_ADAPTIVE_ENABLED",
        secret: false,
        apply: |c, v| {
            c.adaptive.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_ADAPTIVE_BASE_LIMIT",
        secret: false,
        apply: |c, v| {
            c.adaptive.base_limit = positive(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_ADAPTIVE_MODEL_PATH",
        secret: false,
        apply: |c, v| {
            c.adaptive.persistence.filepath = v.into();
            Ok(())
        },
    },
    Override {
        name: "RT_MONITORING_ENABLED",
        secret: false,
        apply: |c, v| {
            c.monitoring.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_MONITORING_INTERVAL",
        secret: false,
        apply: |c, v| {
            c.monitoring.interval = Seconds::new(positive(v)?);
            Ok(())
        },
    },
    Override {
        name: "RT_ALERTING_ENABLED",
        secret: false,
        apply: |c, v| {
            c.alerting.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    Override {
        name: "RT_SLACK_WEBHOOK_URL",
        secret: true,
        apply: |c, v| {
            c.alerting.slack.webhook_url = Secret::new(v);
            Ok(())
        },
    },
    Override {
        name: "RT_WEBHOOK_URL",
        secret: true,
        apply: |c, v| {
            c.alerting.webhook.url = Secret::new(v);
            Ok(())
        },
    },
    Override {
        name: "RT_WEBHOOK_SECRET",
        secret: true,
        apply: |c, v| {
            c.alerting.webhook.secret = Secret::new(v);
            Ok(())
        },
    },
    Override {
        name: "RT_EMAIL_PASSWORD",
        secret: true,
        apply: |c, v| {
            c.alerting.email.password = Secret::new(v);
            Ok(())
        },
    },
    Override {
        name: "RT_PAGERDUTY_KEY",
        secret: true,
        apply: |c, v| {
            c.alerting.pagerduty.routing_key = Secret::new(v);
            Ok(())
        },
    },
];

/// `RT_*` variables read elsewhere (by the command line) or by tools, not by the schema.
const OTHER_KNOWN: &[&str] = &["RT_CONFIG", crate::guard::LoadLimits::MAX_BYTES_VARIABLE];

/// The names of the `RT_*` variables that override the file, in the order they apply.
pub fn override_names() -> impl Iterator<Item = &'static str> {
    OVERRIDES.iter().map(|o| o.name)
}

/// Applies the `RT_*` variables of `env` to `config`. A value that does not fit is an error
/// naming the variable (secrets masked); an unknown `RT_*` variable is a warning with a hint.
pub(crate) fn apply_overrides(config: &mut Config, env: &Environment) -> Result<(), ConfigError> {
    for o in OVERRIDES {
        if let Some(value) = env.get(o.name) {
            (o.apply)(config, value).map_err(|message| ConfigError::Environment {
                name: o.name.to_owned(),
                value: if o.secret {
                    MASK.to_owned()
                } else {
                    format!("{value:?}")
                },
                message,
            })?;
        }
    }
    for name in env.vars.keys().filter(|k| k.starts_with("RT_")) {
        let known = override_names().any(|n| n == name)
            || OTHER_KNOWN.contains(&name.as_str())
            || name.starts_with("RT_BENCH_");
        if !known {
            let hint = did_you_mean(name, override_names()).unwrap_or_default();
            config.warnings.push(format!(
                "environment variable {name} is not a ratethrottle setting{hint}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        [("HOST", "redis.internal"), ("EMPTY", "")]
            .into_iter()
            .collect()
    }

    #[test]
    fn substitutes_variables_and_defaults() {
        let (value, names) = substitute(
            "redis://${HOST}:${PORT:-6379}/0 ${EMPTY:-fallback} $${literal}",
            &env(),
        )
        .unwrap();
        assert_eq!(value, "redis://redis.internal:6379/0 fallback ${literal}");
        assert_eq!(names, ["HOST", "PORT", "EMPTY"]);
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_it() {
        assert_eq!(
            substitute("x${MISSING}", &env()).unwrap_err(),
            "environment variable MISSING is not set (referenced as ${MISSING}; \
             write ${MISSING:-default} for a fallback)"
        );
        assert!(
            substitute("${OPEN", &env())
                .unwrap_err()
                .starts_with("unclosed")
        );
    }
}
