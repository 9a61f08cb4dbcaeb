//! [`BackedStore`]: a [`Store`] on any key-value backend that answers at once (a user's own
//! storage, such as the Python package's `StorageBackend` subclasses).
//!
//! Each check reads the key's state with `get`, decides with the same strategy functions as
//! the other stores, and writes it back with `set` (with a TTL of the time it takes the key to
//! become idle). Checks of one key in this process are serialized by a lock, so a limit holds
//! exactly within the process; across processes a backend is only as atomic as its own `get`
//! and `set`.
//!
//! A value this store cannot read under one of its keys (a foreign or corrupted value) counts
//! as a fresh key, and a backend that fails makes the check fail with its error: the state is
//! never left half-written.
//!
//! Keys: `rt:state:<rule fingerprint>:<identifier>` and `rt:block:<rule fingerprint>:<identifier>`
//! (a block's end), `rt:whitelist:<identifier>` / `rt:blacklist:<identifier>` (an entry's
//! expiry, empty for none) and `rt:whitelist` / `rt:blacklist` (the identifiers listed, one per
//! line).

use std::future::{Future, ready};
use std::hash::BuildHasher;
use std::time::Duration;

use parking_lot::Mutex;

use super::kv::{checked_sum, not_a_number};
use super::{
    KeyValueStore, ListEntry, ListKind, Outcome, Query, RuleSpec, SetMode, Store, StoreError,
    StoreErrorKind, Value,
};
use crate::clock::Nanos;
use crate::strategy::{self, Compact, SlidingLog, State, peek_view};

/// A key-value backend that answers at once (no I/O to wait for, or waits itself).
pub trait KeyValueNow: Send + Sync + 'static {
    /// The live value of `key` at `now`, if any.
    fn get_now(&self, key: &str, now: Nanos) -> Result<Option<Value>, StoreError>;
    /// Writes `value` under `key`, to expire `ttl` after `now` (`None`: never).
    fn set_now(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        now: Nanos,
    ) -> Result<(), StoreError>;
    /// Removes `key`; whether it held a value.
    fn delete_now(&self, key: &str) -> Result<bool, StoreError>;
    /// A short name for status output.
    fn kind(&self) -> &'static str {
        "custom"
    }
}

impl<T: KeyValueNow + ?Sized> KeyValueNow for std::sync::Arc<T> {
    fn get_now(&self, key: &str, now: Nanos) -> Result<Option<Value>, StoreError> {
        (**self).get_now(key, now)
    }

    fn set_now(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        now: Nanos,
    ) -> Result<(), StoreError> {
        (**self).set_now(key, value, ttl, now)
    }

    fn delete_now(&self, key: &str) -> Result<bool, StoreError> {
        (**self).delete_now(key)
    }

    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

/// How many locks serialize the checks of this process (by key hash).
const LOCKS: usize = 64;

/// A [`Store`] on a [`KeyValueNow`] backend. Cheap to share behind an `Arc`.
pub struct BackedStore<K> {
    backend: K,
    locks: Box<[Mutex<()>]>,
    hasher: foldhash::fast::RandomState,
}

impl<K> std::fmt::Debug for BackedStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackedStore").finish_non_exhaustive()
    }
}

