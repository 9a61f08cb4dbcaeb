//! A user's `StorageBackend` subclass as the engine's store: [`PyBackend`] calls its `get`,
//! `set` and `delete` (with the GIL, on the checking thread) and the core's
//! [`BackedStore`](ratethrottle::store::BackedStore) runs every strategy over them.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyString};
use ratethrottle::clock::Nanos;
use ratethrottle::store::{BackedStore, KeyValueNow, StoreError, StoreErrorKind, Value};
use ratethrottle_config::ConfiguredStore;

use crate::errors::Raise;

/// The methods the engine calls on a custom storage.
const NEEDED: [&str; 3] = ["get", "set", "delete"];

/// A Python object with `get(key)`, `set(key, value, ttl)` and `delete(key)`.
pub(crate) struct PyBackend {
    storage: Py<PyAny>,
    name: String,
}

impl PyBackend {
    /// The store over `storage`; `ConfigurationError` naming the first method it lacks.
    pub(crate) fn store(storage: &Bound<'_, PyAny>) -> PyResult<ConfiguredStore> {
        let name = storage.get_type().name()?.to_string();
        for method in NEEDED {
            let callable = storage
                .getattr(method)
                .is_ok_and(|attribute| attribute.is_callable());
            if !callable {
                return Err(Raise::Configuration.err(format!(
                    "custom storage {name} has no `{method}` method, which the engine needs \
                     (it calls get, set and delete); subclass ratethrottle.StorageBackend and \
                     implement it, or use InMemoryStorage or RedisStorage"
                )));
            }
        }
        let backend = PyBackend {
            storage: storage.clone().unbind(),
            name,
        };
        let backend: Arc<dyn KeyValueNow> = Arc::new(backend);
        Ok(ConfiguredStore::Backed(Arc::new(BackedStore::new(backend))))
    }

    fn failed(&self, method: &str, error: PyErr) -> StoreError {
        StoreError::new(
            StoreErrorKind::Unavailable,
            format!("custom storage {}.{method} raised {error}", self.name),
        )
    }
}

impl KeyValueNow for PyBackend {
    fn get_now(&self, key: &str, _now: Nanos) -> Result<Option<Value>, StoreError> {
        Python::attach(|py| {
            let value = self
                .storage
                .bind(py)
                .call_method1("get", (key,))
                .map_err(|e| self.failed("get", e))?;
            Ok(if value.is_none() {
                None
            } else if let Ok(text) = value.cast::<PyString>() {
                Some(Value::Bytes(
                    text.to_string_lossy().into_owned().into_bytes(),
                ))
            } else if let Ok(bytes) = value.cast::<PyBytes>() {
                Some(Value::Bytes(bytes.as_bytes().to_vec()))
            } else if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
                value.extract::<i64>().ok().map(Value::Int)
            } else {
                // Not something the engine wrote: the key counts as fresh.
                Some(Value::Object(Arc::new(value.unbind())))
            })
        })
    }

    fn set_now(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        _now: Nanos,
    ) -> Result<(), StoreError> {
        // Whole seconds, at least 1: what storages written for the original expect (Redis's
        // SETEX takes whole seconds).
        let ttl = ttl.map(|ttl| ttl.as_nanos().div_ceil(1_000_000_000).max(1) as u64);
        Python::attach(|py| {
            let value = match value {
                Value::Int(n) => n
                    .into_pyobject(py)
                    .map_or_else(|e| match e {}, |n| n.into_any()),
                Value::Bytes(bytes) => {
                    PyString::new(py, &String::from_utf8_lossy(&bytes)).into_any()
                }
                Value::Object(object) => object
                    .downcast_ref::<Py<PyAny>>()
                    .map_or_else(|| py.None().into_bound(py), |o| o.bind(py).clone()),
            };
            self.storage
                .bind(py)
                .call_method1("set", (key, value, ttl))
                .map(drop)
                .map_err(|e| self.failed("set", e))
        })
    }

    fn delete_now(&self, key: &str) -> Result<bool, StoreError> {
        Python::attach(|py| {
            let removed = self
                .storage
                .bind(py)
                .call_method1("delete", (key,))
                .map_err(|e| self.failed("delete", e))?;
            Ok(removed.is_truthy().unwrap_or(false))
        })
    }
}
