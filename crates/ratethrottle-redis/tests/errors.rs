//! Connection errors say what failed, and never print a password.

use std::time::Duration;

use ratethrottle_redis::{RedisConfig, RedisStore};

use crate::server;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_unreachable_server_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = runtime()
        .block_on(RedisStore::connect(&format!("redis://127.0.0.1:{port}")))
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
    let config =
        RedisConfig::new(format!("rediss://localhost:{port}")).timeout(Duration::from_secs(2));
    let error = runtime()
        .block_on(RedisStore::with_config(config))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("redis at localhost:{port}")),
        "{error}"
    );
}
