//! End-to-end tests of the `ratethrottle` binary.

mod cli;
mod fleet;
#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;
