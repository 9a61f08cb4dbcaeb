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
