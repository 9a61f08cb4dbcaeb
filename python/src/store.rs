//! The engine's stores as Python objects: memory, or Redis (standalone, TLS, Sentinel, Cluster).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyString};
use ratethrottle::clock::{Clock, ManualClock, Nanos, SystemClock};
use ratethrottle::store::{
    KeyValueStore, ListKind, MemoryStore, MemoryStoreConfig, SetMode, Store, StoreError,
    StoreErrorKind, Value,
};
use ratethrottle_config::{ConfigError, ConfiguredStore, StorageConfig};
use ratethrottle_redis::ScriptReply;

use crate::errors::Raise;
use crate::runtime::{runtime, wait};

/// A store the engine keeps its state in. Built by `InMemoryStorage` and `RedisStorage`.
#[pyclass(frozen, module = "ratethrottle._native")]
#[derive(Debug)]
pub(crate) struct NativeStore {
    pub(crate) store: ConfiguredStore,
    /// The clock plain keys expire by in memory: a test's `ManualClock` (given to the storage,
    /// or taken from the first `RateThrottleCore(clock=...)` it serves), else the system's.
    clock: OnceLock<ManualClock>,
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
        Ok(NativeStore::new(store))
    }

    fn new(store: ConfiguredStore) -> Self {
        NativeStore {
            store,
            clock: OnceLock::new(),
        }
    }

    /// Makes `clock` the one plain keys expire by, unless the storage has one already.
    pub(crate) fn adopt_clock(&self, clock: &ManualClock) {
        let _ = self.clock.set(clock.clone());
    }

    fn now(&self) -> Nanos {
        match self.clock.get() {
            Some(clock) => clock.now(),
            None => SystemClock.now(),
        }
    }

    /// Runs a key-value operation: at once in memory, else with the GIL released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        operation: impl std::future::Future<Output = Result<T, StoreError>> + Send,
    ) -> PyResult<T> {
        wait(py, self.store.answers_at_once(), operation).map_err(storage_error)
    }

    /// `value` as the store keeps it: a whole number that fits 64 bits as a number (so it can
    /// be incremented); anything else by reference in memory, or as bytes (text as UTF-8)
    /// on Redis.
    fn value_of(&self, value: &Bound<'_, PyAny>) -> PyResult<Value> {
        if value.is_exact_instance_of::<PyInt>()
            && let Ok(n) = value.extract::<i64>()
        {
            return Ok(Value::Int(n));
        }
        if self.store.answers_at_once() {
            return Ok(Value::Object(Arc::new(value.clone().unbind())));
        }
        if let Ok(text) = value.cast::<PyString>() {
            return Ok(Value::Bytes(text.to_str()?.as_bytes().to_vec()));
        }
        if let Ok(bytes) = value.cast::<PyBytes>() {
            return Ok(Value::Bytes(bytes.as_bytes().to_vec()));
        }
        Err(Raise::Storage.err(format!(
            "Cannot serialize value: a {} cannot be kept in Redis as it is; pass text, bytes \
             or a whole number",
            value.get_type().name()?
        )))
    }
}

/// A value back in Python.
fn python_value(py: Python<'_>, value: Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Int(n) => n.into_pyobject(py)?.into_any().unbind(),
        Value::Bytes(bytes) => PyBytes::new(py, &bytes).into_any().unbind(),
        Value::Object(object) => match object.downcast_ref::<Py<PyAny>>() {
            Some(object) => object.clone_ref(py),
            None => py.None(),
        },
    })
}

