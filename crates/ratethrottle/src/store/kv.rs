//! Plain keys and values beside the limiter's state: the [`KeyValueStore`] trait.
//!
//! The limiter's own state is reached through [`Store`](super::Store) only. This is the
//! general-purpose side of the same stores (the original library's `StorageBackend.get`,
//! `set`, `increment`, ...): counters, cooldowns, small records shared by every process on the
//! same Redis. TTLs are measured on the caller's clock in memory and on Redis's clock in Redis.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Nanos;

use super::{StoreError, StoreErrorKind};

/// A value kept under a key.
#[derive(Clone)]
pub enum Value {
    /// A whole number: what [`KeyValueStore::increment`] adds to.
    Int(i64),
    /// Bytes (text, JSON, ...): what Redis keeps.
    Bytes(Vec<u8>),
    /// Any value of the program, kept by reference: memory stores only (a Redis store refuses
    /// it; serialize it to bytes first).
    Object(Arc<dyn Any + Send + Sync>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "Int({n})"),
            Value::Bytes(bytes) => write!(f, "Bytes({:?})", String::from_utf8_lossy(bytes)),
            Value::Object(_) => f.write_str("Object(..)"),
        }
    }
}

impl Value {
    /// The whole number this value holds: an [`Int`](Value::Int), or bytes that read as one
    /// (Redis answers every value as bytes); `None` for anything else.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
            Value::Object(_) => None,
        }
    }
}

impl PartialEq for Value {
    /// Numbers and bytes by value, objects by identity.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// When [`KeyValueStore::set`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    /// Always (replacing any value and its TTL).
    Always,
    /// Only when the key holds no live value (`SET NX`).
    IfAbsent,
}

/// Counts of a store's plain keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyValueStats {
    /// Keys held, expired ones not yet dropped included.
    pub keys: u64,
    /// Of those, expired at the time asked.
    pub expired: u64,
    /// Keys dropped to stay within the store's bound.
    pub evictions: u64,
    /// Reads (`get`) so far.
    pub gets: u64,
    /// Writes (`set`, `increment`) so far.
    pub sets: u64,
    /// Keys removed by `delete` so far.
    pub deletes: u64,
    /// Sweeps that dropped expired keys so far.
    pub cleanups: u64,
    /// About how many bytes the keys and values take (objects counted as 64).
    pub bytes_estimate: u64,
}

/// Keys and values with optional TTLs, beside a store's limiter state. Every operation is
/// atomic on its key; `now` is the caller's clock (memory stores expire by it, Redis by its
/// own).
///
/// ```
/// use ratethrottle::clock::Nanos;
/// use ratethrottle::store::{KeyValueStore, MemoryStore, SetMode, Value};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let now = Nanos::from_nanos(1_000_000_000);
/// store.increment("hits", 2, Some(Duration::from_secs(60)), now).await?;
/// assert_eq!(store.increment("hits", 1, None, now).await?, 3);
/// let later = Nanos::from_nanos(61_000_000_000);
/// assert_eq!(store.get("hits", later).await?, None);
/// store.set("name", Value::Bytes(b"web-1".to_vec()), None, SetMode::Always, now).await?;
/// assert!(store.exists("name", later).await?);
/// # Ok::<(), ratethrottle::store::StoreError>(())
/// # }).unwrap();
/// ```
pub trait KeyValueStore: Send + Sync {
    /// The live value of `key` at `now`, if any.
    fn get(
        &self,
        key: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;

    /// Writes `value` under `key`, to expire `ttl` after `now` (`None`: never); with
    /// [`SetMode::IfAbsent`] only if the key holds no live value. Whether it wrote.
    fn set(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        mode: SetMode,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds `amount` to the number under `key` (a missing or expired key counts as 0) and
    /// returns the sum. `ttl` (when given) restarts the key's time to live; without it the
    /// key keeps the one it had. Fails with [`StoreErrorKind::Invalid`](super::StoreErrorKind)
    /// when the key holds something other than a whole number, or the sum leaves `i64`.
    fn increment(
        &self,
        key: &str,
        amount: i64,
        ttl: Option<Duration>,
        now: Nanos,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Removes `keys`; how many held a live value.
    fn delete(
        &self,
        keys: &[&str],
        now: Nanos,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Whether `key` holds a live value at `now`.
    fn exists(
        &self,
        key: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move { Ok(self.get(key, now).await?.is_some()) }
    }

    /// Removes everything this store holds: plain keys, the limiter's state and blocks, and
    /// the lists (on Redis: every key under the store's prefix, never another key of a shared
    /// server). How many keys it removed.
    fn clear(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The error for incrementing `key` whose value is not a whole number.
pub(crate) fn not_a_number(key: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Invalid,
        format!("cannot increment key {key:?}: its value is not a whole number"),
    )
}

/// `held + amount` for incrementing `key`, or the error for a sum out of range.
pub(crate) fn checked_sum(key: &str, held: i64, amount: i64) -> Result<i64, StoreError> {
    held.checked_add(amount).ok_or_else(|| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("cannot increment key {key:?}: the sum is out of range"),
        )
    })
}
