//! Connection errors say what failed, and never print a password.

use std::time::Duration;

use ratethrottle_redis::{RedisConfig, RedisStore};

use crate::{runtime, server};

#[test]
fn an_unreachable_server_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}")).require_connection(true);
    let error = runtime()
        .block_on(RedisStore::with_config(config))
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("redis at 127.0.0.1:{port} unreachable")),
        "{error}"
    );
}

#[test]
fn a_bad_url_is_an_error_without_its_password() {
    let error = runtime()
        .block_on(RedisStore::connect("redis://user:hunter2@host:notaport"))
        .unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("invalid redis url"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn tls_refuses_a_server_signed_by_an_untrusted_authority() {
    let Some(port) = server::tls_port() else {
        return;
    };
    let config = RedisConfig::new(format!("rediss://localhost:{port}"))
        .timeout(Duration::from_secs(2))
        .require_connection(true);
    let error = runtime()
        .block_on(RedisStore::with_config(config))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("redis at localhost:{port}")),
        "{error}"
    );
    assert!(error.to_string().contains("TLS"), "{error}");
}

#[test]
fn a_flushed_script_cache_is_reloaded_on_the_next_check() {
    let Some(server) = server::RedisServer::shared() else {
        return;
    };
    runtime().block_on(async {
        let config =
            RedisConfig::new(server.url()).key_prefix(format!("noscript-{}:", std::process::id()));
        let limiter = ratethrottle::Limiter::builder()
            .store(RedisStore::with_config(config).await.unwrap())
            .build();
        limiter
            .add_rule(ratethrottle::Rule::new("api", 2, Duration::from_secs(60)))
            .unwrap();
        assert_eq!(limiter.check("a", "api").await.unwrap().remaining, 1);
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(limiter.check("a", "api").await.unwrap().remaining, 0);
        assert!(!limiter.check("a", "api").await.unwrap().allowed);
    });
}

#[test]
fn unix_sockets_work() {
    if server::RedisServer::shared().is_none() {
        return;
    }
    let server = server::RedisServer::with_unix_socket();
    runtime().block_on(async {
        let url = format!("redis+unix://{}", server.socket());
        let limiter = ratethrottle::Limiter::builder()
            .store(RedisStore::connect(&url).await.unwrap())
            .build();
        limiter
            .add_rule(ratethrottle::Rule::new("api", 1, Duration::from_secs(60)))
            .unwrap();
        assert!(limiter.check("a", "api").await.unwrap().allowed);
        assert!(!limiter.check("a", "api").await.unwrap().allowed);
    });
}

/// The calls the server has served, by command (from `INFO commandstats`).
pub(crate) async fn command_counts(url: &str) -> std::collections::HashMap<String, u64> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

#[test]
fn every_check_is_one_round_trip() {
    let Some(server) = server::RedisServer::shared() else {
        return;
    };
    let server = server::RedisServer::dedicated()
        .unwrap_or_else(|| unreachable!("redis-server ran for {}", server.url()));
    runtime().block_on(async {
        let limiter = ratethrottle::Limiter::builder()
            .store(RedisStore::connect(&server.url()).await.unwrap())
            .build();
        for strategy in ratethrottle::Strategy::ALL {
            limiter
                .add_rule(
                    ratethrottle::Rule::new(strategy.as_str(), 5, Duration::from_secs(60))
                        .strategy(strategy),
                )
                .unwrap();
        }
        // Load the scripts once (fast.lua and the general one), then count.
        for strategy in ratethrottle::Strategy::ALL {
            limiter.check("warm-up", strategy.as_str()).await.unwrap();
        }
        let before = command_counts(&server.url()).await;
        let mut checks = 0;
        for strategy in ratethrottle::Strategy::ALL {
            for i in 0..10 {
                let id = format!("id-{i}");
                limiter.check(&id, strategy.as_str()).await.unwrap();
                limiter.peek(&id, strategy.as_str()).await.unwrap();
                checks += 2;
            }
        }
        let after = command_counts(&server.url()).await;
        let calls = |name: &str| {
            after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
        };
        // `commandstats` also counts the commands the script runs inside the server; what the
        // client sent is one EVALSHA per check and nothing else (no reload, no second call).
        assert_eq!(calls("evalsha"), checks, "{after:?}");
        for other in ["eval", "script|load", "multi", "watch", "exec", "ping"] {
            assert_eq!(calls(other), 0, "{other}: {before:?} -> {after:?}");
        }
    });
}