impl<K: KeyValueNow> BackedStore<K> {
    /// A store keeping its state in `backend`.
    pub fn new(backend: K) -> Self {
        BackedStore {
            backend,
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &K {
        &self.backend
    }

    fn lock(&self, key: &str) -> parking_lot::MutexGuard<'_, ()> {
        let at = (self.hasher.hash_one(key) as usize) % LOCKS;
        self.locks[at].lock()
    }

    /// Decides `query` now.
    pub fn check_now(&self, query: &Query<'_>) -> Result<Outcome, StoreError> {
        let id = query.identifier;
        let now = query.now;
        if self.entry(ListKind::Whitelist, id, now)?.is_some() {
            return Ok(Outcome::Whitelisted);
        }
        if let Some(until) = self.entry(ListKind::Blacklist, id, now)? {
            return Ok(Outcome::Blacklisted { until });
        }
        let rule = query.rule;
        let state_key = format!("rt:state:{:016x}:{id}", rule.fingerprint);
        let block_key = format!("rt:block:{:016x}:{id}", rule.fingerprint);
        let _serial = self.lock(&state_key);
        if let Some(until) = self.text(&block_key, now)?.as_deref().and_then(number) {
            if until > now.as_nanos() {
                return Ok(Outcome::Blocked {
                    until: Nanos::from_nanos(until),
                });
            }
        }
        let text = self.text(&state_key, now)?;
        let (decision, next) = match rule.compact {
            Some(kind) => decide_compact(kind, query, text.as_deref()),
            None => decide_log(query, text.as_deref()),
        };
        let nanos = now.as_nanos();
        let mut blocked_until = None;
        if query.consume || query.refund {
            if let Some(next) = next {
                let ttl = Duration::from_nanos(rule.idle_span.max(1));
                self.backend.set_now(
                    &state_key,
                    Value::Bytes(next.into_bytes()),
                    Some(ttl),
                    now,
                )?;
            } else if !decision.allowed && rule.block > 0 {
                let until = nanos.saturating_add(rule.block);
                let ttl = Duration::from_nanos(rule.block);
                self.backend.set_now(
                    &block_key,
                    Value::Bytes(until.to_string().into_bytes()),
                    Some(ttl),
                    now,
                )?;
                blocked_until = Some(Nanos::from_nanos(until));
            }
        }
        Ok(Outcome::Decided {
            decision,
            blocked_until,
        })
    }

    /// The value of `key` as text; `None` when missing or not text.
    fn text(&self, key: &str, now: Nanos) -> Result<Option<String>, StoreError> {
        Ok(match self.backend.get_now(key, now)? {
            Some(Value::Bytes(bytes)) => String::from_utf8(bytes).ok(),
            Some(Value::Int(n)) => Some(n.to_string()),
            _ => None,
        })
    }

    /// `id`'s unexpired entry on `list` (its expiry, if any), or `None`.
    fn entry(
        &self,
        list: ListKind,
        id: &str,
        now: Nanos,
    ) -> Result<Option<Option<Nanos>>, StoreError> {
        let Some(expiry) = self.text(&entry_key(list, id), now)? else {
            return Ok(None);
        };
        if expiry.is_empty() {
            return Ok(Some(None));
        }
        Ok(number(&expiry)
            .filter(|&at| at > now.as_nanos())
            .map(|at| Some(Nanos::from_nanos(at))))
    }

    /// The identifiers on `list` as the index holds them.
    fn index(&self, list: ListKind, now: Nanos) -> Result<Vec<String>, StoreError> {
        Ok(self
            .text(&index_key(list), now)?
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default())
    }

    /// The unexpired entries of `list`, sorted.
    fn entries_now(&self, list: ListKind, now: Nanos) -> Result<Vec<ListEntry>, StoreError> {
        let mut entries = Vec::new();
        for id in self.index(list, now)? {
            if let Some(expires_at) = self.entry(list, &id, now)? {
                entries.push(ListEntry::new(id, expires_at));
            }
        }
        entries.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        Ok(entries)
    }

    fn write_index(&self, list: ListKind, ids: &[String], now: Nanos) -> Result<(), StoreError> {
        let text = ids.join("\n");
        self.backend
            .set_now(&index_key(list), Value::Bytes(text.into_bytes()), None, now)
    }
}

/// The decision on a compact state, and the state to write when it changes.
fn decide_compact(
    kind: Compact,
    query: &Query<'_>,
    text: Option<&str>,
) -> (strategy::Decision, Option<String>) {
    let now = query.now.as_nanos();
    let state = text.and_then(compact_state).unwrap_or_default();
    if query.refund {
        let next = strategy::refund(kind, &query.params, &state, now, query.cost);
        let (decision, _) = strategy::decide(kind, &query.params, &next, now, 1);
        let idle = strategy::idle_at(kind, &query.params, &next, now);
        let write = (next != state).then(|| compact_text(&next));
        return (peek_view(decision, 1, idle, now), write);
    }
    let (decision, next) = strategy::decide(kind, &query.params, &state, now, query.cost);
    if !query.consume {
        let idle = strategy::idle_at(kind, &query.params, &state, now);
        return (peek_view(decision, query.cost, idle, now), None);
    }
    let write = decision.allowed.then(|| compact_text(&next));
    (decision, write)
}

/// A compact state as it is written: `c <w0> <w1> <w2>`.
fn compact_text(state: &State) -> String {
    let [a, b, c] = state.0;
    format!("c {a} {b} {c}")
}

/// The decision on a sliding_window log, and the log to write when it changes.
fn decide_log(query: &Query<'_>, text: Option<&str>) -> (strategy::Decision, Option<String>) {
    let now = query.now.as_nanos();
    let mut log = text.and_then(log_state).unwrap_or_default();
    if query.refund {
        log.refund(&query.params, now, query.cost);
        let decision = log.decide(&query.params, now, 1);
        let idle = log.idle_at(&query.params);
        return (peek_view(decision, 1, idle, now), Some(log_text(&log)));
    }
    let decision = log.decide(&query.params, now, query.cost);
    if !query.consume {
        let idle = log.idle_at(&query.params);
        return (peek_view(decision, query.cost, idle, now), None);
    }
    if !decision.allowed {
        return (decision, None);
    }
    log.record(now, query.cost);
    (decision, Some(log_text(&log)))
}

/// A log as it is written: `l <time>:<cost> ...`.
fn log_text(log: &SlidingLog) -> String {
    let mut text = String::from("l");
    for (at, cost) in log.entries() {
        text.push_str(&format!(" {at}:{cost}"));
    }
    text
}

fn entry_key(list: ListKind, id: &str) -> String {
    format!("rt:{}:{id}", list.as_str())
}

fn index_key(list: ListKind) -> String {
    format!("rt:{}", list.as_str())
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A compact state written as `c <w0> <w1> <w2>`.
fn compact_state(text: &str) -> Option<State> {
    let mut words = text.strip_prefix("c ")?.split(' ').map(number);
    let state = State([words.next()??, words.next()??, words.next()??]);
    words.next().is_none().then_some(state)
}

/// A log written as `l <time>:<cost> ...` (oldest first, as [`SlidingLog::entries`] gives them;
/// checks that took their time before waiting for the key may record slightly out of order).
fn log_state(text: &str) -> Option<SlidingLog> {
    let entries: Option<Vec<(u64, u64)>> = text
        .strip_prefix('l')?
        .split_whitespace()
        .map(|entry| {
            let (at, cost) = entry.split_once(':')?;
            Some((number(at)?, number(cost)?))
        })
        .collect();
    Some(SlidingLog::from_entries(entries?))
}

impl<K: KeyValueNow> Store for BackedStore<K> {
    fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    fn check(&self, query: Query<'_>) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        ready(self.check_now(&query))
    }

    fn check_at_once(&self, query: &Query<'_>) -> Option<Result<Outcome, StoreError>> {
        Some(self.check_now(query))
    }

    fn answers_at_once(&self) -> bool {
        true
    }

    fn reset(
        &self,
        rule: &RuleSpec,
        identifier: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let state = format!("rt:state:{:016x}:{identifier}", rule.fingerprint);
        let block = format!("rt:block:{:016x}:{identifier}", rule.fingerprint);
        let _serial = self.lock(&state);
        let result = self
            .backend
            .delete_now(&state)
            .and_then(|_| self.backend.delete_now(&block))
            .map(drop);
        ready(result)
    }

    fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires_at: Option<Nanos>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let now = Nanos::from_nanos(0);
        let result = (|| {
            let _serial = self.lock(&index_key(list));
            let expiry = expires_at.map_or_else(String::new, |at| at.as_nanos().to_string());
            self.backend.set_now(
                &entry_key(list, identifier),
                Value::Bytes(expiry.into_bytes()),
                None,
                now,
            )?;
            let mut ids = self.index(list, now)?;
            if !ids.iter().any(|id| id == identifier) {
                ids.push(identifier.to_owned());
                self.write_index(list, &ids, now)?;
            }
            Ok(())
        })();
        ready(result)
    }

    fn list_remove(
        &self,
        list: ListKind,
        identifier: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let now = Nanos::from_nanos(0);
        let result = (|| {
            let _serial = self.lock(&index_key(list));
            let removed = self.backend.delete_now(&entry_key(list, identifier))?;
            let mut ids = self.index(list, now)?;
            let before = ids.len();
            ids.retain(|id| id != identifier);
            if ids.len() != before {
                self.write_index(list, &ids, now)?;
            }
            Ok(removed)
        })();
        ready(result)
    }

    fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(
            self.entry(list, identifier, now)
                .map(|entry| entry.is_some()),
        )
    }