fn script_reply(py: Python<'_>, reply: ScriptReply) -> PyResult<Py<PyAny>> {
    Ok(match reply {
        ScriptReply::Nil => py.None(),
        ScriptReply::Int(n) => n.into_pyobject(py)?.into_any().unbind(),
        ScriptReply::Bytes(bytes) => PyBytes::new(py, &bytes).into_any().unbind(),
        ScriptReply::Status(text) => PyBytes::new(py, text.as_bytes()).into_any().unbind(),
        ScriptReply::Double(x) => x.into_pyobject(py)?.into_any().unbind(),
        ScriptReply::Array(items) => {
            let items = items
                .into_iter()
                .map(|item| script_reply(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        _ => py.None(),
    })
}

/// A failed key-value operation as the original's `StorageError`.
fn storage_error(error: StoreError) -> PyErr {
    Raise::Storage.err(error.to_string())
}

/// A key: a `str`, as the original requires.
fn key_of<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    match key.cast::<PyString>() {
        Ok(key) => key.to_str(),
        Err(_) => Err(Raise::Storage.err(format!(
            "Key must be string, got {}",
            key.get_type().name()?
        ))),
    }
}

/// A TTL in seconds: `None` or 0 for none (as the original), else a finite number above 0.
fn ttl_of(ttl: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    let Some(ttl) = ttl.filter(|ttl| !ttl.is_none()) else {
        return Ok(None);
    };
    let seconds: f64 = match ttl.extract() {
        Ok(seconds) if !ttl.is_instance_of::<PyBool>() => seconds,
        _ => {
            return Err(Raise::Storage.err(format!(
                "TTL must be a number of seconds, got {}",
                ttl.repr()?
            )));
        }
    };
    if seconds < 0.0 {
        return Err(Raise::Storage.err(format!("TTL cannot be negative, got {}", ttl.repr()?)));
    }
    if seconds == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(seconds).map(Some).map_err(|_| {
        Raise::Storage.err(format!(
            "TTL must be a finite number of seconds, got {}",
            ttl.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })
}

#[pymethods]
impl NativeStore {
    /// A store in this process's memory, holding at most about `max_keys` rate-limit keys
    /// and as many plain keys (default: no bound on the former, 1,000,000 on the latter).
    #[staticmethod]
    #[pyo3(signature = (max_keys = None, clock = None))]
    fn memory(
        max_keys: Option<usize>,
        clock: Option<&Bound<'_, crate::clock::ManualClock>>,
    ) -> Self {
        let config = match max_keys {
            Some(max_keys) => MemoryStoreConfig::default().max_keys(max_keys),
            None => MemoryStoreConfig::default(),
        };
        let store = NativeStore::new(ConfiguredStore::Memory(MemoryStore::with_config(config)));
        if let Some(clock) = clock {
            store.adopt_clock(&clock.get().0);
        }
        store
    }

    /// The live value of `key`, or `None`.
    fn get(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let key = key_of(key)?;
        match self.run(py, self.store.get(key, self.now()))? {
            Some(value) => python_value(py, value),
            None => Ok(py.None()),
        }
    }

    /// Writes `value` under `key` (for `ttl` seconds); with `nx`, only if the key holds no
    /// live value. Whether it wrote.
    #[pyo3(signature = (key, value, ttl = None, nx = false))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        nx: bool,
    ) -> PyResult<bool> {
        let key = key_of(key)?;
        let ttl = ttl_of(ttl)?;
        let value = self.value_of(value)?;
        let mode = if nx {
            SetMode::IfAbsent
        } else {
            SetMode::Always
        };
        self.run(py, self.store.set(key, value, ttl, mode, self.now()))
    }

    /// Adds `amount` to the number under `key` (0 when missing) and returns the sum; `ttl`
    /// restarts the key's time to live.
    #[pyo3(signature = (key, amount = None, ttl = None))]
    fn increment(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        amount: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        let key = key_of(key)?;
        let amount = match amount {
            None => 1,
            Some(amount)
                if amount.is_instance_of::<PyInt>() && !amount.is_instance_of::<PyBool>() =>
            {
                amount.extract::<i64>().map_err(|_| {
                    Raise::Storage.err(format!("Amount must fit in 64 bits, got {amount}"))
                })?
            }
            Some(amount) => {
                return Err(Raise::Storage.err(format!(
                    "Amount must be int, got {}",
                    amount.get_type().name()?
                )));
            }
        };
        let ttl = ttl_of(ttl)?;
        let now = self.now();
        match wait(
            py,
            self.store.answers_at_once(),
            self.store.increment(key, amount, ttl, now),
        ) {
            Ok(sum) => Ok(sum),
            Err(error)
                if error.kind() == StoreErrorKind::Invalid
                    && error.to_string().contains("whole number") =>
            {
                let held = self.get(py, key.into_pyobject(py)?.as_any())?;
                let kind = match held.bind(py).cast::<PyBytes>() {
                    Ok(_) => "str".to_owned(),
                    Err(_) => held.bind(py).get_type().name()?.to_string(),
                };
                Err(Raise::Storage.err(format!(
                    "Cannot increment non-numeric value: {kind} ({error})"
                )))
            }
            Err(error) => Err(storage_error(error)),
        }
    }

    /// Removes `keys`; how many held a live value.
    fn delete_many(&self, py: Python<'_>, keys: Vec<Bound<'_, PyAny>>) -> PyResult<u64> {
        let keys: Vec<&str> = keys.iter().filter_map(|key| key_of(key).ok()).collect();
        self.run(py, self.store.delete(&keys, self.now()))
    }

    /// Whether `key` holds a live value.
    fn exists(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = key_of(key)?;
        self.run(py, self.store.exists(key, self.now()))
    }

    /// Removes everything the store holds (on Redis, every key under its prefix); how many.
    fn clear(&self, py: Python<'_>) -> PyResult<u64> {
        self.run(py, KeyValueStore::clear(&self.store))
    }

    /// Counts of the plain keys, with 1.4.0's keys: `total_keys`, `expired_keys`,
    /// `active_keys`, `memory_usage_estimate`, `sets`, `gets`, `deletes`, `cleanups`,
    /// `evictions` (memory; empty for Redis).
    fn value_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = PyDict::new(py);
        if let ConfiguredStore::Memory(memory) = &self.store {
            let counts = memory.value_stats(self.now());
            stats.set_item("total_keys", counts.keys)?;
            stats.set_item("expired_keys", counts.expired)?;
            stats.set_item("active_keys", counts.keys - counts.expired)?;
            stats.set_item("evictions", counts.evictions)?;
            stats.set_item("memory_usage_estimate", counts.bytes_estimate)?;
            stats.set_item("sets", counts.sets)?;
            stats.set_item("gets", counts.gets)?;
            stats.set_item("deletes", counts.deletes)?;
            stats.set_item("cleanups", counts.cleanups)?;
        }
        Ok(stats)
    }

    /// Runs a Lua script on Redis (keys prefixed); raises `NotImplementedError` in memory.
    fn evaluate_lua(
        &self,
        py: Python<'_>,
        script: &str,
        keys: Vec<String>,
        args: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(redis) = self.store.as_redis() else {
            return Err(pyo3::exceptions::PyNotImplementedError::new_err(
                "evaluate_lua is only supported in RedisStorage",
            ));
        };
        let args = args
            .iter()
            .map(|arg| match arg.cast::<PyBytes>() {
                Ok(bytes) => Ok(bytes.as_bytes().to_vec()),
                Err(_) => Ok(arg.str()?.to_str()?.as_bytes().to_vec()),
            })
            .collect::<PyResult<Vec<_>>>()?;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let reply = py
            .detach(|| runtime().block_on(redis.eval(script, &keys, &args)))
            .map_err(|error| {
                Raise::Storage.err(format!("Failed to execute Lua script: {error}"))
            })?;
        script_reply(py, reply)
    }

    /// The Redis server's `INFO` fields (empty in memory).
    fn server_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = PyDict::new(py);
        if let Some(redis) = self.store.as_redis() {
            let fields = py
                .detach(|| runtime().block_on(redis.server_info()))
                .map_err(storage_error)?;
            for (field, value) in fields {
                info.set_item(field, value)?;
            }
        }
        Ok(info)
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

    /// The `ManualClock` plain keys expire by, if the storage has one.
    #[getter]
    fn clock(&self) -> Option<crate::clock::ManualClock> {
        self.clock.get().cloned().map(crate::clock::ManualClock)
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
