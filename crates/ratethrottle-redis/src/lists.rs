//! The whitelist and blacklist as this process last read them from Redis.
//!
//! While the copy is fresh (read within [`RedisConfig::list_cache_ttl`](crate::RedisConfig),
//! by the limiter's clock), checks screen identifiers here and the script skips the two list
//! lookups; once it is older, checks screen in Redis again until a refresh lands. So an entry
//! added or removed by another process takes effect here within the TTL, and entries this
//! process changes take effect at once. A refresh costs one `GET` of a version counter that
//! every list change increments, and a full read only when it moved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use ratethrottle::clock::Nanos;
use ratethrottle::store::{ListEntry, ListKind, Outcome, StoreError};
use redis::AsyncCommands;

use crate::RedisStore;
use crate::keys::{parse_seconds_nanos, unexpired};

/// What the copy says about an identifier.
pub(crate) enum Screen {
    /// Listed: the outcome, without asking Redis.
    Listed(Outcome),
    /// On neither list.
    Clear,
    /// The copy is too old (or was never read): screen in Redis.
    Unknown,
}

/// Identifier → expiry (`None`: none), per list.
type Entries = [HashMap<String, Option<Nanos>>; 2];

#[derive(Default)]
struct Copy {
    /// When the version was read (the limiter's clock); `None` before the first read.
    read_at: Option<Nanos>,
    /// The version counter then (0 when it did not exist).
    version: u64,
    entries: Entries,
    /// Changes this process made, counted: a refresh that saw none of them happen installs
    /// what it read, another keeps the copy (and the change).
    changes: u64,
}

/// The process's copy of the lists.
pub(crate) struct ListCache {
    ttl: u64,
    copy: RwLock<Copy>,
    refreshing: AtomicBool,
}

impl ListCache {
    /// A cache whose copy stays fresh for `ttl` nanoseconds (0: never used for screening).
    pub(crate) fn new(ttl: u64) -> Self {
        ListCache {
            ttl,
            copy: RwLock::default(),
            refreshing: AtomicBool::new(false),
        }
    }

    fn fresh(&self, copy: &Copy, now: Nanos) -> bool {
        copy.read_at
            .is_some_and(|at| now.as_nanos() < at.as_nanos().saturating_add(self.ttl))
    }

    /// Screens `identifier` at `now`.
    pub(crate) fn screen(&self, identifier: &str, now: Nanos) -> Screen {
        let copy = self.copy.read();
        if !self.fresh(&copy, now) {
            return Screen::Unknown;
        }
        match listing(&copy.entries, identifier, now) {
            Some(outcome) => Screen::Listed(outcome),
            None => Screen::Clear,
        }
    }

    /// The identifier's listing as last known, however old: for deciding while Redis is down.
    pub(crate) fn last_known(&self, identifier: &str, now: Nanos) -> Option<Outcome> {
        listing(&self.copy.read().entries, identifier, now)
    }

    /// How many unexpired entries `list` holds, as last known.
    pub(crate) fn len(&self, list: ListKind, now: Nanos) -> u64 {
        let copy = self.copy.read();
        copy.entries[list as usize]
            .values()
            .filter(|expiry| expiry.is_none_or(|at| at > now))
            .count() as u64
    }

    /// Records a change this process made: an entry with its expiry, or (`None`) a removal.
    pub(crate) fn record(&self, list: ListKind, identifier: &str, entry: Option<Option<Nanos>>) {
        let mut copy = self.copy.write();
        copy.changes += 1;
        let entries = &mut copy.entries[list as usize];
        match entry {
            Some(expiry) => entries.insert(identifier.to_owned(), expiry),
            None => entries.remove(identifier),
        };
    }

    /// Forgets the copy (after every key under the prefix was removed): checks screen in
    /// Redis until the next refresh, and a refresh under way does not install what it read.
    pub(crate) fn forget_all(&self) {
        let mut copy = self.copy.write();
        let changes = copy.changes + 1;
        *copy = Copy {
            changes,
            ..Copy::default()
        };
    }

    /// Replaces one list after reading it in full.
    pub(crate) fn replace_list(&self, list: ListKind, listed: &[ListEntry]) {
        self.copy.write().entries[list as usize] = entries_of(listed);
    }

