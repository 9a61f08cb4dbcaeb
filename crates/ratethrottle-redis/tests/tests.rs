//! Integration tests of the Redis store, against `redis-server` processes the tests start.

mod batching;
mod conformance;
mod differential;
mod errors;
mod failures;
mod fleet;
mod key_values;
mod outage;
mod sentinel;
mod server;
mod telemetry;

/// A multi-threaded runtime with timers, for tests that drive the store themselves.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
