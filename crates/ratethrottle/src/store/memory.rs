//! The in-process store: a sharded hash table with one small cell per (rule, identifier).

use std::collections::HashMap;
use std::future::{Future, ready};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashTable;

use super::{
    ListEntry, ListKind, Outcome, Query, RuleSpec, Store, StoreError, decide_compact, peek_view,
};
use crate::clock::Nanos;
use crate::strategy::{self, Compact, SlidingLog, State};

/// The most shards a store uses.
const MAX_SHARDS: usize = 64;
/// A shard is swept once it has seen this many inserts, or as many as it held after the last
/// sweep if that is more: amortized O(1) per insert, and never more than about twice the live
/// keys plus this.
const MIN_SWEEP_INSERTS: usize = 256;
/// How many entries are looked at to pick one to evict from a full shard.
const EVICTION_SAMPLE: usize = 8;

/// Settings for a [`MemoryStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStoreConfig {
    /// The most (rule, identifier) keys kept; `None` for no bound. When full, the key closest to
    /// being idle again is evicted to make room.
    pub max_keys: Option<usize>,
}

impl MemoryStoreConfig {
    /// Bounds the number of keys kept.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys.max(1));
        self
    }
}

/// The in-process [`Store`]: concurrent, sharded (no global lock), bounded.
///
/// Each (rule, identifier) key is one entry in one of up to 64 shards, each behind its own
/// short-lived lock; a check is one hash, one lock and one lookup. The entry holds the strategy
/// state and the key's block end side by side in 32 bytes (sliding_window keeps its log).
///
/// ## Behavior
///
/// - Keys that have gone idle (equivalent to fresh, block over) are reclaimed as new keys
///   arrive: each shard sweeps itself after as many inserts as it held at its last sweep.
/// - With [`MemoryStoreConfig::max_keys`], a shard that is full evicts the sampled key that will
///   be idle soonest — the one whose loss gives a client the least.
/// - Cloning is cheap; clones share state.
///
/// ```
/// use ratethrottle::store::{MemoryStore, MemoryStoreConfig};
///
/// let unbounded = MemoryStore::new();
/// let bounded = MemoryStore::with_config(MemoryStoreConfig::default().max_keys(1_000_000));
/// assert_eq!(bounded.len(), 0);
/// # drop(unbounded);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Shard]>,
    shard_mask: u64,
    max_per_shard: usize,
    hasher: foldhash::fast::RandomState,
    whitelist: ListMap,
    blacklist: ListMap,
    evictions: AtomicU64,
}

/// One shard, aligned so that two shards' locks never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    compact: HashTable<CompactEntry>,
    logs: HashTable<LogEntry>,
    inserts_since_sweep: usize,
    sweep_after: usize,
}

/// The state of one key under a constant-size strategy: 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cell {
    state: State,
    blocked_until: u64,
}

#[derive(Debug)]
struct CompactEntry {
    rule: Arc<RuleSpec>,
    id: Box<str>,
    cell: Cell,
}

#[derive(Debug)]
struct LogEntry {
    rule: Arc<RuleSpec>,
    id: Box<str>,
    log: SlidingLog,
    blocked_until: u64,
}

impl MemoryStore {
    /// An unbounded store.
    pub fn new() -> Self {
        Self::with_config(MemoryStoreConfig::default())
    }

