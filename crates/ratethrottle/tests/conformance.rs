//! The store conformance suite against `MemoryStore`, unbounded and bounded.

mod memory {
    use ratethrottle::store::MemoryStore;

    ratethrottle::conformance_suite!(|| async { MemoryStore::new() });
}

mod memory_bounded {
    use ratethrottle::store::{MemoryStore, MemoryStoreConfig};

    ratethrottle::conformance_suite!(|| async {
        MemoryStore::with_config(MemoryStoreConfig::default().max_keys(10_000))
    });
}

/// A key-value backend as simple as a user's: a map with expiry times, behind one lock.
mod backed {
    use std::collections::HashMap;
    use std::time::Duration;

    use parking_lot::Mutex;
    use ratethrottle::clock::Nanos;
    use ratethrottle::store::{BackedStore, KeyValueNow, StoreError, Value};

    #[derive(Default)]
    pub(crate) struct DictKv(Mutex<HashMap<String, (Value, Option<u64>)>>);

    impl KeyValueNow for DictKv {
        fn get_now(&self, key: &str, now: Nanos) -> Result<Option<Value>, StoreError> {
            let map = self.0.lock();
            Ok(map
                .get(key)
                .filter(|(_, expiry)| expiry.is_none_or(|at| at > now.as_nanos()))
                .map(|(value, _)| value.clone()))
        }

        fn set_now(
            &self,
            key: &str,
            value: Value,
            ttl: Option<Duration>,
            now: Nanos,
        ) -> Result<(), StoreError> {
            let expiry = ttl.map(|ttl| now.as_nanos() + ttl.as_nanos() as u64);
            self.0.lock().insert(key.to_owned(), (value, expiry));
            Ok(())
        }

        fn delete_now(&self, key: &str) -> Result<bool, StoreError> {
            Ok(self.0.lock().remove(key).is_some())
        }
    }

    ratethrottle::conformance_suite!(|| async { BackedStore::new(DictKv::default()) });

    /// Checks of one key from 8 threads admit exactly the limit: the store serializes them.
    #[test]
    fn threads_through_one_backend_admit_exactly_the_limit() {
        use ratethrottle::{Limiter, Rule, Strategy};
        for strategy in Strategy::ALL {
            let limiter = Limiter::builder()
                .store(BackedStore::new(DictKv::default()))
                .build();
            limiter
                .add_rule(Rule::new("api", 100, Duration::from_secs(3600)).strategy(strategy))
                .unwrap();
            let admitted = std::sync::atomic::AtomicU64::new(0);
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        for _ in 0..50 {
                            let status = crate::ready_now(limiter.check("k", "api")).unwrap();
                            if status.allowed {
                                admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            assert_eq!(admitted.into_inner(), 100, "{strategy}");
        }
    }
}
