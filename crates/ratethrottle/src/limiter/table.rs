//! The limiter's rules by name: a small immutable hash table, replaced whole on every change.

use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hashbrown::HashTable;

use super::RuleEntry;

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
            return self.names.iter().position(|known| *known == name);
        }
        let names = &self.names;
        self.index
            .find(self.hasher.hash_one(name), |&at| names[at] == name)
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

    /// Removes and returns the rule named `name` (the others keep their order).
    pub(super) fn remove(&mut self, name: &str) -> Option<Arc<RuleEntry>> {
        let at = self.position(name)?;
        self.names.remove(at);
        let removed = self.entries.remove(at);
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
