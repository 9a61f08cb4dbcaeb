//! One rule's keys: a sharded hash table with one small entry per identifier.

use ecow::EcoString;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};

use crate::clock::Nanos;
use crate::store::{Outcome, Query, RuleSpec};
use crate::strategy::{self, Compact, Params, SlidingLog, State, peek_view};

/// A shard is swept once it has seen this many inserts, or as many as it held after the last
/// sweep if that is more: amortized O(1) per insert, and never more than about twice the live
/// keys plus this.
const MIN_SWEEP_INSERTS: usize = 256;
/// How many entries are looked at to pick one to evict from a full store.
const EVICTION_SAMPLE: usize = 8;

/// The keys of one rule (one name, strategy and window: what the meaning of a key's state
/// depends on, see [`RuleSpec::fingerprint`]), shared by every version of the rule that only
/// changes its limit or burst, so their keys carry over.
pub(crate) struct KeyTable {
    name: &'static str,
    fingerprint: u64,
    shards: Box<[Shard]>,
}

/// One shard, aligned so that two shards' locks never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Table>);

#[derive(Debug, Default)]
pub(super) struct Table {
    /// The numbers of the newest version of the rule seen here (and its strategy's form):
    /// they decide when keys are idle. A copy, not the spec, which holds the table.
    rule: Option<(Params, Option<Compact>)>,
    compact: HashTable<CompactEntry>,
    logs: HashTable<LogEntry>,
    /// The blocks of compact keys serving one after a violation (few: only violators).
    blocks: HashTable<Block>,
    inserts_since_sweep: usize,
    sweep_after: usize,
}

/// One key under a constant-size strategy: 40 bytes (an identifier of up to 15 bytes is held
/// inline).
#[derive(Debug)]
struct CompactEntry {
    id: EcoString,
    state: State,
}

#[derive(Debug)]
struct LogEntry {
    id: EcoString,
    log: SlidingLog,
    blocked_until: u64,
}

#[derive(Debug)]
struct Block {
    id: EcoString,
    until: u64,
}

/// What the store as a whole lends a table for an insert: the hasher, the bound and the count.
pub(super) trait Room {
    /// The hash of a key's identifier.
    fn hash(&self, id: &str) -> u64;
    /// Counts `n` keys in (positive) or out; whether the store is now over its bound.
    fn count(&self, n: isize) -> bool;
    /// Counts an eviction.
    fn evicted(&self);
    /// Called after a shard swept itself: the store may tidy up too.
    fn swept(&self, now: u64);
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("rule", &self.name)
            .finish_non_exhaustive()
    }
}

/// The size of a key under a constant-size strategy.
#[cfg(test)]
pub(super) const COMPACT_ENTRY_BYTES: usize = std::mem::size_of::<CompactEntry>();

impl KeyTable {
    pub(super) fn new(spec: &RuleSpec, shards: usize) -> Self {
        KeyTable {
            name: spec.name,
            fingerprint: spec.fingerprint,
            shards: (0..shards).map(|_| Shard::default()).collect(),
        }
    }

    /// Whether this table holds the keys of `rule` (the same name, strategy and window).
    pub(super) fn holds_keys_of(&self, rule: &RuleSpec) -> bool {
        // Names are interned: equal names are the same pointer.
        std::ptr::eq(self.name, rule.name) && self.fingerprint == rule.fingerprint
    }

    /// The shard of the key with hash `hash`, locked. The data under these locks is plain
    /// numbers, valid at every step, and `parking_lot` locks do not poison: a panic elsewhere
    /// cannot make a shard unusable.
    #[inline]
    pub(super) fn lock(&self, hash: u64) -> MutexGuard<'_, Table> {
        // hashbrown uses the low bits for buckets and the top 7 for tags: take the middle.
        let at = ((hash >> 32) as usize) & (self.shards.len() - 1);
        self.shards[at].0.lock()
    }

    /// Every shard in turn.
    pub(super) fn each(&self, mut f: impl FnMut(&mut Table)) {
        for shard in &self.shards {
            f(&mut shard.0.lock());
        }
    }
}

impl Table {
    /// The keys held.
    pub(super) fn len(&self) -> usize {
        self.compact.len() + self.logs.len()
    }

