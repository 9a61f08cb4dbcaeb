//! End-to-end tests of the `ratethrottle` binary.

mod cli;
mod fleet;
#[cfg(unix)]
mod serve;
#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;