    fn list_entries(
        &self,
        list: ListKind,
        now: Nanos,
    ) -> impl Future<Output = Result<Vec<ListEntry>, StoreError>> + Send {
        ready(self.entries_now(list, now))
    }

    fn list_len_hint(&self, list: ListKind, now: Nanos) -> u64 {
        self.entries_now(list, now).map_or(0, |e| e.len() as u64)
    }
}

/// The backend's own keys, through the [`KeyValueStore`] interface (increments read and write
/// under this process's lock for the key).
impl<K: KeyValueNow> KeyValueStore for BackedStore<K> {
    fn get(
        &self,
        key: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send {
        ready(self.backend.get_now(key, now))
    }

    fn set(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        mode: SetMode,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _serial = self.lock(key);
        let result = (|| {
            if mode == SetMode::IfAbsent && self.backend.get_now(key, now)?.is_some() {
                return Ok(false);
            }
            self.backend.set_now(key, value, ttl, now).map(|()| true)
        })();
        ready(result)
    }

    fn increment(
        &self,
        key: &str,
        amount: i64,
        ttl: Option<Duration>,
        now: Nanos,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        let _serial = self.lock(key);
        let result = (|| {
            let held = match self.backend.get_now(key, now)? {
                None => 0,
                Some(value) => value.as_integer().ok_or_else(|| not_a_number(key))?,
            };
            let sum = checked_sum(key, held, amount)?;
            self.backend.set_now(key, Value::Int(sum), ttl, now)?;
            Ok(sum)
        })();
        ready(result)
    }

    fn delete(
        &self,
        keys: &[&str],
        _now: Nanos,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let result = keys.iter().try_fold(0, |removed, key| {
            Ok(removed + u64::from(self.backend.delete_now(key)?))
        });
        ready(result)
    }

    fn clear(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(Err(StoreError::new(
            StoreErrorKind::Invalid,
            "a key-value backend given in code is cleared by its own means",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_as_written_and_anything_else_is_fresh() {
        assert_eq!(compact_state("c 1 2 3"), Some(State([1, 2, 3])));
        for foreign in [
            "",
            "c 1 2",
            "c 1 2 3 4",
            "c a b c",
            "{\"tokens\": 3}",
            "l 1:1",
        ] {
            assert_eq!(compact_state(foreign), None, "{foreign:?}");
        }
        let log = log_state("l 5:1 9:2").unwrap();
        assert_eq!(log.entries().collect::<Vec<_>>(), [(5, 1), (9, 2)]);
        assert!(log_state("l").unwrap().is_empty());
        for foreign in ["c 1 2 3", "l x:1", "l 5", "l 5:"] {
            assert!(log_state(foreign).is_none(), "{foreign:?}");
        }
    }
}
