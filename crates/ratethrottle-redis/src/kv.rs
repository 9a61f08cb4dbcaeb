//! Plain keys and values in Redis ([`KeyValueStore`]): `<prefix><key>`, as the original
//! library names them, with Redis's own TTLs.

use std::time::Duration;

use ratethrottle::clock::Nanos;
use ratethrottle::store::{KeyValueStore, SetMode, StoreError, StoreErrorKind, Value};
use redis::AsyncCommands;

use crate::RedisStore;
use crate::errors::failure;

/// How many keys one `SCAN` step asks for, and one `UNLINK` removes, while clearing.
const CLEAR_BATCH: usize = 1_000;

/// A script's reply, as Redis gave it ([`RedisStore::eval`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ScriptReply {
    /// `nil` (also Lua `false`).
    Nil,
    /// A number.
    Int(i64),
    /// A string, as bytes.
    Bytes(Vec<u8>),
    /// A status reply such as `OK`.
    Status(String),
    /// A table.
    Array(Vec<ScriptReply>),
    /// A double, a boolean or a map (RESP3).
    Double(f64),
}

impl ScriptReply {
    fn from_redis(value: redis::Value) -> Self {
        use redis::Value as V;
        match value {
            V::Nil => ScriptReply::Nil,
            V::Int(n) => ScriptReply::Int(n),
            V::BulkString(bytes) => ScriptReply::Bytes(bytes),
            V::SimpleString(text) => ScriptReply::Status(text),
            V::Okay => ScriptReply::Status("OK".to_owned()),
            V::Array(items) | V::Set(items) => {
                ScriptReply::Array(items.into_iter().map(Self::from_redis).collect())
            }
            V::Double(x) => ScriptReply::Double(x),
            V::Boolean(b) => ScriptReply::Int(i64::from(b)),
            V::Map(pairs) => ScriptReply::Array(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [Self::from_redis(k), Self::from_redis(v)])
                    .collect(),
            ),
            other => ScriptReply::Bytes(format!("{other:?}").into_bytes()),
        }
    }
}

impl RedisStore {
    /// The Redis key of the plain key `key`: the prefix, then the key.
    pub fn value_key(&self, key: &str) -> String {
        format!("{}{key}", self.shared.config.key_prefix)
    }

    /// Runs the Lua `script` on `keys` (prefixed as plain keys are) and `args`.
    pub async fn eval(
        &self,
        script: &str,
        keys: &[&str],
        args: &[Vec<u8>],
    ) -> Result<ScriptReply, StoreError> {
        let mut command = redis::cmd("EVAL");
        command.arg(script).arg(keys.len());
        for key in keys {
            command.arg(self.value_key(key));
        }
        for arg in args {
            command.arg(arg.as_slice());
        }
        let mut connection = self.connection();
        let reply: redis::Value = self.run(command.query_async(&mut connection)).await?;
        Ok(ScriptReply::from_redis(reply))
    }

    /// The server's `INFO`, as `field → value` pairs (on a cluster, one node's).
    pub async fn server_info(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut connection = self.connection();
        let info: String = self
            .run(redis::cmd("INFO").query_async(&mut connection))
            .await?;
        Ok(info
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(field, value)| (field.to_owned(), value.trim().to_owned()))
            .collect())
    }

    /// `value` as Redis keeps it.
    fn stored(&self, key: &str, value: Value) -> Result<Vec<u8>, StoreError> {
        match value {
            Value::Int(n) => Ok(n.to_string().into_bytes()),
            Value::Bytes(bytes) => Ok(bytes),
            Value::Object(_) => Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "redis at {}: key {key:?}: an object cannot be kept in Redis; \
                     serialize it to bytes (JSON, say) first",
                    self.address()
                ),
            )),
        }
    }

    /// A failed value command: a value that does not fit the command is the caller's
    /// mistake, not a failure of Redis.
    fn value_failure(&self, key: &str, error: redis::RedisError) -> StoreError {
        let text = error.to_string();
        let reason = if text.contains("not an integer") {
            "its value is not a whole number"
        } else if text.contains("would overflow") {
            "the sum is out of range"
        } else {
            return failure(self.address(), error);
        };
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("cannot increment key {key:?}: {reason}"),
        )
    }
}

/// A TTL in whole milliseconds for `PX` (at least 1: Redis refuses 0).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

impl KeyValueStore for RedisStore {
    async fn get(&self, key: &str, _now: Nanos) -> Result<Option<Value>, StoreError> {
        let mut connection = self.connection();
        let value: Option<Vec<u8>> = self.run(connection.get(self.value_key(key))).await?;
        Ok(value.map(Value::Bytes))
    }

    async fn set(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        mode: SetMode,
        _now: Nanos,
    ) -> Result<bool, StoreError> {
        let mut command = redis::cmd("SET");
        command
            .arg(self.value_key(key))
            .arg(self.stored(key, value)?);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(millis(ttl));
        }
        if mode == SetMode::IfAbsent {
            command.arg("NX");
        }
        let mut connection = self.connection();
        let reply: Option<String> = self.run(command.query_async(&mut connection)).await?;
        Ok(reply.is_some())
    }

    async fn increment(
        &self,
        key: &str,
        amount: i64,
        ttl: Option<Duration>,
        _now: Nanos,
    ) -> Result<i64, StoreError> {
        let full = self.value_key(key);
        // One transaction: the sum and its TTL together, whatever other clients do.
        let mut pipe = redis::pipe();
        pipe.atomic().incr(&full, amount);
        if let Some(ttl) = ttl {
            pipe.cmd("PEXPIRE").arg(&full).arg(millis(ttl)).ignore();
        }
        let mut connection = self.connection();
        let call = pipe.query_async::<(i64,)>(&mut connection);
        match tokio::time::timeout(self.shared.config.timeout, call).await {
            Ok(Ok((sum,))) => Ok(sum),
            Ok(Err(error)) => Err(self.value_failure(key, error)),
            Err(_) => Err(self.timed_out()),
        }
    }

    async fn delete(&self, keys: &[&str], _now: Nanos) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        // One `DEL` per key: on a cluster the keys may live on different nodes.
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.del(self.value_key(key));
        }
        let mut connection = self.connection();
        let removed: Vec<u64> = self.run(pipe.query_async(&mut connection)).await?;
        Ok(removed.iter().sum())
    }

    async fn exists(&self, key: &str, _now: Nanos) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        self.run(connection.exists(self.value_key(key))).await
    }

    async fn clear(&self) -> Result<u64, StoreError> {
        if self.connection.is_cluster() {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "redis at {}: clearing a prefix scans one server; on a cluster, scan \
                     each master for `{}*` instead",
                    self.address(),
                    self.shared.config.key_prefix
                ),
            ));
        }
        let pattern = format!("{}*", glob_escape(&self.shared.config.key_prefix));
        let mut connection = self.connection();
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(CLEAR_BATCH)
                        .query_async(&mut connection),
                )
                .await?;
            if !keys.is_empty() {
                let unlinked: u64 = self
                    .run(redis::cmd("UNLINK").arg(&keys).query_async(&mut connection))
                    .await?;
                removed += unlinked;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.shared.lists.forget_all();
        KeyValueStore::clear(&self.shared.fallback).await?;
        Ok(removed)
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped, so a prefix matches only itself.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_only_themselves() {
        assert_eq!(glob_escape("app:"), "app:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn ttls_round_up_to_a_millisecond() {
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::ZERO), 1);
    }
}
