//! An actix-web server limited by `examples/ratethrottle.yaml`: rule `api` on every route,
//! rule `login` counting failed logins on `POST /login`.
//!
//! ```text
//! cargo run -p ratethrottle-http --example actix           # listens on 127.0.0.1:3001
//! curl -i localhost:3001/
//! curl -i -X POST -H 'x-password: wrong' localhost:3001/login
//! ```
//! `RT_CONFIG` names another config file, `PORT` another port.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use ratethrottle_config::{Config, ConfigWatcher, Environment};
use ratethrottle_http::actix::RateLimit;

#[actix_web::main]
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
    let api = RateLimit::builder(limiter.clone())
        .rule("api")
        .follow(&watcher)
        .middleware()?;
    let failed_logins = RateLimit::builder(limiter.clone())
        .rule("login")
        .follow(&watcher)
        .deduct_when(|status| status >= 400)
        .middleware()?;
    watcher.detach();
    let port = std::env::var("PORT").unwrap_or_else(|_| "3001".to_owned());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(api.clone())
            .route("/", web::get().to(|| async { "hello\n" }))
            .service(
                web::resource("/login")
                    .wrap(failed_logins.clone())
                    .route(web::post().to(login)),
            )
    })
    .bind(format!("127.0.0.1:{port}"))?;
    tracing::info!("listening on http://{:?} (config {path})", server.addrs());
    server.run().await?;
    Ok(())
}

async fn login(request: HttpRequest) -> HttpResponse {
    match request.headers().get("x-password").map(|v| v.as_bytes()) {
        Some(b"open sesame") => HttpResponse::Ok().body("welcome\n"),
        _ => HttpResponse::Unauthorized().body("wrong password\n"),
    }
}
