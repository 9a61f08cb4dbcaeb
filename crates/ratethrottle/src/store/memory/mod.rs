//! The in-process store: per rule, a sharded hash table with one small entry per identifier.

use std::future::{Future, ready};
use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::{
    KeyValueStats, KeyValueStore, ListEntry, ListKind, Outcome, Query, RuleSpec, SetMode, Store,
    StoreError, Value,
};
use crate::clock::Nanos;

mod kv;
mod lists;
pub(crate) mod table;

use kv::KeyValues;
use lists::Lists;
use table::{KeyTable, Room};

/// The most shards a rule's table uses.
const MAX_SHARDS: usize = 64;
/// The bound on plain keys ([`KeyValueStore`]) of a store without `max_keys`.
const DEFAULT_MAX_VALUES: usize = 1_000_000;

/// Settings for a [`MemoryStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStoreConfig {
    /// The most (rule, identifier) keys kept; `None` for no bound. When full, the key closest to
    /// being idle again is evicted to make room. The store's plain keys ([`KeyValueStore`])
    /// have a bound of their own, the same number (1,000,000 without one).
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
/// Each rule has its own table of keys, in up to 64 shards each behind its own short-lived
/// lock; a check is one hash, one lock and one lookup. A key under a constant-size strategy is
/// 40 bytes (its identifier inline up to 15 bytes, its state); sliding_window keeps its log.
///
/// ## Behavior
///
/// - Keys that have gone idle (equivalent to fresh, block over) are reclaimed as new keys
///   arrive: each shard sweeps itself after as many inserts as it held at its last sweep.
/// - With [`MemoryStoreConfig::max_keys`], a full store evicts, from the shard a new key goes
///   to, the sampled key that will be idle soonest — the one whose loss gives a client the least
///   (the bound may be passed by one key per shard that has none to evict).
/// - The keys of a removed rule are dropped once idle.
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
    /// Unique per store: what a [`RuleSpec`]'s cached table is checked against.
    id: u64,
    /// The rules' key tables (few: one per rule and strategy/window).
    tables: Mutex<Vec<Arc<KeyTable>>>,
    shards: usize,
    max_keys: usize,
    /// Keys held, across tables.
    held: AtomicUsize,
    hasher: foldhash::fast::RandomState,
    lists: Lists,
    evictions: AtomicU64,
    /// The plain keys ([`KeyValueStore`]).
    values: KeyValues,
}

impl MemoryStore {
    /// An unbounded store.
    pub fn new() -> Self {
        Self::with_config(MemoryStoreConfig::default())
    }

    /// A store with `config`.
    pub fn with_config(config: MemoryStoreConfig) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        // Small bounds get fewer shards, so keys spread without one shard filling early.
        let shards = match config.max_keys {
            Some(max) => (max / 1024)
                .clamp(1, MAX_SHARDS)
                .next_power_of_two()
                .min(MAX_SHARDS),
            None => MAX_SHARDS,
        };
        MemoryStore {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                tables: Mutex::default(),
                shards,
                max_keys: config.max_keys.unwrap_or(usize::MAX),
                held: AtomicUsize::new(0),
                hasher: foldhash::fast::RandomState::default(),
                lists: Lists::default(),
                evictions: AtomicU64::new(0),
                values: KeyValues::new(config.max_keys.unwrap_or(DEFAULT_MAX_VALUES)),
            }),
        }
    }

    /// The number of (rule, identifier) keys held, idle ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        let tables = self.inner.tables.lock().clone();
        let mut len = 0;
        for table in tables {
            table.each(|shard| len += shard.len());
        }
        len
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
    #[inline(always)]
    pub fn check_now(&self, query: &Query<'_>) -> Outcome {
        let inner = &*self.inner;
        let hash = inner.hash(query.identifier);
        if let Some(outcome) = inner.lists.screen(query.identifier, hash, query.now) {
            return outcome;
        }
        let table = inner.table(query.rule);
        let mut shard = table.lock(hash);
        shard.check(inner, hash, query)
    }
}

