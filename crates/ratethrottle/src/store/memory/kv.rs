//! The memory store's plain keys and values ([`KeyValueStore`](crate::store::KeyValueStore)).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::{Nanos, duration_to_nanos};
use crate::store::{KeyValueStats, SetMode, StoreError, StoreErrorKind, Value};

const SHARDS: usize = 16;
/// A shard drops its expired keys once it has seen this many writes, or as many as it held
/// after its last sweep if that is more.
const MIN_SWEEP_WRITES: usize = 256;
/// How many keys a full shard looks at to pick the one to drop.
const EVICTION_SAMPLE: usize = 8;

#[derive(Debug)]
struct Entry {
    value: Value,
    expires_at: Option<Nanos>,
}

impl Entry {
    fn live(&self, now: Nanos) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<Box<str>, Entry>,
    writes_since_sweep: usize,
    sweep_after: usize,
}

/// Keys and values with expiry, sharded, bounded.
#[derive(Debug)]
pub(super) struct KeyValues {
    shards: [Mutex<Shard>; SHARDS],
    /// The most keys one shard holds: a full shard drops its expired keys, then of a few sampled
    /// keys the one that expires soonest (a key without a TTL last).
    per_shard: usize,
    evictions: std::sync::atomic::AtomicU64,
}

/// The expiry `ttl` after `now`.
fn expiry(ttl: Option<Duration>, now: Nanos) -> Option<Nanos> {
    ttl.map(|ttl| Nanos::from_nanos(now.as_nanos().saturating_add(duration_to_nanos(ttl))))
}

impl KeyValues {
    /// Room for about `max_keys` keys.
    pub(super) fn new(max_keys: usize) -> Self {
        KeyValues {
            shards: Default::default(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            evictions: Default::default(),
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    pub(super) fn get(&self, key: &str, hash: u64, now: Nanos) -> Option<Value> {
        let mut shard = self.shard(hash).lock();
        match shard.entries.get(key) {
            Some(entry) if entry.live(now) => Some(entry.value.clone()),
            Some(_) => {
                shard.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn set(
        &self,
        key: &str,
        hash: u64,
        value: Value,
        ttl: Option<Duration>,
        mode: SetMode,
        now: Nanos,
    ) -> bool {
        let mut shard = self.shard(hash).lock();
        let held = shard.entries.get_mut(key);
        match held {
            Some(entry) if mode == SetMode::IfAbsent && entry.live(now) => false,
            Some(entry) => {
                *entry = Entry {
                    value,
                    expires_at: expiry(ttl, now),
                };
                true
            }
            None => {
                self.make_room(&mut shard, now);
                let entry = Entry {
                    value,
                    expires_at: expiry(ttl, now),
                };
                shard.entries.insert(key.into(), entry);
                true
            }
        }
    }

    pub(super) fn increment(
        &self,
        key: &str,
        hash: u64,
        amount: i64,
        ttl: Option<Duration>,
        now: Nanos,
    ) -> Result<i64, StoreError> {
        let mut shard = self.shard(hash).lock();
        let (held, expires_at) = match shard.entries.get(key) {
            Some(entry) if entry.live(now) => match entry.value {
                Value::Int(n) => (n, entry.expires_at),
                _ => {
                    return Err(StoreError::new(
                        StoreErrorKind::Invalid,
                        format!("cannot increment key {key:?}: its value is not a whole number"),
                    ));
                }
            },
            _ => (0, None),
        };
        let sum = held.checked_add(amount).ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Invalid,
                format!("cannot increment key {key:?}: the sum is out of range"),
            )
        })?;
        let expires_at = if ttl.is_some() {
            expiry(ttl, now)
        } else {
            expires_at
        };
        let entry = Entry {
            value: Value::Int(sum),
            expires_at,
        };
        if !shard.entries.contains_key(key) {
            self.make_room(&mut shard, now);
        }
        shard.entries.insert(key.into(), entry);
        Ok(sum)
    }

    /// Removes `key`; whether it held a live value.
    pub(super) fn remove(&self, key: &str, hash: u64, now: Nanos) -> bool {
        self.shard(hash)
            .lock()
            .entries
            .remove(key)
            .is_some_and(|entry| entry.live(now))
    }

    pub(super) fn clear(&self) -> u64 {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            removed += shard.entries.len() as u64;
            *shard = Shard::default();
        }
        removed
    }

    pub(super) fn stats(&self, now: Nanos) -> KeyValueStats {
        let mut stats = KeyValueStats {
            evictions: self.evictions.load(std::sync::atomic::Ordering::Relaxed),
            ..KeyValueStats::default()
        };
        for shard in &self.shards {
            let shard = shard.lock();
            stats.keys += shard.entries.len() as u64;
            stats.expired += shard.entries.values().filter(|e| !e.live(now)).count() as u64;
        }
        stats
    }

    /// Before a new key goes into `shard`: drop expired keys when due, and one more key if the
    /// shard is full.
    fn make_room(&self, shard: &mut Shard, now: Nanos) {
        shard.writes_since_sweep += 1;
        let full = shard.entries.len() >= self.per_shard;
        if full || shard.writes_since_sweep > shard.sweep_after.max(MIN_SWEEP_WRITES) {
            shard.entries.retain(|_, entry| entry.live(now));
            shard.writes_since_sweep = 0;
            shard.sweep_after = shard.entries.len();
        }
        if shard.entries.len() >= self.per_shard {
            // A sample, as the rate-limit tables do: eviction stays O(1) per insert.
            let soonest = shard
                .entries
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, entry)| entry.expires_at.map_or(u64::MAX, Nanos::as_nanos))
                .map(|(key, _)| key.clone());
            if let Some(key) = soonest {
                shard.entries.remove(&key);
                if self
                    .evictions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    == 0
                {
                    tracing::warn!(
                        max_keys = self.per_shard * SHARDS,
                        "memory store's plain keys are full: evicting the ones expiring soonest"
                    );
                }
            }
        }
    }
}