    /// Decides `query` for the key with identifier hash `hash`.
    #[inline]
    pub(super) fn check(&mut self, room: &impl Room, hash: u64, query: &Query<'_>) -> Outcome {
        // The rule may have been replaced (a new limit or burst): the shard follows it.
        if !self
            .rule
            .is_some_and(|(params, _)| params == query.rule.params)
        {
            self.rule = Some((query.rule.params, query.rule.compact));
        }
        let Some(kind) = query.rule.compact else {
            return self.check_log(room, hash, query);
        };
        let now = query.now.as_nanos();
        if !self.blocks.is_empty() {
            if let Some(until) = self.block_of(hash, query.identifier, now) {
                return Outcome::Blocked {
                    until: Nanos::from_nanos(until),
                };
            }
        }
        // The hot path, inline: a key that exists.
        match self.compact.find_mut(hash, |e| e.id == query.identifier) {
            Some(entry) => {
                let (outcome, _, block) = decide_compact(kind, query, &mut entry.state);
                if let Some(until) = block {
                    self.block(room, hash, query.identifier, until);
                }
                outcome
            }
            None => self.check_new(room, kind, hash, query),
        }
    }

    /// A check of a key not held yet: stored only if the decision changed it.
    #[cold]
    #[inline(never)]
    fn check_new(
        &mut self,
        room: &impl Room,
        kind: Compact,
        hash: u64,
        query: &Query<'_>,
    ) -> Outcome {
        let mut state = State::default();
        let (outcome, changed, block) = decide_compact(kind, query, &mut state);
        if changed {
            self.make_room(room, query.now.as_nanos());
            let id = EcoString::from(query.identifier);
            let entry = CompactEntry { id, state };
            self.compact
                .insert_unique(hash, entry, |e| room.hash(&e.id));
            if let Some(until) = block {
                self.block(room, hash, query.identifier, until);
            }
        }
        outcome
    }

    /// The end of the key's block, if it is serving one at `now` (an ended one is dropped).
    fn block_of(&mut self, hash: u64, id: &str, now: u64) -> Option<u64> {
        let entry = self.blocks.find_entry(hash, |b| b.id == id).ok()?;
        let until = entry.get().until;
        if until > now {
            return Some(until);
        }
        entry.remove();
        None
    }

    /// Starts (or extends) the key's block, until `until`.
    fn block(&mut self, room: &impl Room, hash: u64, id: &str, until: u64) {
        match self.blocks.find_mut(hash, |b| b.id == id) {
            Some(block) => block.until = until,
            None => {
                let block = Block {
                    id: EcoString::from(id),
                    until,
                };
                self.blocks.insert_unique(hash, block, |b| room.hash(&b.id));
            }
        }
    }