impl MemoryStore {
    /// Counts of the plain keys ([`KeyValueStore`]) at `now`.
    pub fn value_stats(&self, now: Nanos) -> KeyValueStats {
        self.inner.values.stats(now)
    }
}

impl KeyValueStore for MemoryStore {
    fn get(
        &self,
        key: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send {
        let hash = self.inner.hash(key);
        ready(Ok(self.inner.values.get(key, hash, now)))
    }

    fn set(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
        mode: SetMode,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let hash = self.inner.hash(key);
        ready(Ok(self.inner.values.set(key, hash, value, ttl, mode, now)))
    }

    fn increment(
        &self,
        key: &str,
        amount: i64,
        ttl: Option<Duration>,
        now: Nanos,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        let hash = self.inner.hash(key);
        ready(self.inner.values.increment(key, hash, amount, ttl, now))
    }

    fn delete(
        &self,
        keys: &[&str],
        now: Nanos,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let values = &self.inner.values;
        let removed = keys
            .iter()
            .filter(|key| values.remove(key, self.inner.hash(key), now))
            .count();
        ready(Ok(removed as u64))
    }

    fn clear(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let inner = &*self.inner;
        let mut removed = inner.values.clear();
        let tables = inner.tables.lock().clone();
        for table in tables {
            table.each(|shard| {
                let held = shard.clear();
                inner.held.fetch_sub(held, Ordering::Relaxed);
                removed += held as u64;
            });
        }
        removed += inner.lists.clear(|id| inner.hash(id));
        ready(Ok(removed))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// A rule's key table: the one its [`RuleSpec`] caches, or one just looked up.
enum TableRef<'a> {
    Cached(&'a KeyTable),
    Found(Arc<KeyTable>),
}

impl Deref for TableRef<'_> {
    type Target = KeyTable;

    #[inline]
    fn deref(&self) -> &KeyTable {
        match self {
            TableRef::Cached(table) => table,
            TableRef::Found(table) => table,
        }
    }
}

impl Inner {
    /// The table of `rule`'s keys: cached in the spec after its first use with this store.
    #[inline]
    fn table<'a>(&self, rule: &'a RuleSpec) -> TableRef<'a> {
        match rule.memory_table.get() {
            Some((store, table)) if *store == self.id => TableRef::Cached(table),
            _ => TableRef::Found(self.find_table(rule)),
        }
    }

    /// Finds (or makes) the table of `rule`'s keys, and caches it in the spec.
    #[cold]
    fn find_table(&self, rule: &RuleSpec) -> Arc<KeyTable> {
        let mut tables = self.tables.lock();
        let found = tables.iter().find(|table| table.holds_keys_of(rule));
        let table = match found {
            Some(table) => Arc::clone(table),
            None => {
                let table = Arc::new(KeyTable::new(rule, self.shards));
                tables.push(Arc::clone(&table));
                table
            }
        };
        // A spec used with several stores caches the first; the others find theirs here.
        let _ = rule.memory_table.set((self.id, Arc::clone(&table)));
        table
    }

    /// Drops the tables no rule uses any more, once their keys are idle. Skipped when another
    /// thread is at the tables.
    fn collect_orphans(&self, now: u64) {
        let Some(mut tables) = self.tables.try_lock() else {
            return;
        };
        tables.retain(|table| {
            // Only this list holds it: no spec can reach it, so no check can lock its shards.
            if Arc::strong_count(table) > 1 {
                return true;
            }
            let mut held = 0;
            table.each(|shard| {
                shard.sweep(self, now);
                held += shard.len();
            });
            held > 0
        });
    }
}

impl Room for Inner {
    #[inline]
    fn hash(&self, id: &str) -> u64 {
        // Seeded per store, so clients cannot aim for collisions.
        self.hasher.hash_one(id)
    }

    fn count(&self, n: isize) -> bool {
        let held = if n >= 0 {
            self.held.fetch_add(n.unsigned_abs(), Ordering::Relaxed) + n.unsigned_abs()
        } else {
            self.held.fetch_sub(n.unsigned_abs(), Ordering::Relaxed) - n.unsigned_abs()
        };
        held > self.max_keys
    }

