//! The limiter's rules by name: a small immutable hash table, replaced whole on every change,
//! and a per-thread cache of the current table for the hot path.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;
use hashbrown::HashTable;

use super::RuleEntry;
use crate::short_eq::str_eq;

/// Up to this many rules, a lookup scans the names inline instead of hashing.
const SCAN_LIMIT: usize = 8;

/// Rules by name. Lookups compare names inline (names are short): a scan for a few rules, a
/// hash index for more.
#[derive(Clone, Debug, Default)]
pub(super) struct RuleTable {
    /// The rules' names, in the order of `entries`.
    names: Vec<&'static str>,
    entries: Vec<Arc<RuleEntry>>,
    /// Positions by name, kept only beyond [`SCAN_LIMIT`] rules.
    index: HashTable<usize>,
    hasher: foldhash::fast::FixedState,
}

impl RuleTable {
    /// The rule named `name`.
    #[inline]
    pub(super) fn get(&self, name: &str) -> Option<&Arc<RuleEntry>> {
        self.position(name).map(|at| &self.entries[at])
    }

    #[inline]
    fn position(&self, name: &str) -> Option<usize> {
        if self.names.len() <= SCAN_LIMIT {
            return self.names.iter().position(|known| str_eq(known, name));
        }
        let names = &self.names;
        self.index
            .find(self.hasher.hash_one(name), |&at| str_eq(names[at], name))
            .copied()
    }

    /// Adds `entry`, replacing the rule of the same name.
    pub(super) fn insert(&mut self, entry: Arc<RuleEntry>) {
        match self.position(entry.name()) {
            Some(at) => self.entries[at] = entry,
            None => {
                self.names.push(entry.name());
                self.entries.push(entry);
                self.reindex();
            }
        }
    }

    /// Removes and returns the rule named `name`.
    pub(super) fn remove(&mut self, name: &str) -> Option<Arc<RuleEntry>> {
        let at = self.position(name)?;
        self.names.swap_remove(at);
        let removed = self.entries.swap_remove(at);
        self.reindex();
        Some(removed)
    }

    fn reindex(&mut self) {
        self.index.clear();
        if self.names.len() > SCAN_LIMIT {
            let hasher = &self.hasher;
            for (at, name) in self.names.iter().enumerate() {
                self.index.insert_unique(hasher.hash_one(name), at, |&i| {
                    hasher.hash_one(self.names[i])
                });
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<RuleEntry>> {
        self.entries.iter()
    }
}

/// A limiter's rule table, swapped whole on every change.
pub(super) type SharedRules = Arc<ArcSwap<RuleTable>>;

/// How many limiters' tables one thread keeps cached.
const CACHED_LIMITERS: usize = 4;

thread_local! {
    static CACHES: RefCell<ThreadCaches> = const {
        RefCell::new(ThreadCaches { slots: [const { None }; CACHED_LIMITERS] })
    };
}

/// The rule tables of the limiters this thread used last, most recent first. Checking that a
/// cached table is current is one plain load, where loading from the `ArcSwap` is two atomic
/// read-modify-writes. A slot keeps its limiter's table alive until the thread has used
/// [`CACHED_LIMITERS`] other limiters since, or exits.
struct ThreadCaches {
    slots: [Option<Cache<SharedRules, Arc<RuleTable>>>; CACHED_LIMITERS],
}

impl ThreadCaches {
    #[inline]
    fn current(&mut self, rules: &SharedRules) -> &RuleTable {
        let is_for = |slot: &Option<Cache<SharedRules, _>>| {
            slot.as_ref()
                .is_some_and(|cache| std::ptr::eq(cache.arc_swap(), &**rules))
        };
        if !is_for(&self.slots[0]) {
            self.bring_to_front(rules, is_for);
        }
        self.slots[0]
            .get_or_insert_with(|| Cache::new(Arc::clone(rules)))
            .load()
    }

    /// Moves the slot of `rules` to the front, or makes a new one there (dropping the least
    /// recently used).
    #[cold]
    fn bring_to_front(
        &mut self,
        rules: &SharedRules,
        is_for: impl Fn(&Option<Cache<SharedRules, Arc<RuleTable>>>) -> bool,
    ) {
        match self.slots.iter().position(is_for) {
            Some(at) => self.slots[..=at].rotate_right(1),
            None => {
                self.slots.rotate_right(1);
                self.slots[0] = Some(Cache::new(Arc::clone(rules)));
            }
        }
    }
}

/// Runs `f` on the current rule table of `rules`, from this thread's cache when it can (not
/// when re-entered from inside `f`, e.g. by a violation callback). `None` if the thread is
/// exiting and its cache is gone.
#[inline(always)]
pub(super) fn with_current<R>(rules: &SharedRules, f: impl FnOnce(&RuleTable) -> R) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let (mut cached, loaded);
            let table = match caches.try_borrow_mut() {
                Ok(caches) => {
                    cached = caches;
                    cached.current(rules)
                }
                Err(_) => {
                    loaded = rules.load();
                    &**loaded
                }
            };
            f(table)
        })
        .ok()
}
