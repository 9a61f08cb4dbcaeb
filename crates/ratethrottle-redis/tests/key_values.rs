//! Plain keys and values in Redis (`KeyValueStore`).

use std::time::Duration;

use ratethrottle::clock::Nanos;
use ratethrottle::store::{KeyValueStore, SetMode, StoreErrorKind, Value};
use ratethrottle::{Limiter, Rule};
use ratethrottle_redis::{RedisConfig, RedisStore, ScriptReply};

use crate::runtime;
use crate::server::{RedisServer, redis_cli};

/// A store on `server` and the runtime its connection lives on.
fn store(server: &RedisServer, prefix: &str) -> (RedisStore, tokio::runtime::Runtime) {
    let runtime = runtime();
    let config = RedisConfig::new(server.url()).key_prefix(prefix);
    let store = runtime.block_on(RedisStore::with_config(config)).unwrap();
    (store, runtime)
}

fn now() -> Nanos {
    Nanos::from_nanos(1_700_000_000_000_000_000)
}

#[test]
fn values_round_trip_under_the_prefix_with_redis_ttls() {
    let Some(server) = RedisServer::dedicated() else {
        return;
    };
    let (store, runtime) = store(&server, "kv:");
    runtime.block_on(async {
        let ttl = Some(Duration::from_millis(1500));
        assert!(
            store
                .set(
                    "a",
                    Value::Bytes(b"x".to_vec()),
                    ttl,
                    SetMode::Always,
                    now()
                )
                .await
                .unwrap()
        );
        assert_eq!(
            store.get("a", now()).await.unwrap(),
            Some(Value::Bytes(b"x".to_vec()))
        );
        assert!(store.exists("a", now()).await.unwrap());
        assert!(
            !store
                .set("a", Value::Int(1), None, SetMode::IfAbsent, now())
                .await
                .unwrap()
        );
        assert!(
            store
                .set("b", Value::Int(-7), None, SetMode::IfAbsent, now())
                .await
                .unwrap()
        );
        assert_eq!(
            store.get("b", now()).await.unwrap(),
            Some(Value::Bytes(b"-7".to_vec()))
        );
        assert_eq!(
            store.delete(&["a", "b", "missing"], now()).await.unwrap(),
            2
        );
        let object = Value::Object(std::sync::Arc::new(1_u8));
        let error = store
            .set("o", object, None, SetMode::Always, now())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Invalid, "{error}");
    });
    let ttl: i64 = {
        runtime
            .block_on(store.set(
                "t",
                Value::Int(1),
                Some(Duration::from_secs(9)),
                SetMode::Always,
                now(),
            ))
            .unwrap();
        redis_cli(server.port, &["pttl", "kv:t"])
            .trim()
            .parse()
            .unwrap()
    };
    assert!((8_000..=9_000).contains(&ttl), "{ttl}");
}

#[test]
fn increments_are_atomic_with_their_ttl_and_refuse_text() {
    let Some(server) = RedisServer::dedicated() else {
        return;
    };
    let (store, runtime) = store(&server, "kv:");
    runtime.block_on(async {
        let minute = Some(Duration::from_secs(60));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..250 {
                        store.increment("hits", 1, minute, now()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            store.increment("hits", 0, None, now()).await.unwrap(),
            2_000
        );
        store
            .set(
                "text",
                Value::Bytes(b"abc".to_vec()),
                None,
                SetMode::Always,
                now(),
            )
            .await
            .unwrap();
        let error = store.increment("text", 1, None, now()).await.unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Invalid, "{error}");
    });
    let ttl: i64 = redis_cli(server.port, &["pttl", "kv:hits"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 50_000, "the TTL was set with the sum: {ttl}");
}

#[test]
fn clear_removes_the_prefix_and_nothing_else() {
    let Some(server) = RedisServer::dedicated() else {
        return;
    };
    redis_cli(server.port, &["set", "foreign:key", "keep me"]);
    redis_cli(server.port, &["set", "app*x", "also foreign"]);
    let (store, runtime) = store(&server, "app*");
    let limiter = Limiter::builder().store(store.clone()).build();
    limiter
        .add_rule(Rule::new("api", 1, Duration::from_secs(60)))
        .unwrap();
    runtime.block_on(async {
        assert!(limiter.check("10.0.0.1", "api").await.unwrap().allowed);
        assert!(!limiter.check("10.0.0.1", "api").await.unwrap().allowed);
        limiter.blacklist_add("10.0.0.9", None).await.unwrap();
        store
            .set("mine", Value::Int(1), None, SetMode::Always, now())
            .await
            .unwrap();
        assert!(store.clear().await.unwrap() >= 4);
        assert!(limiter.check("10.0.0.1", "api").await.unwrap().allowed);
        assert!(limiter.check("10.0.0.9", "api").await.unwrap().allowed);
        assert_eq!(store.get("mine", now()).await.unwrap(), None);
    });
    assert_eq!(
        redis_cli(server.port, &["get", "foreign:key"]).trim(),
        "keep me"
    );
    assert_eq!(redis_cli(server.port, &["get", "app*x"]).trim(), "");
}

#[test]
fn scripts_run_on_prefixed_keys_and_info_is_read() {
    let Some(server) = RedisServer::dedicated() else {
        return;
    };
    let (store, runtime) = store(&server, "lua:");
    runtime.block_on(async {
        let script = "redis.call('SET', KEYS[1], ARGV[1]); return {KEYS[1], tonumber(ARGV[1]) + 1, redis.call('GET', KEYS[1])}";
        let reply = store.eval(script, &["k"], &[b"41".to_vec()]).await.unwrap();
        assert_eq!(
            reply,
            ScriptReply::Array(vec![
                ScriptReply::Bytes(b"lua:k".to_vec()),
                ScriptReply::Int(42),
                ScriptReply::Bytes(b"41".to_vec()),
            ])
        );
        let info = store.server_info().await.unwrap();
        assert!(info.iter().any(|(field, _)| field == "redis_version"), "{info:?}");
    });
}
