//! The memory store's plain keys and values ([`KeyValueStore`](crate::store::KeyValueStore)).

use std::time::Duration;

use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::clock::{Nanos, duration_to_nanos};
use crate::store::kv::{checked_sum, not_a_number};
use crate::store::{KeyValueStats, SetMode, StoreError, Value};

const SHARDS: usize = 16;
/// A shard drops its expired keys once it has seen this many writes, or as many as it held
/// after its last sweep if that is more.
const MIN_SWEEP_WRITES: usize = 256;
/// How many keys a full shard looks at to pick the one to drop.
const EVICTION_SAMPLE: usize = 8;

#[derive(Debug)]
struct Entry {
    key: Box<str>,
    /// The key's hash (the store's hasher): kept so the table never hashes again.
    hash: u64,
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
    entries: HashTable<Entry>,
    writes_since_sweep: usize,
    sweep_after: usize,
    /// What happened here (reported summed by [`KeyValues::stats`]).
    counts: Counts,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    gets: u64,
    sets: u64,
    deletes: u64,
    cleanups: u64,
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
        shard.counts.gets += 1;
        match shard.entries.find_entry(hash, |e| *e.key == *key) {
            Ok(found) if found.get().live(now) => Some(found.get().value.clone()),
            Ok(expired) => {
                expired.remove();
                None
            }
            Err(_) => None,
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
        shard.counts.sets += 1;
        let expires_at = expiry(ttl, now);
        if let Some(entry) = shard.entries.find_mut(hash, |e| *e.key == *key) {
            if mode == SetMode::IfAbsent && entry.live(now) {
                return false;
            }
            entry.value = value;
            entry.expires_at = expires_at;
            return true;
        }
        self.insert(&mut shard, key, hash, value, expires_at, now);
        true
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
        shard.counts.sets += 1;
        let restart = ttl.map(|ttl| expiry(Some(ttl), now));
        if let Some(entry) = shard.entries.find_mut(hash, |e| *e.key == *key) {
            let held = match (&entry.value, entry.live(now)) {
                (_, false) => 0,
                (Value::Int(n), true) => *n,
                (_, true) => return Err(not_a_number(key)),
            };
            let sum = checked_sum(key, held, amount)?;
            if !entry.live(now) {
                entry.expires_at = None;
            }
            entry.value = Value::Int(sum);
            if let Some(expires_at) = restart {
                entry.expires_at = expires_at;
            }
            return Ok(sum);
        }
        let sum = checked_sum(key, 0, amount)?;
        self.insert(
            &mut shard,
            key,
            hash,
            Value::Int(sum),
            restart.flatten(),
            now,
        );
        Ok(sum)
    }

    /// Removes `key`; whether it held a live value.
    pub(super) fn remove(&self, key: &str, hash: u64, now: Nanos) -> bool {
        let mut shard = self.shard(hash).lock();
        let removed = match shard.entries.find_entry(hash, |e| *e.key == *key) {
            Ok(found) => found.remove().0.live(now),
            Err(_) => false,
        };
        shard.counts.deletes += u64::from(removed);
        removed
    }

    pub(super) fn clear(&self) -> u64 {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            removed += shard.entries.len() as u64;
            let counts = shard.counts;
            *shard = Shard {
                counts,
                ..Shard::default()
            };
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
            stats.expired += shard.entries.iter().filter(|e| !e.live(now)).count() as u64;
            stats.gets += shard.counts.gets;
            stats.sets += shard.counts.sets;
            stats.deletes += shard.counts.deletes;
            stats.cleanups += shard.counts.cleanups;
            stats.bytes_estimate += shard
                .entries
                .iter()
                .map(|e| {
                    let value = match &e.value {
                        Value::Int(_) => 8,
                        Value::Bytes(bytes) => bytes.len(),
                        Value::Object(_) => 64,
                    };
                    (e.key.len() + value) as u64
                })
                .sum::<u64>();
        }
        stats
    }

    /// Adds a key `shard` does not hold, making room first.
    fn insert(
        &self,
        shard: &mut Shard,
        key: &str,
        hash: u64,
        value: Value,
        expires_at: Option<Nanos>,
        now: Nanos,
    ) {
        self.make_room(shard, now);
        let entry = Entry {
            key: key.into(),
            hash,
            value,
            expires_at,
        };
        shard.entries.insert_unique(hash, entry, |e| e.hash);
    }

    /// Before a new key goes into `shard`: drop expired keys when due, and one more key if the
    /// shard is full.
    fn make_room(&self, shard: &mut Shard, now: Nanos) {
        shard.writes_since_sweep += 1;
        let full = shard.entries.len() >= self.per_shard;
        if full || shard.writes_since_sweep > shard.sweep_after.max(MIN_SWEEP_WRITES) {
            let before = shard.entries.len();
            shard.entries.retain(|entry| entry.live(now));
            shard.counts.cleanups += u64::from(shard.entries.len() < before);
            shard.writes_since_sweep = 0;
            shard.sweep_after = shard.entries.len();
        }
        if shard.entries.len() < self.per_shard {
            return;
        }
        // A sample, as the rate-limit tables do: eviction stays O(1) per insert.
        let soonest = shard
            .entries
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|entry| entry.expires_at.map_or(u64::MAX, Nanos::as_nanos))
            .map(|entry| (entry.hash, entry.key.clone()));
        let Some((hash, key)) = soonest else {
            return;
        };
        if let Ok(found) = shard.entries.find_entry(hash, |e| e.key == key) {
            found.remove();
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
