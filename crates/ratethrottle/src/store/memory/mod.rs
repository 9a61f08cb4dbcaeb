//! The in-process store: a sharded hash table with one small cell per (rule, identifier).

use std::future::{Future, ready};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use compact_str::CompactString;
use hashbrown::HashTable;

use super::{ListEntry, ListKind, Outcome, Query, RuleSpec, Store, StoreError};
use crate::clock::Nanos;
use crate::short_eq::str_eq;
use crate::strategy::{self, Compact, SlidingLog, State, peek_view};

mod lists;

use lists::Lists;

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
    lists: Lists,
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

/// One key under a constant-size strategy: exactly one cache line (64 bytes, aligned), so a
/// lookup in a large table touches one line of entries.
#[derive(Debug)]
#[repr(align(64))]
struct CompactEntry {
    rule: Arc<RuleSpec>,
    id: CompactString,
    cell: Cell,
}

#[derive(Debug)]
struct LogEntry {
    rule: Arc<RuleSpec>,
    id: CompactString,
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
                lists: Lists::default(),
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
    #[inline]
    pub fn check_now(&self, query: &Query<'_>) -> Outcome {
        let inner = &*self.inner;
        let id_hash = inner.id_hash(query.identifier);
        if let Some(outcome) = inner.lists.screen(query.identifier, id_hash, query.now) {
            return outcome;
        }
        let hash = key_hash(query.rule, id_hash);
        let mut table = lock(inner.shard(hash));
        let Some(kind) = query.rule.compact else {
            return table.check_log(inner, hash, query);
        };
        // The hot path, inline: a key that exists.
        let matches =
            |e: &CompactEntry| e.rule.same_state(query.rule) && str_eq(&e.id, query.identifier);
        match table.compact.find_mut(hash, matches) {
            Some(entry) => {
                // The rule may have been replaced (a new limit or burst): the entry follows it.
                if !Arc::ptr_eq(&entry.rule, query.rule) {
                    entry.rule = Arc::clone(query.rule);
                }
                let cell = &mut entry.cell;
                decide_compact(kind, query, &mut cell.state, &mut cell.blocked_until).0
            }
            None => table.check_new_compact(inner, kind, hash, query),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The hash of a (rule, identifier) key, from the identifier's hash: the identifier is hashed
/// once per check, for the lists and the key alike.
#[inline]
fn key_hash(rule: &RuleSpec, id_hash: u64) -> u64 {
    (id_hash ^ rule.fingerprint.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Inner {
    /// The identifier's hash, seeded per store (so clients cannot aim for collisions).
    #[inline]
    fn id_hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    #[inline]
    fn key_hash(&self, rule: &RuleSpec, id: &str) -> u64 {
        key_hash(rule, self.id_hash(id))
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Table> {
        // hashbrown uses the low bits for buckets and the top 7 for tags: take the middle.
        &self.shards[((hash >> 32) & self.shard_mask) as usize].0
    }
}

/// Locks a shard. The data under these locks is plain numbers, valid at every step, and
/// `parking_lot` locks do not poison: a panic elsewhere cannot make a shard unusable.
#[inline]
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock()
}

impl Table {
    /// A check of a key not held yet: stored only if the decision changed it.
    #[cold]
    #[inline(never)]
    fn check_new_compact(
        &mut self,
        inner: &Inner,
        kind: Compact,
        hash: u64,
        query: &Query<'_>,
    ) -> Outcome {
        let mut fresh = Cell::default();
        let (outcome, changed) =
            decide_compact(kind, query, &mut fresh.state, &mut fresh.blocked_until);
        if changed {
            self.make_room(inner, query.now.as_nanos());
            let entry = CompactEntry {
                rule: Arc::clone(query.rule),
                id: CompactString::new(query.identifier),
                cell: fresh,
            };
            self.compact
                .insert_unique(hash, entry, |e| inner.key_hash(&e.rule, &e.id));
        }
        outcome
    }

    #[inline(never)]
    fn check_log(&mut self, inner: &Inner, hash: u64, query: &Query<'_>) -> Outcome {
        let now = query.now.as_nanos();
        let matches =
            |e: &LogEntry| e.rule.same_state(query.rule) && str_eq(&e.id, query.identifier);
        let mut fresh = None;
        let entry = match self.logs.find_mut(hash, matches) {
            Some(entry) => {
                if !Arc::ptr_eq(&entry.rule, query.rule) {
                    entry.rule = Arc::clone(query.rule);
                }
                entry
            }
            None => fresh.insert(LogEntry {
                rule: Arc::clone(query.rule),
                id: CompactString::new(query.identifier),
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
            self.evict_one(inner, now);
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
    fn evict_one(&mut self, inner: &Inner, now: u64) {
        let compact = self
            .compact
            .iter()
            .take(EVICTION_SAMPLE)
            .map(|e| (e.idle_at(now), Arc::clone(&e.rule), e.id.clone(), false));
        let logs = self
            .logs
            .iter()
            .take(EVICTION_SAMPLE)
            .map(|e| (e.idle_at(now), Arc::clone(&e.rule), e.id.clone(), true));
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
    fn idle_at(&self, now: u64) -> u64 {
        let kind = self.rule.compact.unwrap_or(Compact::Tat);
        strategy::idle_at(kind, &self.rule.params, &self.cell.state, now)
            .max(self.cell.blocked_until)
    }

    fn is_idle(&self, now: u64) -> bool {
        self.idle_at(now) <= now
    }
}

impl LogEntry {
    fn idle_at(&self, _now: u64) -> u64 {
        self.log.idle_at(&self.rule.params).max(self.blocked_until)
    }
}

/// Applies the strategy to one key's compact state in place: the shared core of in-process
/// stores. Returns the outcome and whether `state` / `blocked_until` changed.
#[inline(always)]
fn decide_compact(
    kind: Compact,
    query: &Query<'_>,
    state: &mut strategy::State,
    blocked_until: &mut u64,
) -> (Outcome, bool) {
    let now = query.now.as_nanos();
    if *blocked_until > now {
        let until = Nanos::from_nanos(*blocked_until);
        return (Outcome::Blocked { until }, false);
    }
    let rule = &query.rule;
    let (mut decision, next) = strategy::decide(kind, &rule.params, state, now, query.cost);
    let mut block = None;
    let changed = if !query.consume {
        let idle = strategy::idle_at(kind, &rule.params, state, now);
        decision = peek_view(decision, query.cost, idle, now);
        false
    } else if decision.allowed {
        *state = next;
        *blocked_until = 0;
        true
    } else if rule.block > 0 {
        *blocked_until = now.saturating_add(rule.block);
        block = Some(Nanos::from_nanos(*blocked_until));
        true
    } else {
        false
    };
    let outcome = Outcome::Decided {
        decision,
        blocked_until: block,
    };
    (outcome, changed)
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn check(&self, query: Query<'_>) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        ready(Ok(self.check_now(&query)))
    }

    #[inline]
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
        let hash = self.inner.id_hash(identifier);
        self.inner.lists.insert(list, identifier, hash, expires_at);
        ready(Ok(()))
    }

    fn list_remove(
        &self,
        list: ListKind,
        identifier: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let hash = self.inner.id_hash(identifier);
        ready(Ok(self.inner.lists.remove(list, identifier, hash)))
    }

    fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let hash = self.inner.id_hash(identifier);
        ready(Ok(self.inner.lists.contains(list, identifier, hash, now)))
    }

    fn list_entries(
        &self,
        list: ListKind,
        now: Nanos,
    ) -> impl Future<Output = Result<Vec<ListEntry>, StoreError>> + Send {
        let inner = &*self.inner;
        ready(Ok(inner.lists.entries(list, now, |id| inner.id_hash(id))))
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
