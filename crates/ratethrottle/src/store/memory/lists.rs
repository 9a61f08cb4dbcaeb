//! The memory store's whitelist and blacklist.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::clock::Nanos;
use crate::store::{ListEntry, ListKind, Outcome};

/// Slots in the lists' membership filter (a power of two).
const FILTER_SLOTS: usize = 1 << 15;

type ListShard = Mutex<HashMap<Box<str>, Option<Nanos>>>;

/// The whitelist and blacklist: identifier → optional expiry, sharded.
///
/// A counting filter in front of both maps (per hash slot, how many listed identifiers fall
/// there) answers "not listed" for most identifiers with one atomic load, so a check takes a
/// lock only when its identifier shares a slot with a listed one.
#[derive(Debug)]
pub(super) struct Lists {
    filter: Box<[AtomicU32]>,
    whitelist: [ListShard; 16],
    blacklist: [ListShard; 16],
}

impl Default for Lists {
    fn default() -> Self {
        Lists {
            filter: (0..FILTER_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            whitelist: Default::default(),
            blacklist: Default::default(),
        }
    }
}

impl Lists {
    /// Whether the membership filter counts no identifier (every entry removed).
    #[cfg(test)]
    pub(super) fn filter_is_clear(&self) -> bool {
        self.filter.iter().all(|c| c.load(Ordering::Relaxed) == 0)
    }

    pub(super) fn slot(&self, hash: u64) -> &AtomicU32 {
        &self.filter[(hash as usize) & (FILTER_SLOTS - 1)]
    }

    pub(super) fn shards(&self, list: ListKind) -> &[ListShard; 16] {
        match list {
            ListKind::Whitelist => &self.whitelist,
            ListKind::Blacklist => &self.blacklist,
        }
    }

    pub(super) fn shard(&self, list: ListKind, hash: u64) -> &ListShard {
        &self.shards(list)[(hash >> 60) as usize]
    }

    /// Whether `id` (with hash `hash`) is on `list` at `now`.
    pub(super) fn contains(&self, list: ListKind, id: &str, hash: u64, now: Nanos) -> bool {
        self.slot(hash).load(Ordering::Acquire) > 0 && self.get(list, id, hash, now).is_some()
    }

    /// What the lists say about `id` (with hash `hash`) at `now`, if anything.
    #[inline]
    pub(super) fn screen(&self, id: &str, hash: u64, now: Nanos) -> Option<Outcome> {
        if self.slot(hash).load(Ordering::Acquire) == 0 {
            return None;
        }
        self.screen_listed(id, hash, now)
    }

    /// [`Lists::screen`] for an identifier the filter may hold.
    #[cold]
    #[inline(never)]
    fn screen_listed(&self, id: &str, hash: u64, now: Nanos) -> Option<Outcome> {
        if self.get(ListKind::Whitelist, id, hash, now).is_some() {
            return Some(Outcome::Whitelisted);
        }
        let until = self.get(ListKind::Blacklist, id, hash, now)?;
        Some(Outcome::Blacklisted { until })
    }

    /// The entry's expiry if `id` is on `list` at `now`; drops it if it has expired.
    pub(super) fn get(
        &self,
        list: ListKind,
        id: &str,
        hash: u64,
        now: Nanos,
    ) -> Option<Option<Nanos>> {
        let mut shard = self.shard(list, hash).lock();
        let expires = *shard.get(id)?;
        if expires.is_some_and(|at| at <= now) {
            shard.remove(id);
            self.slot(hash).fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(expires)
    }

    /// Empties both lists; how many entries they held.
    pub(super) fn clear(&self, hash: impl Fn(&str) -> u64) -> u64 {
        let mut removed = 0;
        for list in [ListKind::Whitelist, ListKind::Blacklist] {
            for shard in self.shards(list) {
                let mut shard = shard.lock();
                for id in shard.keys() {
                    self.slot(hash(id)).fetch_sub(1, Ordering::AcqRel);
                }
                removed += shard.len() as u64;
                shard.clear();
            }
        }
        removed
    }

    pub(super) fn insert(&self, list: ListKind, id: &str, hash: u64, expires: Option<Nanos>) {
        let mut shard = self.shard(list, hash).lock();
        if shard.insert(id.into(), expires).is_none() {
            self.slot(hash).fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(super) fn remove(&self, list: ListKind, id: &str, hash: u64) -> bool {
        let removed = self.shard(list, hash).lock().remove(id).is_some();
        if removed {
            self.slot(hash).fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// Drops expired entries of `list` and returns the rest, sorted.
    pub(super) fn entries(
        &self,
        list: ListKind,
        now: Nanos,
        hash: impl Fn(&str) -> u64,
    ) -> Vec<ListEntry> {
        let mut entries = Vec::new();
        for shard in self.shards(list) {
            let mut shard = shard.lock();
            shard.retain(|id, expires| {
                let keep = expires.is_none_or(|at| at > now);
                if !keep {
                    self.slot(hash(id)).fetch_sub(1, Ordering::AcqRel);
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

    pub(super) fn count(&self, list: ListKind, now: Nanos) -> u64 {
        self.shards(list)
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .values()
                    .filter(|expires| expires.is_none_or(|at| at > now))
                    .count() as u64
            })
            .sum()
    }
}