    /// Takes a version read at `read_at`: `true` when it is the copy's own (the copy is fresh
    /// again), `false` when the lists changed and must be read.
    pub(crate) fn confirm(&self, read_at: Nanos, version: u64) -> bool {
        let mut copy = self.copy.write();
        let same = copy.read_at.is_some() && copy.version == version;
        if same {
            copy.read_at = Some(read_at);
        }
        same
    }

    /// Changes made here so far (see [`ListCache::install`]).
    pub(crate) fn changes(&self) -> u64 {
        self.copy.read().changes
    }

    /// Installs both lists as read after reading `version` at `read_at`, unless this process
    /// changed a list since `changes` was taken (the read may have missed it).
    pub(crate) fn install(
        &self,
        read_at: Nanos,
        version: u64,
        lists: [Vec<ListEntry>; 2],
        changes: u64,
    ) {
        let mut copy = self.copy.write();
        if copy.changes != changes {
            return;
        }
        for (list, listed) in lists.iter().enumerate() {
            copy.entries[list] = entries_of(listed);
        }
        copy.read_at = Some(read_at);
        copy.version = version;
    }

    /// Whether the copy should be refreshed at `now`, and no refresh is under way: the caller
    /// then refreshes and calls [`ListCache::refreshed`].
    pub(crate) fn start_refresh(&self, now: Nanos) -> bool {
        self.ttl > 0
            && !self.fresh(&self.copy.read(), now)
            && !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Ends a refresh begun with [`ListCache::start_refresh`].
    pub(crate) fn refreshed(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

fn entries_of(listed: &[ListEntry]) -> HashMap<String, Option<Nanos>> {
    listed
        .iter()
        .map(|entry| (entry.identifier.clone(), entry.expires_at))
        .collect()
}

fn listing(entries: &Entries, identifier: &str, now: Nanos) -> Option<Outcome> {
    let unexpired = |list: ListKind| {
        entries[list as usize]
            .get(identifier)
            .copied()
            .filter(|expiry| expiry.is_none_or(|at| at > now))
    };
    if unexpired(ListKind::Whitelist).is_some() {
        return Some(Outcome::Whitelisted);
    }
    unexpired(ListKind::Blacklist).map(|until| Outcome::Blacklisted { until })
}

/// Reading and changing the lists in Redis.
impl RedisStore {
    /// Starts a refresh of the process's copy of the lists when it is due.
    pub(crate) fn refresh_lists_soon(&self, now: Nanos) {
        let lists = &self.shared.lists;
        if !lists.start_refresh(now) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            lists.refreshed();
            return;
        };
        let store = self.clone();
        runtime.spawn(async move {
            if let Err(error) = store.refresh_lists(now).await {
                tracing::debug!("list refresh failed (checks screen in redis meanwhile): {error}");
            }
            store.shared.lists.refreshed();
        });
    }

    async fn refresh_lists(&self, now: Nanos) -> Result<(), StoreError> {
        let lists = &self.shared.lists;
        let changes = lists.changes();
        let mut connection = self.connection.clone();
        let version: Option<u64> = self.run(connection.get(self.list_version_key())).await?;
        let version = version.unwrap_or(0);
        if lists.confirm(now, version) {
            return Ok(());
        }
        let white = self.read_list(ListKind::Whitelist, now).await?;
        let black = self.read_list(ListKind::Blacklist, now).await?;
        lists.install(now, version, [white, black], changes);
        Ok(())
    }

    /// Every unexpired entry of `list`, read from Redis; expired ones are deleted.
    pub(crate) async fn read_list(
        &self,
        list: ListKind,
        now: Nanos,
    ) -> Result<Vec<ListEntry>, StoreError> {
        let mut connection = self.connection.clone();
        let mut identifiers: Vec<String> =
            self.run(connection.smembers(self.index_key(list))).await?;
        identifiers.sort();
        if identifiers.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline on a single server; key by key on a cluster, where the entries live in
        // different slots.
        let expiries: Vec<Option<String>> = if self.connection.is_cluster() {
            let mut expiries = Vec::with_capacity(identifiers.len());
            for identifier in &identifiers {
                let key = self.list_key(list, identifier);
                expiries.push(self.run(connection.get(key)).await?);
            }
            expiries
        } else {
            let mut pipe = redis::pipe();
            for identifier in &identifiers {
                pipe.get(self.list_key(list, identifier));
            }
            self.run(pipe.query_async(&mut connection)).await?
        };
        let mut entries = Vec::new();
        for (identifier, expiry) in identifiers.into_iter().zip(expiries) {
            match expiry {
                Some(expiry) if unexpired(&expiry, now) => {
                    entries.push(ListEntry::new(identifier, parse_seconds_nanos(&expiry)));
                }
                _ => {
                    let key = self.list_key(list, &identifier);
                    self.run(connection.del::<_, ()>(key)).await?;
                    let index = self.index_key(list);
                    self.run(connection.srem::<_, _, ()>(index, &identifier))
                        .await?;
                }
            }
        }
        Ok(entries)
    }

    /// After this process changed `list`: other processes' copies learn of it through the
    /// version, this one's at once.
    pub(crate) async fn lists_changed(
        &self,
        list: ListKind,
        identifier: &str,
        entry: Option<Option<Nanos>>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run(connection.incr::<_, _, ()>(self.list_version_key(), 1))
            .await?;
        self.shared.lists.record(list, identifier, entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_copy_screens_only_while_fresh() {
        let cache = ListCache::new(SECOND);
        let at = |seconds| Nanos::from_nanos(seconds * SECOND);
        assert!(matches!(cache.screen("a", at(1)), Screen::Unknown));
        let listed = vec![ListEntry::new("a", Some(at(5)))];
        cache.install(at(1), 7, [Vec::new(), listed], cache.changes());
        assert!(matches!(
            cache.screen("a", at(1)),
            Screen::Listed(Outcome::Blacklisted { .. })
        ));
        assert!(matches!(cache.screen("b", at(1)), Screen::Clear));
        // Older than the TTL: Redis decides again until the version is confirmed.
        assert!(matches!(cache.screen("a", at(2)), Screen::Unknown));
        assert!(cache.confirm(at(2), 7));
        assert!(matches!(cache.screen("b", at(2)), Screen::Clear));
        assert!(!cache.confirm(at(3), 8), "a moved version means a read");
        assert!(matches!(cache.screen("b", at(3)), Screen::Unknown));
    }

    #[test]
    fn changes_made_here_count_at_once_and_entries_expire() {
        let cache = ListCache::new(SECOND);
        let at = |seconds| Nanos::from_nanos(seconds * SECOND);
        let changes = cache.changes();
        cache.record(ListKind::Whitelist, "early", Some(None));
        cache.install(at(1), 1, [Vec::new(), Vec::new()], changes);
        assert!(
            matches!(cache.screen("early", at(1)), Screen::Unknown),
            "a read that may have missed a change here is not installed"
        );
        cache.install(at(1), 1, [Vec::new(), Vec::new()], cache.changes());
        cache.record(ListKind::Whitelist, "vip", Some(None));
        cache.record(ListKind::Blacklist, "bad", Some(Some(at(2))));
        assert!(matches!(
            cache.screen("vip", at(1)),
            Screen::Listed(Outcome::Whitelisted)
        ));
        assert_eq!(cache.len(ListKind::Blacklist, at(1)), 1);
        assert_eq!(cache.len(ListKind::Blacklist, at(2)), 0, "expired");
        cache.record(ListKind::Whitelist, "vip", None);
        assert!(matches!(cache.screen("vip", at(1)), Screen::Clear));
        assert!(cache.last_known("bad", at(3)).is_none());
    }

    #[test]
    fn one_refresh_at_a_time_and_none_without_a_ttl() {
        let cache = ListCache::new(SECOND);
        assert!(cache.start_refresh(Nanos::ZERO));
        assert!(!cache.start_refresh(Nanos::ZERO), "already under way");
        cache.refreshed();
        assert!(cache.start_refresh(Nanos::ZERO));
        assert!(!ListCache::new(0).start_refresh(Nanos::ZERO));
    }
}
