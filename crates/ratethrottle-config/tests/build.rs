//! Building a limiter from a configuration, on memory and on Redis.

use std::time::Duration;

use ratethrottle_config::{Config, ConfigError, ConfiguredStore, Environment};

use crate::server::RedisServer;

#[tokio::test]
async fn a_memory_configuration_builds_a_ready_limiter() {
    let yaml = "rules:\n  - name: api\n    limit: 2\n    window: 60\nwhitelist: [trusted]\nblacklist: [{identifier: bad, duration: 60}]\n";
    let config = Config::from_yaml(yaml, "t", &Environment::empty()).unwrap();
    let limiter = config.build_limiter().await.unwrap();
    assert!(matches!(limiter.store(), ConfiguredStore::Memory(_)));
    assert!(limiter.check("a", "api").await.unwrap().allowed);
    assert!(limiter.check("a", "api").await.unwrap().allowed);
    assert!(!limiter.check("a", "api").await.unwrap().allowed);
    assert!(limiter.check("trusted", "api").await.unwrap().allowed);
    let denied = limiter.check("bad", "api").await.unwrap();
    assert!(!denied.allowed && denied.blocked);
}

#[tokio::test]
async fn a_redis_configuration_shares_limits_between_limiters() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let yaml = format!(
        "storage:\n  type: redis\n  url: redis://127.0.0.1:{}/0\n  key_prefix: \"cfg-build-{}:\"\n  timeout: 2\nrules:\n  - name: api\n    limit: 3\n    window: 60\n",
        server.port,
        std::process::id()
    );
    let config = Config::from_yaml(&yaml, "t", &Environment::empty()).unwrap();
    let (a, b) = (
        config.build_limiter().await.unwrap(),
        config.build_limiter().await.unwrap(),
    );
    assert!(a.store().as_redis().is_some());
    let mut admitted = 0;
    for limiter in [&a, &b, &a, &b, &a] {
        admitted += u32::from(limiter.check("shared", "api").await.unwrap().allowed);
    }
    assert_eq!(admitted, 3);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let env = Environment::empty()
        .with("RT_STORAGE_TYPE", "redis")
        .with("RT_REDIS_HOST", "127.0.0.1")
        .with("RT_REDIS_PORT", "1")
        .with("RT_REDIS_PASSWORD", "pw-never-shown");
    let yaml = "storage:\n  timeout: 0.2\n  require_connection: true\n";
    let config = Config::from_yaml(yaml, "t", &env).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(30), config.build_limiter())
        .await
        .expect("gives up in time")
        .unwrap_err();
    assert!(matches!(error, ConfigError::Store { kind: "redis", .. }));
    let message = error.to_string();
    assert!(
        message.starts_with("cannot set up the redis store:"),
        "{message}"
    );
    assert!(!message.contains("pw-never-shown"), "{message}");

    // Without `require_connection` the store starts, and connects once Redis answers.
    let config = Config::from_yaml("storage:\n  timeout: 0.2\n", "t", &env).unwrap();
    let limiter = config
        .build_limiter()
        .await
        .expect("starts while redis is down");
    assert!(limiter.store().as_redis().is_some());
}
