//! The core's store conformance suite against a real Redis server.

mod standalone {
    ratethrottle::conformance_suite!(optional crate::server::caller_clock_store);
}

mod cluster {
    ratethrottle::conformance_suite!(optional crate::server::cluster_store);
}

mod tls {
    ratethrottle::conformance_suite!(optional crate::server::tls_store);
}

mod sentinel {
    ratethrottle::conformance_suite!(optional crate::server::sentinel_store);
}
