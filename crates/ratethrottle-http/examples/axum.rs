//! An axum server limited by `examples/ratethrottle.yaml`: rule `api` on every route, rule
//! `login` counting failed logins on `POST /login`.
//!
//! ```text
//! cargo run -p ratethrottle-http --example axum            # listens on 127.0.0.1:3000
//! curl -i localhost:3000/
//! curl -i -X POST -H 'x-password: wrong' localhost:3000/login
//! ```
//! `RT_CONFIG` names another config file, `PORT` another port.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, request::Parts};
use axum::routing::{get, post};
use ratethrottle_config::{Config, ConfigWatcher, Environment};
use ratethrottle_http::RateLimitLayer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let path = std::env::var("RT_CONFIG").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ratethrottle.yaml").to_owned()
    });
    let config = Config::load(&path)?;
    let limiter = config.build_limiter().await?;

    // Rule edits in the file apply while the server runs, and so do `global.enabled` and
    // `global.headers_enabled` (`follow`). Dropping the watcher would stop reloading.
    let watcher =
        ConfigWatcher::spawn(&path, config, limiter.clone(), Environment::from_process())?;
    let api = RateLimitLayer::builder(limiter.clone())
        .rule("api")
        .follow(&watcher)
        .layer()?;
    let failed_logins = RateLimitLayer::builder(limiter.clone())
        .rule("login")
        .follow(&watcher)
        .deduct_when(|status| status >= 400)
        .layer()?;
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/login", post(login).route_layer(failed_logins))
        .layer(api);
    watcher.detach();
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!(
        "listening on http://{} (config {path})",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

async fn login(request: Parts) -> (StatusCode, &'static str) {
    match request.headers.get("x-password").map(|v| v.as_bytes()) {
        Some(b"open sesame") => (StatusCode::OK, "welcome\n"),
        _ => (StatusCode::UNAUTHORIZED, "wrong password\n"),
    }
}