    #[inline(never)]
    fn check_log(&mut self, room: &impl Room, hash: u64, query: &Query<'_>) -> Outcome {
        let now = query.now.as_nanos();
        let mut fresh = None;
        let entry = match self.logs.find_mut(hash, |e| e.id == query.identifier) {
            Some(entry) => entry,
            None => fresh.insert(LogEntry {
                id: EcoString::from(query.identifier),
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
        if query.refund {
            entry.log.refund(&query.params, now, query.cost);
            let decision = entry.log.decide(&query.params, now, 1);
            let idle = entry.log.idle_at(&query.params);
            return Outcome::Decided {
                decision: peek_view(decision, 1, idle, now),
                blocked_until: None,
            };
        }
        let decision = entry.log.decide(&query.params, now, query.cost);
        let mut blocked_until = None;
        if !query.consume {
            let idle = entry.log.idle_at(&query.params);
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
            self.make_room(room, now);
            self.logs.insert_unique(hash, fresh, |e| room.hash(&e.id));
        }
        Outcome::Decided {
            decision,
            blocked_until,
        }
    }

    /// Before an insert: sweep idle keys when due, and evict one if the store is full.
    fn make_room(&mut self, room: &impl Room, now: u64) {
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep > self.sweep_after.max(MIN_SWEEP_INSERTS) {
            self.sweep(room, now);
            room.swept(now);
        }
        if room.count(1) {
            self.evict_one(room, now);
        }
    }

    /// Drops every key that is idle at `now`.
    pub(super) fn sweep(&mut self, room: &impl Room, now: u64) {
        let before = self.len();
        self.blocks.retain(|b| b.until > now);
        if let Some((params, kind)) = self.rule {
            let kind = kind.unwrap_or(Compact::Tat);
            let blocks = &self.blocks;
            self.compact.retain(|e| {
                strategy::idle_at(kind, &params, &e.state, now) > now
                    || (!blocks.is_empty()
                        && blocks.find(room.hash(&e.id), |b| b.id == e.id).is_some())
            });
            self.logs
                .retain(|e| e.blocked_until > now || e.log.prune(&params, now));
        }
        self.inserts_since_sweep = 0;
        self.sweep_after = self.len();
        room.count(-((before - self.len()) as isize));
    }

    /// Evicts the sampled key that will be idle soonest.
    fn evict_one(&mut self, room: &impl Room, now: u64) {
        let Some((params, kind)) = self.rule else {
            return;
        };
        let kind = kind.unwrap_or(Compact::Tat);
        let block_of = |id: &EcoString| {
            self.blocks
                .find(room.hash(id), |b| b.id == *id)
                .map_or(0, |b| b.until)
        };
        let compact = self.compact.iter().take(EVICTION_SAMPLE).map(|e| {
            let idle = strategy::idle_at(kind, &params, &e.state, now).max(block_of(&e.id));
            (idle, e.id.clone(), false)
        });
        let logs = self.logs.iter().take(EVICTION_SAMPLE).map(|e| {
            let idle = e.log.idle_at(&params).max(e.blocked_until);
            (idle, e.id.clone(), true)
        });
        let Some((_, id, is_log)) = compact.chain(logs).min_by_key(|c| c.0) else {
            return;
        };
        if self.remove(room.hash(&id), &id, is_log) {
            room.count(-1);
            room.evicted();
        }
    }

    /// Forgets every key and block; how many keys it held.
    pub(super) fn clear(&mut self) -> usize {
        let held = self.len();
        self.compact.clear();
        self.logs.clear();
        self.blocks.clear();
        held
    }

    /// Forgets the key `id` (hash `hash`): its state and its block. Whether it was held.
    pub(super) fn remove(&mut self, hash: u64, id: &str, is_log: bool) -> bool {
        if let Ok(block) = self.blocks.find_entry(hash, |b| b.id == id) {
            block.remove();
        }
        if is_log {
            self.logs
                .find_entry(hash, |e| e.id == id)
                .map(|e| drop(e.remove()))
                .is_ok()
        } else {
            self.compact
                .find_entry(hash, |e| e.id == id)
                .map(|e| drop(e.remove()))
                .is_ok()
        }
    }
}

/// Applies the strategy to one key's compact state in place. Returns the outcome, whether the
/// state changed, and the end of the block this request started, if any.
#[inline(always)]
fn decide_compact(
    kind: Compact,
    query: &Query<'_>,
    state: &mut State,
) -> (Outcome, bool, Option<u64>) {
    let now = query.now.as_nanos();
    if query.refund {
        let next = strategy::refund(kind, &query.params, state, now, query.cost);
        let changed = next != *state;
        *state = next;
        let (decision, _) = strategy::decide(kind, &query.params, state, now, 1);
        let idle = strategy::idle_at(kind, &query.params, state, now);
        let outcome = Outcome::Decided {
            decision: peek_view(decision, 1, idle, now),
            blocked_until: None,
        };
        return (outcome, changed, None);
    }
    let rule = &query.rule;
    let (mut decision, next) = strategy::decide(kind, &query.params, state, now, query.cost);
    let mut block = None;
    let changed = if !query.consume {
        let idle = strategy::idle_at(kind, &query.params, state, now);
        decision = peek_view(decision, query.cost, idle, now);
        false
    } else if decision.allowed {
        *state = next;
        true
    } else if rule.block > 0 {
        block = Some(now.saturating_add(rule.block));
        true
    } else {
        false
    };
    let outcome = Outcome::Decided {
        decision,
        blocked_until: block.map(Nanos::from_nanos),
    };
    (outcome, changed, block)
}
