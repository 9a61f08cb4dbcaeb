//! The engine's stores as Python objects: memory, or Redis (standalone, TLS, Sentinel, Cluster).

use pyo3::prelude::*;
use pyo3::types::PyDict;
use ratethrottle::store::{ListKind, MemoryStore, Store, StoreErrorKind};
use ratethrottle_config::{ConfigError, ConfiguredStore, StorageConfig};

use crate::errors::Raise;
use crate::runtime::{runtime, wait};

/// A store the engine keeps its state in. Built by `InMemoryStorage` and `RedisStorage`.
#[pyclass(frozen, module = "ratethrottle._native")]
#[derive(Debug)]
pub(crate) struct NativeStore {
    pub(crate) store: ConfiguredStore,
}

impl NativeStore {
    /// Sets up the store `storage` describes; connecting to Redis releases the GIL.
    pub(crate) fn connect_section(py: Python<'_>, storage: &StorageConfig) -> PyResult<Self> {
        let store = py
            .detach(|| runtime().block_on(ConfiguredStore::connect(storage)))
            .map_err(|e| match &e {
                // Credentials or a database Redis refuses: the configuration is wrong.
                ConfigError::Store { source, .. } if source.kind() != StoreErrorKind::Refused => {
                    Raise::Storage.err(e.to_string())
                }
                _ => Raise::Configuration.err(e.to_string()),
            })?;
        Ok(NativeStore { store })
    }
}

#[pymethods]
impl NativeStore {
    /// A store in this process's memory.
    #[staticmethod]
    fn memory() -> Self {
        NativeStore {
            store: ConfiguredStore::Memory(MemoryStore::new()),
        }
    }

    /// The store a `storage:` section describes, given as JSON (the keys of the YAML
    /// configuration: `type`, `url`, `host`, `port`, `db`, `password`, `ssl`, `sentinel`,
    /// `cluster`, `key_prefix`, `timeout`, `fault_policy`, ...). Connects to Redis (the GIL is
    /// released meanwhile); raises `StorageError` if it does not answer and
    /// `ConfigurationError` for a bad section.
    #[staticmethod]
    fn connect(py: Python<'_>, storage_json: &str) -> PyResult<Self> {
        let storage: StorageConfig = serde_json::from_str(storage_json)
            .map_err(|e| Raise::Configuration.err(format!("storage: {e}")))?;
        Self::connect_section(py, &storage)
    }

    /// `"memory"` or `"redis"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Whether the store answers: always for memory; a round trip for Redis.
    fn health_check(&self, py: Python<'_>) -> bool {
        let now = ratethrottle::clock::Nanos::from_system_time(std::time::SystemTime::now());
        wait(
            py,
            self.store.answers_at_once(),
            self.store
                .list_contains(ListKind::Whitelist, "ratethrottle:health", now),
        )
        .is_ok()
    }

    /// What the store is and where.
    fn get_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = PyDict::new(py);
        info.set_item("type", self.store.kind())?;
        if let Some(redis) = self.store.as_redis() {
            info.set_item("address", redis.address())?;
            info.set_item("fault_policy", redis.config().fault_policy.as_str())?;
            info.set_item("key_prefix", &redis.config().key_prefix)?;
        }
        Ok(info)
    }

    fn __repr__(&self) -> String {
        match self.store.as_redis() {
            Some(redis) => format!("NativeStore(redis at {})", redis.address()),
            None => "NativeStore(memory)".to_owned(),
        }
    }
}
