//! `Configuration`: the YAML + `RT_*` configuration under `ratethrottle.config.ConfigManager`.

use pyo3::prelude::*;
use pyo3::types::PyList;
use ratethrottle_config::{Config, ConfigError, EXAMPLE_YAML, Environment};
use serde_yaml_ng::Value;

use crate::errors::Raise;
use crate::store::NativeStore;

fn config_error(error: ConfigError) -> PyErr {
    Raise::Configuration.err(error.to_string())
}

/// A validated configuration and the YAML text it came from (secrets included, so stores can
/// connect; [`Configuration::to_json`] masks them).
#[pyclass(frozen, module = "ratethrottle._native")]
#[derive(Debug)]
pub(crate) struct Configuration {
    config: Config,
    text: String,
    origin: String,
}

impl Configuration {
    fn parse(text: String, origin: String) -> PyResult<Self> {
        let config = Config::from_yaml(&text, &origin, &Environment::from_process())
            .map_err(config_error)?;
        Ok(Configuration {
            config,
            text,
            origin,
        })
    }
}

/// Sets `path` (`"global.enabled"`, `"rules.0.limit"`) in `root` to `value`, creating mappings
/// on the way.
fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = root;
    for segment in path.split('.') {
        if segment.is_empty() {
            return Err(format!("invalid key {path:?}: empty segment"));
        }
        if node.is_null() {
            *node = Value::Mapping(Default::default());
        }
        node = match node {
            Value::Mapping(map) => map
                .entry(Value::String(segment.to_owned()))
                .or_insert(Value::Null),
            Value::Sequence(items) => {
                let index: usize = segment.parse().map_err(|_| {
                    format!("invalid key {path:?}: {segment:?} is not a list index")
                })?;
                let len = items.len();
                items.get_mut(index).ok_or_else(|| {
                    format!("invalid key {path:?}: index {index} is past the {len} items")
                })?
            }
            _ => {
                return Err(format!(
                    "invalid key {path:?}: {segment:?} is inside a value"
                ));
            }
        };
    }
    *node = value;
    Ok(())
}

/// Merges `update` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut Value, update: Value) {
    match (base, update) {
        (Value::Mapping(base), Value::Mapping(update)) => {
            for (key, value) in update {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

#[pymethods]
impl Configuration {
    /// Reads `path` (YAML), or the built-in defaults when `None`; applies `RT_*` variables
    /// and validates. Raises `ConfigurationError` naming the file and line of a mistake.
    #[staticmethod]
    #[pyo3(signature = (path = None))]
    fn load(path: Option<std::path::PathBuf>) -> PyResult<Self> {
        match path {
            None => Self::parse(EXAMPLE_YAML.to_owned(), "<builtin>".to_owned()),
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| {
                    config_error(ConfigError::Read {
                        path: path.clone(),
                        source,
                    })
                })?;
                Self::parse(text, path.display().to_string())
            }
        }
    }

    /// Parses YAML (or JSON) `text`; `origin` names it in error messages.
    #[staticmethod]
    #[pyo3(signature = (text, origin = "<string>"))]
    fn from_text(text: String, origin: &str) -> PyResult<Self> {
        Self::parse(text, origin.to_owned())
    }

    /// This configuration with `key` (dotted) set to `value_json`; raises
    /// `ConfigurationError` (and changes nothing) if the result is invalid.
    fn with_value(&self, key: &str, value_json: &str) -> PyResult<Self> {
        let mut root: Value = serde_yaml_ng::from_str(&self.text)
            .map_err(|e| Raise::Configuration.err(format!("{}: {e}", self.origin)))?;
        let value: Value = serde_json::from_str(value_json)
            .map_err(|e| Raise::Configuration.err(format!("{key}: {e}")))?;
        set_path(&mut root, key, value).map_err(|e| Raise::Configuration.err(e))?;
        let text =
            serde_yaml_ng::to_string(&root).map_err(|e| Raise::Configuration.err(e.to_string()))?;
        Self::parse(text, self.origin.clone())
    }

    /// This configuration with the YAML (or JSON) mapping `document` merged over it (mappings
    /// merged key by key, anything else replaced), `RT_*` variables applied again, validated.
    /// `origin` names the document in error messages. Raises `ConfigurationError` (and
    /// changes nothing) if the document is not a mapping or the result is invalid.
    fn merged(&self, document: &str, origin: &str) -> PyResult<Self> {
        let update: Value = serde_yaml_ng::from_str(document)
            .map_err(|e| Raise::Configuration.err(format!("Failed to parse {origin}: {e}")))?;
        if !update.is_mapping() {
            return Err(Raise::Configuration.err(format!(
                "{origin} must be a mapping of sections, got {}",
                match update {
                    Value::Null => "nothing",
                    Value::Sequence(_) => "a list",
                    _ => "a single value",
                }
            )));
        }
        let mut root: Value = serde_yaml_ng::from_str(&self.text)
            .map_err(|e| Raise::Configuration.err(format!("{}: {e}", self.origin)))?;
        if root.is_null() {
            root = Value::Mapping(Default::default());
        }
        merge(&mut root, update);
        let text =
            serde_yaml_ng::to_string(&root).map_err(|e| Raise::Configuration.err(e.to_string()))?;
        Self::parse(text, format!("{} merged with {origin}", self.origin))
    }

    /// The configuration as JSON, every section with its defaults, secrets masked.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.config).map_err(|e| Raise::Configuration.err(e.to_string()))
    }

    /// The alerting section's secrets, unmasked (`RT_*` variables applied): what the alert
    /// dispatcher needs and the JSON view masks.
    fn alerting_secrets(&self) -> std::collections::HashMap<&'static str, String> {
        let a = &self.config.alerting;
        [
            ("slack_webhook_url", a.slack.webhook_url.expose()),
            ("webhook_url", a.webhook.url.expose()),
            ("webhook_secret", a.webhook.secret.expose()),
            ("email_password", a.email.password.expose()),
            ("pagerduty_routing_key", a.pagerduty.routing_key.expose()),
        ]
        .into_iter()
        .map(|(name, value)| (name, value.to_owned()))
        .collect()
    }

    /// The alert webhook's headers, values unmasked.
    fn webhook_headers(&self) -> std::collections::HashMap<String, String> {
        self.config
            .alerting
            .webhook
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect()
    }

    /// The YAML text (secrets included): what `save_config` writes.
    #[getter]
    fn text(&self) -> &str {
        &self.text
    }

    /// Where the text came from.
    #[getter]
    fn origin(&self) -> &str {
        &self.origin
    }

    /// Remarks about accepted settings that have no effect here.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.config.warnings.clone()
    }

    /// The rules, as `RateThrottleRule` keyword arguments (default strategy applied).
    fn rules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for rule in self.config.rules() {
            list.append(crate::core::rule_kwargs(py, &rule)?)?;
        }
        Ok(list)
    }

    /// The whitelist's identifiers.
    fn whitelist(&self) -> Vec<String> {
        self.config.whitelist.clone()
    }

    /// The blacklist as `(identifier, seconds or None)`.
    fn blacklist(&self) -> Vec<(String, Option<f64>)> {
        self.config
            .blacklist
            .iter()
            .map(|e| (e.identifier.clone(), e.duration.map(|d| d.0.as_secs_f64())))
            .collect()
    }

    /// Connects the configured store (Redis must answer; the GIL is released meanwhile).
    fn connect_store(&self, py: Python<'_>) -> PyResult<NativeStore> {
        NativeStore::connect_section(py, &self.config.storage)
    }
}
