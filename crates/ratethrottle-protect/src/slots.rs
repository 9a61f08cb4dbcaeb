//! Per-client concurrency: at most `max` things (calls, connections) held at once by each
//! client, each released by dropping its [`SlotPermit`], however its holder ends (returned,
//! failed, panicked, dropped).
//!
//! ```
//! use ratethrottle_protect::slots::Slots;
//!
//! let slots = Slots::new(2);
//! let first = slots.acquire("10.0.0.1").unwrap();
//! let _second = slots.acquire("10.0.0.1").unwrap();
//! assert!(slots.acquire("10.0.0.1").is_none()); // full: refused at once, never queued
//! assert!(slots.acquire("10.0.0.2").is_some()); // another client's slots
//! drop(first);
//! assert_eq!(slots.held("10.0.0.1"), 1);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// The slots held per client. Cheap to clone (shared).
#[derive(Clone)]
pub struct Slots {
    shared: Arc<Shared>,
}

struct Shared {
    max: u32,
    held: Mutex<HashMap<Arc<str>, u32>>,
}

impl Slots {
    /// At most `max` slots per client (0 refuses everything).
    pub fn new(max: u32) -> Self {
        Slots {
            shared: Arc::new(Shared {
                max,
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The most slots one client may hold.
    pub fn max(&self) -> u32 {
        self.shared.max
    }

    /// A slot for `client`, or `None` when it holds `max` already.
    pub fn acquire(&self, client: &str) -> Option<SlotPermit> {
        self.take(client, false)
    }

    /// A slot for `client` even when it holds `max` already (counted all the same, so the
    /// client's next `acquire` is refused until it is under `max` again).
    pub fn acquire_over(&self, client: &str) -> SlotPermit {
        // `take` only refuses when not forced.
        self.take(client, true).unwrap_or_else(|| unreachable!())
    }

    fn take(&self, client: &str, force: bool) -> Option<SlotPermit> {
        let mut held = self.shared.held.lock();
        let client: Arc<str> = match held.get_key_value(client) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(client),
        };
        let count = held.entry(Arc::clone(&client)).or_insert(0);
        if *count >= self.shared.max && !force {
            if *count == 0 {
                held.remove(&*client);
            }
            return None;
        }
        *count += 1;
        Some(SlotPermit {
            shared: Arc::clone(&self.shared),
            client,
        })
    }

    /// The slots `client` holds.
    pub fn held(&self, client: &str) -> u32 {
        self.shared.held.lock().get(client).copied().unwrap_or(0)
    }

    /// The slots all clients hold.
    pub fn total(&self) -> u64 {
        self.shared
            .held
            .lock()
            .values()
            .map(|&n| u64::from(n))
            .sum()
    }

    /// The clients holding at least one slot.
    pub fn clients(&self) -> usize {
        self.shared.held.lock().len()
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slots")
            .field("max", &self.shared.max)
            .field("clients", &self.clients())
            .finish()
    }
}

/// One held slot, given back when dropped.
pub struct SlotPermit {
    shared: Arc<Shared>,
    client: Arc<str>,
}

impl SlotPermit {
    /// The client holding it.
    pub fn client(&self) -> &str {
        &self.client
    }
}

impl fmt::Debug for SlotPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotPermit")
            .field("client", &self.client)
            .finish()
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let mut held = self.shared.held.lock();
        if let Some(count) = held.get_mut(&*self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&*self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_slots_count_and_every_permit_gives_its_slot_back() {
        let slots = Slots::new(1);
        let first = slots.acquire("a").unwrap();
        let over = slots.acquire_over("a");
        assert_eq!(slots.held("a"), 2);
        drop(first);
        assert!(
            slots.acquire("a").is_none(),
            "still at max with the forced one"
        );
        drop(over);
        assert_eq!((slots.held("a"), slots.clients(), slots.total()), (0, 0, 0));
        assert!(Slots::new(0).acquire("a").is_none());
        assert_eq!(
            Slots::new(0).clients(),
            0,
            "a refusal leaves no entry behind"
        );
    }

    #[test]
    fn threads_never_hold_more_than_max() {
        let slots = Slots::new(3);
        let most = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..2000 {
                        if let Some(permit) = slots.acquire("c") {
                            most.fetch_max(slots.held("c"), std::sync::atomic::Ordering::Relaxed);
                            drop(permit);
                        }
                    }
                });
            }
        });
        assert!(most.into_inner() <= 3);
        assert_eq!(slots.total(), 0);
    }
}
