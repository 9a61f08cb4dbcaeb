//! `ratethrottle serve`: the configured limiter as an HTTP service, until SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::anyhow;
use ratethrottle_config::Config;
use ratethrottle_redis::telemetry::read_fleet;
use ratethrottle_server::dashboard::Source;
use ratethrottle_server::{RlsConfig, Server, ServerOptions, shutdown_signal};

use crate::{Outcome, usage};

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The HTTP API's address (port 0: a free one, printed at start).
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The Envoy rate limit service's address (runs with --rls files).
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8081")]
    grpc: SocketAddr,
    /// An envoyproxy/ratelimit configuration file (one domain each); repeatable.
    #[arg(long, value_name = "FILE")]
    rls: Vec<std::path::PathBuf>,
    /// A bearer token every /v1 call must carry (unset: the API is open).
    #[arg(
        long,
        env = "RT_SERVE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
}

pub(crate) async fn run(config: &Config, args: &ServeArgs) -> Outcome {
    // A server starts while Redis is down and answers by the fault policy meanwhile (the
    // other commands run once, and need the connection).
    let mut config = config.clone();
    config.storage.require_connection = false;
    let config = &config;
    let limiter = config.build_limiter().await.map_err(usage)?;
    let telemetry = config.start_telemetry(&limiter);
    let rules = limiter.rules().len();
    let store = config.storage.kind;
    let rls = RlsConfig::load(&args.rls).map_err(usage)?;
    let domains: Vec<String> = rls.domains().map(str::to_owned).collect();
    let options = ServerOptions {
        http: Some(args.http),
        grpc: Some(args.grpc),
        rls: Some(Arc::new(rls)),
        token: args.token.clone().filter(|t| !t.is_empty()),
    };
    let guarded = if options.token.is_some() {
        ", token required"
    } else {
        ""
    };
    let mut server = Server::bind(limiter.clone(), &options)
        .await
        .map_err(|error| usage(anyhow!("cannot listen on {}: {error}", args.http)))?;
    // DDoS protection and the adaptive limiter, as the configuration enables them.
    let mut _saver = None;
    if let Some((adaptive, saver)) = config.build_adaptive(&limiter).map_err(usage)? {
        _saver = saver;
        server = server.adaptive(adaptive);
    }
    let ddos = config.build_ddos().map_err(usage)?;
    if let Some(ddos) = &ddos {
        server = server.ddos(Arc::clone(ddos));
    }
    // On Redis with telemetry, the dashboard follows the whole fleet.
    if let (Some(_), Some(store)) = (&telemetry, limiter.store().as_redis()) {
        let store = store.clone();
        server = server.dashboard_source(Source::Fleet(Box::new(move || {
            let store = store.clone();
            Box::pin(async move { read_fleet(&store, 120).await })
        })));
    }
    // Snapshots, and alerts on them, as `monitoring` and `alerting` say.
    let _monitor = config.start_monitor(&limiter, ddos, None).map_err(usage)?;
    say(format_args!(
        "ratethrottle serve: HTTP API on http://{} ({rules} rules, {store} store{guarded}); \
         SIGTERM or Ctrl-C stops it",
        server.http_address()
    ));
    if let Some(grpc) = server.grpc_address() {
        say(format_args!(
            "ratethrottle serve: Envoy rate limit service on {grpc} (domains: {})",
            domains.join(", ")
        ));
    }
    say(format_args!(
        "ratethrottle serve: dashboard on http://{}/dashboard ({})",
        server.http_address(),
        if telemetry.is_some() {
            "the fleet, through Redis"
        } else {
            "this process"
        }
    ));
    let _ = std::io::stdout().flush();
    server.run(shutdown_signal()).await?;
    let _ = writeln!(std::io::stderr(), "ratethrottle serve: stopped");
    Ok(())
}

/// Prints a line of the server's own; a closed stdout (a supervisor that read what it
/// needed) must not stop the server, as `println!` would by panicking.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{line}");
}
