//! Integration tests of ratethrottle-config.

mod build;
mod fuzz;
mod parse;
mod readme;
mod reload;
#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;
