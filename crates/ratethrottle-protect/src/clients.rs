//! A bounded, sharded map of clients by identifier, which forgets the least recently seen
//! when full: what DDoS detection and the adaptive limiter keep per client. Identifiers are
//! kept as the limiter stores them ([`normalize_identifier`]): at most 256 bytes each.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use ratethrottle::identifier::normalize_identifier;

const SHARDS: usize = 64;
/// How many clients a full shard looks at to pick the one to forget.
const EVICTION_SAMPLE: usize = 8;

/// What a client's state says about when it was last seen (nanoseconds).
pub(crate) trait LastSeen {
    fn last_seen(&self) -> u64;
}

/// One client: the identifier (held inline up to 15 bytes, an IPv4 address: no pointer to
/// follow on a lookup), its hash (seeded: clients cannot aim at one bucket), and its state.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entry<V> {
    pub(crate) id: ecow::EcoString,
    hash: u64,
    pub(crate) value: V,
}

/// One shard: its clients and the shard's own data `C` (counts added under its lock).
#[derive(Debug)]
pub(crate) struct Shard<V, C> {
    table: HashTable<Entry<V>>,
    pub(crate) data: C,
}

impl<V, C: Default> Default for Shard<V, C> {
    fn default() -> Self {
        Shard {
            table: HashTable::new(),
            data: C::default(),
        }
    }
}

impl<V, C> Shard<V, C> {
    /// The clients of this shard.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry<V>> {
        self.table.iter()
    }
}

/// At most `max` clients (passed by at most one per shard), in 64 shards each behind its own
/// lock, so clients in different shards are served in parallel.
#[derive(Debug)]
pub(crate) struct Clients<V, C = ()> {
    shards: Box<[Mutex<Shard<V, C>>]>,
    max: usize,
    per_shard: usize,
    len: AtomicUsize,
    hasher: foldhash::fast::RandomState,
}

/// A locked shard, and the identifier that led to it (as kept) with its hash.
pub(crate) struct Locked<'a, V, C> {
    id: Cow<'a, str>,
    hash: u64,
    shard: MutexGuard<'a, Shard<V, C>>,
}

impl<V: LastSeen, C: Default> Clients<V, C> {
    /// An empty map for at most `max` clients.
    pub(crate) fn new(max: usize) -> Self {
        Clients {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max,
            per_shard: max.div_ceil(SHARDS),
            len: AtomicUsize::new(0),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The shard of `identifier`, locked.
    pub(crate) fn lock<'a>(&'a self, identifier: &'a str) -> Locked<'a, V, C> {
        let id = normalize_identifier(identifier);
        let hash = self.hasher.hash_one(&*id);
        let shard = self.shards[(hash >> 58) as usize % SHARDS].lock();
        Locked { id, hash, shard }
    }

    /// A seeded hash of `bytes` (the same seed as the identifiers').
    pub(crate) fn hash(&self, bytes: &str) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// The state of the locked identifier, made with `fresh` (after making room) when it is
    /// not followed yet; the shard's data; and whether it was followed. One lookup for a known
    /// client.
    pub(crate) fn get_or_insert<'a>(
        &self,
        locked: &'a mut Locked<'_, V, C>,
        fresh: impl FnOnce() -> V,
    ) -> (&'a mut V, &'a mut C, bool) {
        let (hash, identifier) = (locked.hash, &*locked.id);
        let Shard { table, data } = &mut *locked.shard;
        let (value, known) = match table.find_entry(hash, |e| e.id == identifier) {
            Ok(entry) => (&mut entry.into_mut().value, true),
            Err(absent) => {
                let table = absent.into_table();
                self.make_room(table);
                let entry = Entry {
                    id: identifier.into(),
                    hash,
                    value: fresh(),
                };
                self.len.fetch_add(1, Ordering::Relaxed);
                let entry = table.insert_unique(hash, entry, |e| e.hash).into_mut();
                (&mut entry.value, false)
            }
        };
        (value, data, known)
    }

    /// The state of the locked identifier, if followed.
    pub(crate) fn get_mut<'a>(locked: &'a mut Locked<'_, V, C>) -> Option<&'a mut V> {
        let (hash, identifier) = (locked.hash, &*locked.id);
        locked
            .shard
            .table
            .find_mut(hash, |e| e.id == identifier)
            .map(|e| &mut e.value)
    }

    /// Inserts or replaces the state of `identifier` (making room for a new one).
    pub(crate) fn insert(&self, identifier: &str, value: V) {
        let mut locked = self.lock(identifier);
        let mut value = Some(value);
        let (slot, _, _) = self.get_or_insert(&mut locked, || {
            value
                .take()
                .expect("called once, with the value still there")
        });
        if let Some(value) = value {
            *slot = value;
        }
    }

    /// Forgets `identifier`; `true` if it was followed.
    pub(crate) fn remove(&self, identifier: &str) -> bool {
        let mut locked = self.lock(identifier);
        let (hash, identifier) = (locked.hash, &*locked.id);
        let removed = locked
            .shard
            .table
            .find_entry(hash, |e| e.id == identifier)
            .map(|entry| drop(entry.remove()))
            .is_ok();
        drop(locked);
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Forgets every client.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            self.len.fetch_sub(shard.table.len(), Ordering::Relaxed);
            shard.table.clear();
        }
    }

    /// How many clients are followed.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Runs `f` on every shard in turn, locked.
    pub(crate) fn each_shard(&self, mut f: impl FnMut(&mut Shard<V, C>)) {
        for shard in self.shards.iter() {
            f(&mut shard.lock());
        }
    }

    /// Before a new client comes in while `max` are followed: forget the least recently seen of
    /// a few in its shard (a shard far over its share gives one up too). The bound may be
    /// passed by one client per shard that has none to give up.
    fn make_room(&self, shard: &mut HashTable<Entry<V>>) {
        let full = self.len.load(Ordering::Relaxed) >= self.max;
        if !full && shard.len() < 2 * self.per_shard {
            return;
        }
        let oldest = shard
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|e| e.value.last_seen())
            .map(|e| (e.hash, e.value.last_seen()));
        let Some((hash, last_seen)) = oldest else {
            return;
        };
        if let Ok(entry) = shard.find_entry(hash, |e| e.value.last_seen() == last_seen) {
            entry.remove();
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