    fn evicted(&self) {
        if self.evictions.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                max_keys = self.max_keys,
                "memory store is full: evicting the keys closest to idle"
            );
        }
    }

    fn swept(&self, now: u64) {
        self.collect_orphans(now);
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn check(&self, query: Query<'_>) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        ready(Ok(self.check_now(&query)))
    }

    #[inline(always)]
    fn check_at_once(&self, query: &Query<'_>) -> Option<Result<Outcome, StoreError>> {
        Some(Ok(self.check_now(query)))
    }

    #[inline]
    fn answers_at_once(&self) -> bool {
        true
    }

    fn reset(
        &self,
        rule: &RuleSpec,
        identifier: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let inner = &*self.inner;
        let hash = inner.hash(identifier);
        let table = inner.table(rule);
        if table
            .lock(hash)
            .remove(hash, identifier, rule.compact.is_none())
        {
            inner.count(-1);
        }
        ready(Ok(()))
    }

    fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires_at: Option<Nanos>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let hash = self.inner.hash(identifier);
        self.inner.lists.insert(list, identifier, hash, expires_at);
        ready(Ok(()))
    }

    fn list_remove(
        &self,
        list: ListKind,
        identifier: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let hash = self.inner.hash(identifier);
        ready(Ok(self.inner.lists.remove(list, identifier, hash)))
    }

    fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let hash = self.inner.hash(identifier);
        ready(Ok(self.inner.lists.contains(list, identifier, hash, now)))
    }

    fn list_entries(
        &self,
        list: ListKind,
        now: Nanos,
    ) -> impl Future<Output = Result<Vec<ListEntry>, StoreError>> + Send {
        let inner = &*self.inner;
        ready(Ok(inner.lists.entries(list, now, |id| inner.hash(id))))
    }

    fn list_len_hint(&self, list: ListKind, now: Nanos) -> u64 {
        self.inner.lists.count(list, now)
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
        let store = MemoryStore::new();
        let id = |i: u32| format!("id{i}");
        let add = |i: u32, list| {
            let expires = (i % 2 == 0).then_some(Nanos::from_secs(10));
            ready_now(store.list_add(list, &id(i), expires)).unwrap();
        };
        for i in 0..5000 {
            add(i, ListKind::Blacklist);
            add(i, ListKind::Blacklist); // a repeat changes nothing
            add(i + 10_000, ListKind::Whitelist);
        }
        let listed =
            |i: u32, list| ready_now(store.list_contains(list, &id(i), Nanos::from_secs(5)));
        for i in 0..5000 {
            assert!(listed(i, ListKind::Blacklist).unwrap());
            assert!(!listed(i, ListKind::Whitelist).unwrap());
        }
        assert!(!listed(99_999, ListKind::Blacklist).unwrap());
        let at_10 = Nanos::from_secs(10);
        assert_eq!(
            ready_now(store.list_entries(ListKind::Blacklist, at_10))
                .unwrap()
                .len(),
            2500
        );
        assert_eq!(
            ready_now(store.list_entries(ListKind::Whitelist, at_10))
                .unwrap()
                .len(),
            2500
        );
        for i in (1..5000).step_by(2) {
            assert!(ready_now(store.list_remove(ListKind::Blacklist, &id(i))).unwrap());
            assert!(ready_now(store.list_remove(ListKind::Whitelist, &id(i + 10_000))).unwrap());
        }
        assert_eq!(store.list_len_hint(ListKind::Blacklist, Nanos::ZERO), 0);
        assert!(store.inner.lists.filter_is_clear());
    }

    fn ready_now<F: Future>(future: F) -> F::Output {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => unreachable!("memory-store futures are ready at once"),
        }
    }

    #[test]
    fn a_compact_key_is_40_bytes() {
        assert_eq!(table::COMPACT_ENTRY_BYTES, 40);
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

    #[test]
    fn a_removed_rules_keys_are_dropped_once_idle() {
        let store = MemoryStore::with_config(MemoryStoreConfig::default().max_keys(1_000_000));
        let removed = spec(Strategy::FixedWindow, 5, 1);
        for i in 0..5_000 {
            assert!(allowed(&store, &removed, &format!("old-{i}"), SEC));
        }
        drop(removed); // the rule is gone: nothing can reach its keys any more
        let kept = spec(Strategy::TokenBucket, 5, 1);
        for i in 0..20_000 {
            assert!(allowed(&store, &kept, &format!("new-{i}"), 10 * SEC));
        }
        assert_eq!(store.inner.tables.lock().len(), 1);
        assert!(store.len() <= 20_000, "{}", store.len());
        assert!(store.inner.held.load(Ordering::Relaxed) <= 20_000);
    }

    #[test]
    fn a_block_stays_with_its_key_until_it_ends() {
        let rule = Rule::new("blocks", 1, Duration::from_secs(1))
            .strategy(Strategy::Gcra)
            .block_duration(Duration::from_secs(60));
        let rule = Arc::new(RuleSpec::new(&rule));
        let store = MemoryStore::new();
        let at = |secs| Query::new(&rule, "k", 1, Nanos::from_secs(secs));
        assert!(
            matches!(store.check_now(&at(1)), Outcome::Decided { decision, .. } if decision.allowed)
        );
        assert!(matches!(
            store.check_now(&at(1)),
            Outcome::Decided { blocked_until: Some(until), .. } if until == Nanos::from_secs(61)
        ));
        assert!(matches!(store.check_now(&at(30)), Outcome::Blocked { .. }));
        // A fresh key denied outright (a cost above capacity) is kept for its block alone.
        let too_costly = Query::new(&rule, "fresh", 2, Nanos::from_secs(1));
        assert!(matches!(
            store.check_now(&too_costly),
            Outcome::Decided {
                blocked_until: Some(_),
                ..
            }
        ));
        assert!(matches!(store.check_now(&at(30)), Outcome::Blocked { .. }));
        assert_eq!(store.len(), 2);
        assert!(
            matches!(store.check_now(&at(61)), Outcome::Decided { decision, .. } if decision.allowed)
        );
        ready_now(store.reset(&rule, "k")).unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn one_rule_spec_serves_several_stores_each_with_its_own_keys() {
        let rule = spec(Strategy::FixedWindow, 2, 60);
        let (first, second) = (MemoryStore::new(), MemoryStore::new());
        // The spec caches the first store's table; the second finds its own every time.
        for store in [&first, &second, &first, &second] {
            assert!(allowed(store, &rule, "k", SEC));
        }
        assert!(!allowed(&first, &rule, "k", SEC));
        assert!(!allowed(&second, &rule, "k", SEC));
        assert_eq!((first.len(), second.len()), (1, 1));
    }

    #[test]
    fn a_live_rules_table_is_kept_while_its_keys_are_idle() {
        let store = MemoryStore::with_config(MemoryStoreConfig::default().max_keys(1_000));
        let live = spec(Strategy::FixedWindow, 5, 1);
        assert!(allowed(&store, &live, "old", SEC));
        let other = spec(Strategy::TokenBucket, 5, 1);
        for i in 0..2_000 {
            allowed(&store, &other, &format!("new-{i}"), 10 * SEC);
        }
        // Both rules still exist: both tables stay, and the live rule keeps counting.
        assert_eq!(store.inner.tables.lock().len(), 2);
        for _ in 0..5 {
            assert!(allowed(&store, &live, "old", 20 * SEC));
        }
        assert!(!allowed(&store, &live, "old", 20 * SEC));
    }

    #[test]
    fn max_keys_bounds_the_keys_of_all_rules_together() {
        let store = MemoryStore::with_config(MemoryStoreConfig::default().max_keys(100));
        let rules = [
            spec(Strategy::TokenBucket, 5, 60),
            spec(Strategy::FixedWindow, 5, 60),
            spec(Strategy::SlidingWindow, 5, 60),
        ];
        for i in 0..3_000 {
            allowed(&store, &rules[i % 3], &format!("flood-{i}"), 10 * SEC);
        }
        // At most one key more per table whose shard had nothing to evict when it was full.
        assert!(store.len() <= 100 + rules.len(), "{}", store.len());
        assert_eq!(store.len(), store.inner.held.load(Ordering::Relaxed));
    }
}
