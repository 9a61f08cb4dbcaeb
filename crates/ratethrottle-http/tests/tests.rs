//! The middleware over real HTTP: servers on loopback ports, requests with reqwest.

mod actix_middleware;
mod axum_layer;
mod fuzz;
mod redis_shared;
#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;
mod support;