    /// A store with `config`.
    pub fn with_config(config: MemoryStoreConfig) -> Self {
        // Small bounds get fewer shards, so keys spread without one shard filling early.
        let shards = match config.max_keys {
            Some(max) => (max / 1024)
                .clamp(1, MAX_SHARDS)
                .next_power_of_two()
                .min(MAX_SHARDS),
            None => MAX_SHARDS,
        };
        let max_per_shard = config
            .max_keys
            .map_or(usize::MAX, |max| max.div_ceil(shards));
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Shard::default()).collect(),
                shard_mask: shards as u64 - 1,
                max_per_shard,
                hasher: foldhash::fast::RandomState::default(),
                whitelist: ListMap::default(),
                blacklist: ListMap::default(),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// The number of (rule, identifier) keys held, idle ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| {
                let table = lock(&shard.0);
                table.compact.len() + table.logs.len()
            })
            .sum()
    }

    /// Whether no keys are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys were evicted to respect [`MemoryStoreConfig::max_keys`].
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Decides `query` now (the memory store never waits).
    pub fn check_now(&self, query: &Query<'_>) -> Outcome {
        let inner = &*self.inner;
        let now = query.now;
        if inner.whitelist.contains(query.identifier, now) {
            return Outcome::Whitelisted;
        }
        if let Some(until) = inner.blacklist.get(query.identifier, now) {
            return Outcome::Blacklisted { until };
        }
        let hash = inner.key_hash(query.rule, query.identifier);
        let mut table = lock(inner.shard(hash));
        match query.rule.compact {
            Some(kind) => table.check_compact(inner, kind, hash, query),
            None => table.check_log(inner, hash, query),
        }
    }

    fn list(&self, list: ListKind) -> &ListMap {
        match list {
            ListKind::Whitelist => &self.inner.whitelist,
            ListKind::Blacklist => &self.inner.blacklist,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    #[inline]
    fn key_hash(&self, rule: &RuleSpec, id: &str) -> u64 {
        self.hasher.hash_one((rule.fingerprint, id))
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Table> {
        // hashbrown uses the low bits for buckets and the top 7 for tags: take the middle.
        &self.shards[((hash >> 32) & self.shard_mask) as usize].0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks is plain numbers, valid at every step: a panic elsewhere
    // cannot leave it half-written, so a poisoned lock is safe to keep using.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Table {
    fn check_compact(
        &mut self,
        inner: &Inner,
        kind: Compact,
        hash: u64,
        query: &Query<'_>,
    ) -> Outcome {
        let matches =
            |e: &CompactEntry| e.rule.same_state(query.rule) && *e.id == *query.identifier;
        if let Some(entry) = self.compact.find_mut(hash, matches) {
            let (outcome, write) =
                decide_compact(kind, query, &entry.cell.state, entry.cell.blocked_until);
            if let Some((state, blocked_until)) = write {
                entry.cell = Cell {
                    state,
                    blocked_until,
                };
            }
            return outcome;
        }
        let (outcome, write) = decide_compact(kind, query, &State::default(), 0);
        if let Some((state, blocked_until)) = write {
            self.make_room(inner, query.now.as_nanos());
            let entry = CompactEntry {
                rule: Arc::clone(query.rule),
                id: query.identifier.into(),
                cell: Cell {
                    state,
                    blocked_until,
                },
            };
            self.compact
                .insert_unique(hash, entry, |e| inner.key_hash(&e.rule, &e.id));
        }
        outcome
    }

    fn check_log(&mut self, inner: &Inner, hash: u64, query: &Query<'_>) -> Outcome {
        let now = query.now.as_nanos();
        let matches = |e: &LogEntry| e.rule.same_state(query.rule) && *e.id == *query.identifier;
        let mut fresh = None;
        let entry = match self.logs.find_mut(hash, matches) {
            Some(entry) => entry,
            None => fresh.insert(LogEntry {
                rule: Arc::clone(query.rule),
                id: query.identifier.into(),
                log: SlidingLog::new(),
                blocked_until: 0,
            }),
        };
        if entry.blocked_until > now {
            return Outcome::Blocked {
                until: Nanos::from_nanos(entry.blocked_until),
            };
        }
        let rule = query.rule;
        let decision = entry.log.decide(&rule.params, now, query.cost);
        let mut blocked_until = None;
        if !query.consume {
            let idle = entry.log.idle_at(&rule.params);
            let decision = peek_view(decision, query.cost, idle, now);
            return Outcome::Decided {
                decision,
                blocked_until,
            };
        }
        let changed = if decision.allowed {
            entry.log.record(now, query.cost);
            true
        } else if rule.block > 0 {
            entry.blocked_until = now.saturating_add(rule.block);
            blocked_until = Some(Nanos::from_nanos(entry.blocked_until));
            true
        } else {
            false
        };
        if let Some(fresh) = fresh.filter(|_| changed) {
            self.make_room(inner, now);
            self.logs
                .insert_unique(hash, fresh, |e| inner.key_hash(&e.rule, &e.id));
        }
        Outcome::Decided {
            decision,
            blocked_until,
        }
    }

    /// Before an insert: sweep idle keys when due, and evict one if the shard is full.
    fn make_room(&mut self, inner: &Inner, now: u64) {
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep > self.sweep_after.max(MIN_SWEEP_INSERTS) {
            self.sweep(now);
        }
        if self.compact.len() + self.logs.len() >= inner.max_per_shard {
            self.evict_one(inner);
        }
    }

    /// Drops every key that is idle at `now`.
    fn sweep(&mut self, now: u64) {
        self.compact.retain(|e| !e.is_idle(now));
        self.logs
            .retain(|e| e.blocked_until > now || e.log.prune(&e.rule.params, now));
        self.inserts_since_sweep = 0;
        self.sweep_after = self.compact.len() + self.logs.len();
    }

    /// Evicts the sampled key that will be idle soonest.
    fn evict_one(&mut self, inner: &Inner) {
        let compact = self
            .compact
            .iter()
            .take(EVICTION_SAMPLE)
            .map(|e| (e.idle_at(), Arc::clone(&e.rule), e.id.clone(), false));
        let logs = self
            .logs
            .iter()
            .take(EVICTION_SAMPLE)
            .map(|e| (e.idle_at(), Arc::clone(&e.rule), e.id.clone(), true));
        let Some((_, rule, id, is_log)) = compact.chain(logs).min_by_key(|c| c.0) else {
            return;
        };
        let hash = inner.key_hash(&rule, &id);
        let removed = if is_log {
            self.logs
                .find_entry(hash, |e| Arc::ptr_eq(&e.rule, &rule) && e.id == id)
                .map(|entry| drop(entry.remove()))
                .is_ok()
        } else {
            self.compact
                .find_entry(hash, |e| Arc::ptr_eq(&e.rule, &rule) && e.id == id)
                .map(|entry| drop(entry.remove()))
                .is_ok()
        };
        if removed && inner.evictions.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                max_keys_per_shard = inner.max_per_shard,
                "memory store is full: evicting the keys closest to idle"
            );
        }
    }

    fn reset(&mut self, hash: u64, rule: &RuleSpec, id: &str) {
        if let Ok(entry) = self
            .compact
            .find_entry(hash, |e| e.rule.same_state(rule) && *e.id == *id)
        {
            entry.remove();
        }
        if let Ok(entry) = self
            .logs
            .find_entry(hash, |e| e.rule.same_state(rule) && *e.id == *id)
        {
            entry.remove();
        }
    }
}

impl CompactEntry {
    fn idle_at(&self) -> u64 {
        let kind = self.rule.compact.unwrap_or(Compact::Tat);
        strategy::idle_at(kind, &self.rule.params, &self.cell.state).max(self.cell.blocked_until)
    }

    fn is_idle(&self, now: u64) -> bool {
        self.idle_at() <= now
    }
}

impl LogEntry {
    fn idle_at(&self) -> u64 {
        self.log.idle_at(&self.rule.params).max(self.blocked_until)
    }
}

/// Slots in a list's membership filter (a power of two).
const FILTER_SLOTS: usize = 1 << 15;

type ListShard = Mutex<HashMap<Box<str>, Option<Nanos>>>;

/// A whitelist or blacklist: identifier → optional expiry, sharded.
///
/// A counting filter in front of the map (one counter per hash slot) answers "not listed" for
/// most identifiers with a single atomic load, so a check pays for a lock only when its
/// identifier shares a slot with a listed one.
#[derive(Debug)]
struct ListMap {
    filter: Box<[AtomicU32]>,
    shards: [ListShard; 16],
}

impl Default for ListMap {
    fn default() -> Self {
        ListMap {
            filter: (0..FILTER_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            shards: Default::default(),
        }
    }
}

impl ListMap {
    #[inline]
    fn hash(id: &str) -> u64 {
        foldhash::fast::FixedState::default().hash_one(id)
    }

    fn slot(&self, hash: u64) -> &AtomicU32 {
        &self.filter[(hash as usize) & (FILTER_SLOTS - 1)]
    }

    fn shard(&self, hash: u64) -> &ListShard {
        &self.shards[(hash >> 60) as usize]
    }

    #[inline]
    fn contains(&self, id: &str, now: Nanos) -> bool {
        self.get(id, now).is_some()
    }

    /// The entry's expiry if `id` is listed at `now`; drops it if it has expired.
    #[inline]
    fn get(&self, id: &str, now: Nanos) -> Option<Option<Nanos>> {
        let hash = Self::hash(id);
        if self.slot(hash).load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut shard = lock(self.shard(hash));
        let expires = *shard.get(id)?;
        if expires.is_some_and(|at| at <= now) {
            shard.remove(id);
            self.slot(hash).fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(expires)
    }

    fn insert(&self, id: &str, expires: Option<Nanos>) {
        let hash = Self::hash(id);
        let mut shard = lock(self.shard(hash));
        if shard.insert(id.into(), expires).is_none() {
            self.slot(hash).fetch_add(1, Ordering::AcqRel);
        }
    }

    fn remove(&self, id: &str) -> bool {
        let hash = Self::hash(id);
        let removed = lock(self.shard(hash)).remove(id).is_some();
        if removed {
            self.slot(hash).fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// Drops expired entries and returns the rest.
    fn entries(&self, now: Nanos) -> Vec<ListEntry> {
        let mut entries = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.retain(|id, expires| {
                let keep = expires.is_none_or(|at| at > now);
                if !keep {
                    self.slot(Self::hash(id)).fetch_sub(1, Ordering::AcqRel);
                }
                keep
            });
            entries.extend(
                shard
                    .iter()
                    .map(|(id, expires)| ListEntry::new(id.as_ref(), *expires)),
            );
        }
        entries.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        entries
    }

    fn count(&self, now: Nanos) -> u64 {
        self.shards
            .iter()
            .map(|shard| {
                lock(shard)
                    .values()
                    .filter(|expires| expires.is_none_or(|at| at > now))
                    .count() as u64
            })
            .sum()
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn check(&self, query: Query<'_>) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        ready(Ok(self.check_now(&query)))
    }

    fn reset(
        &self,
        rule: &RuleSpec,
        identifier: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let hash = self.inner.key_hash(rule, identifier);
        lock(self.inner.shard(hash)).reset(hash, rule, identifier);
        ready(Ok(()))
    }

    fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires_at: Option<Nanos>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.list(list).insert(identifier, expires_at);
        ready(Ok(()))
    }

    fn list_remove(
        &self,
        list: ListKind,
        identifier: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.list(list).remove(identifier)))
    }

    fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.list(list).contains(identifier, now)))
    }

    fn list_entries(
        &self,
        list: ListKind,
        now: Nanos,
    ) -> impl Future<Output = Result<Vec<ListEntry>, StoreError>> + Send {
        ready(Ok(self.list(list).entries(now)))
    }

    fn list_len_hint(&self, list: ListKind, now: Nanos) -> u64 {
        self.list(list).count(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rule::{Rule, Strategy};

    const SEC: u64 = 1_000_000_000;

    fn spec(strategy: Strategy, limit: u64, window_secs: u64) -> Arc<RuleSpec> {
        let rule = Rule::new("mem", limit, Duration::from_secs(window_secs))
            .strategy(strategy)
            .block_duration(Duration::ZERO);
        Arc::new(RuleSpec::new(&rule))
    }

    fn allowed(store: &MemoryStore, rule: &Arc<RuleSpec>, id: &str, now: u64) -> bool {
        let query = Query::new(rule, id, 1, Nanos::from_nanos(now));
        matches!(
            store.check_now(&query),
            Outcome::Decided { decision, .. } if decision.allowed
        )
    }

    #[test]
    fn the_list_filter_follows_inserts_removals_and_expiry() {
        let list = ListMap::default();
        let id = |i: u32| format!("id{i}");
        for i in 0..5000 {
            let expires = (i % 2 == 0).then_some(Nanos::from_secs(10));
            list.insert(&id(i), expires);
            list.insert(&id(i), expires); // a repeat changes nothing
        }
        for i in 0..5000 {
            assert!(list.contains(&id(i), Nanos::from_secs(5)));
        }
        assert!(!list.contains("absent", Nanos::from_secs(5)));
        assert_eq!(list.entries(Nanos::from_secs(10)).len(), 2500);
        for i in (1..5000).step_by(2) {
            assert!(list.remove(&id(i)));
        }
        assert_eq!(list.count(Nanos::ZERO), 0);
        assert!(list.filter.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn the_cell_of_a_compact_key_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Cell>(), 32);
    }

    #[test]
    fn idle_keys_are_reclaimed_as_new_keys_arrive() {
        let store = MemoryStore::new();
        let rule = spec(Strategy::FixedWindow, 5, 1);
        let start = 1_000 * SEC;
        for i in 0..20_000 {
            assert!(allowed(&store, &rule, &format!("old-{i}"), start));
        }
        assert_eq!(store.len(), 20_000);
        // Two seconds later every old key is idle; new keys trigger the sweeps.
        for i in 0..40_000 {
            assert!(allowed(&store, &rule, &format!("new-{i}"), start + 2 * SEC));
        }
        assert!(
            store.len() < 45_000,
            "idle keys were not reclaimed: {}",
            store.len()
        );
    }

    #[test]
    fn max_keys_bounds_memory_and_evicts_the_key_closest_to_idle() {
        let store = MemoryStore::with_config(MemoryStoreConfig::default().max_keys(100));
        let rule = spec(Strategy::TokenBucket, 5, 60);
        for i in 0..10_000 {
            allowed(&store, &rule, &format!("flood-{i}"), 10 * SEC);
        }
        assert!(store.len() <= 100, "{}", store.len());
        assert!(store.evictions() >= 9_900);
    }

    #[test]
    fn a_denial_without_block_stores_nothing() {
        let store = MemoryStore::new();
        let rule = spec(Strategy::SlidingWindow, 1, 60);
        let query = Query::new(&rule, "x", 2, Nanos::from_secs(5));
        assert!(
            matches!(store.check_now(&query), Outcome::Decided { decision, .. } if !decision.allowed)
        );
        assert!(store.is_empty());
        assert!(allowed(&store, &rule, "x", 5 * SEC));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn rules_with_the_same_name_but_other_parameters_do_not_share_state() {
        let store = MemoryStore::new();
        let a = spec(Strategy::FixedWindow, 1, 60);
        let b = spec(Strategy::SlidingCounter, 1, 60);
        let a_again = spec(Strategy::FixedWindow, 1, 60);
        assert!(allowed(&store, &a, "k", SEC));
        assert!(allowed(&store, &b, "k", SEC));
        assert!(
            !allowed(&store, &a_again, "k", SEC),
            "same rule, same state"
        );
    }
}
