//! Integration tests of the Redis store, against `redis-server` processes the tests start.

mod conformance;
mod differential;
mod errors;
mod fleet;
mod outage;
mod sentinel;
mod server;
