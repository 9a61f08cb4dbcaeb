//! The memory store's plain keys and values (`KeyValueStore`).

use std::sync::Arc;
use std::time::Duration;

use ratethrottle::clock::Nanos;
use ratethrottle::store::{
    KeyValueStore, ListKind, MemoryStore, MemoryStoreConfig, SetMode, Store, StoreErrorKind, Value,
};
use ratethrottle::{Limiter, Rule};

use crate::ready_now;

const SEC: u64 = 1_000_000_000;

fn at(seconds: u64) -> Nanos {
    Nanos::from_nanos(1_700_000_000 * SEC + seconds * SEC)
}

fn text(value: &str) -> Value {
    Value::Bytes(value.as_bytes().to_vec())
}

#[test]
fn values_expire_exactly_at_their_ttl() {
    let store = MemoryStore::new();
    let ttl = Some(Duration::from_secs(10));
    assert!(ready_now(store.set("k", text("v"), ttl, SetMode::Always, at(0))).unwrap());
    assert_eq!(ready_now(store.get("k", at(0))).unwrap(), Some(text("v")));
    let just_before = Nanos::from_nanos(at(10).as_nanos() - 1);
    assert_eq!(
        ready_now(store.get("k", just_before)).unwrap(),
        Some(text("v"))
    );
    assert_eq!(ready_now(store.get("k", at(10))).unwrap(), None);
    assert!(!ready_now(store.exists("k", at(10))).unwrap());
    // Without a TTL a value stays.
    ready_now(store.set("forever", Value::Int(1), None, SetMode::Always, at(0))).unwrap();
    assert!(ready_now(store.exists("forever", at(1_000_000))).unwrap());
}

#[test]
fn objects_are_kept_by_reference() {
    let store = MemoryStore::new();
    let object: Arc<dyn std::any::Any + Send + Sync> = Arc::new(vec![1, 2, 3]);
    let value = Value::Object(Arc::clone(&object));
    ready_now(store.set("o", value.clone(), None, SetMode::Always, at(0))).unwrap();
    match ready_now(store.get("o", at(0))).unwrap() {
        Some(Value::Object(held)) => assert!(Arc::ptr_eq(&held, &object)),
        other => panic!("expected the object back, got {other:?}"),
    }
}

#[test]
fn set_if_absent_writes_only_over_nothing_or_an_expired_value() {
    let store = MemoryStore::new();
    let ttl = Some(Duration::from_secs(5));
    assert!(ready_now(store.set("k", text("a"), ttl, SetMode::IfAbsent, at(0))).unwrap());
    assert!(!ready_now(store.set("k", text("b"), ttl, SetMode::IfAbsent, at(4))).unwrap());
    assert_eq!(ready_now(store.get("k", at(4))).unwrap(), Some(text("a")));
    assert!(ready_now(store.set("k", text("c"), ttl, SetMode::IfAbsent, at(5))).unwrap());
    assert_eq!(ready_now(store.get("k", at(5))).unwrap(), Some(text("c")));
}

#[test]
fn increments_start_from_zero_and_keep_or_restart_their_ttl() {
    let store = MemoryStore::new();
    let minute = Some(Duration::from_secs(60));
    assert_eq!(
        ready_now(store.increment("n", 5, minute, at(0))).unwrap(),
        5
    );
    // No TTL given: the key keeps the one it had (expires at 60).
    assert_eq!(
        ready_now(store.increment("n", -2, None, at(30))).unwrap(),
        3
    );
    assert_eq!(ready_now(store.get("n", at(60))).unwrap(), None);
    // Expired: counts from zero again; a TTL given restarts it.
    assert_eq!(
        ready_now(store.increment("n", 1, minute, at(60))).unwrap(),
        1
    );
    assert_eq!(
        ready_now(store.increment("n", 1, minute, at(100))).unwrap(),
        2
    );
    assert_eq!(
        ready_now(store.get("n", at(159))).unwrap(),
        Some(Value::Int(2))
    );
}

#[test]
fn increments_refuse_what_is_not_a_whole_number_or_overflows() {
    let store = MemoryStore::new();
    ready_now(store.set("t", text("7"), None, SetMode::Always, at(0))).unwrap();
    let error = ready_now(store.increment("t", 1, None, at(0))).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Invalid, "{error}");
    ready_now(store.set("big", Value::Int(i64::MAX), None, SetMode::Always, at(0))).unwrap();
    let error = ready_now(store.increment("big", 1, None, at(0))).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Invalid, "{error}");
    // Nothing was lost.
    assert_eq!(
        ready_now(store.get("big", at(0))).unwrap(),
        Some(Value::Int(i64::MAX))
    );
}

#[test]
fn concurrent_increments_add_up_exactly() {
    let store = MemoryStore::new();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..1_000 {
                    ready_now(store.increment("hits", 1, None, at(0))).unwrap();
                }
            });
        }
    });
    assert_eq!(
        ready_now(store.get("hits", at(0))).unwrap(),
        Some(Value::Int(8_000))
    );
}

#[test]
fn delete_counts_the_live_keys_it_removed() {
    let store = MemoryStore::new();
    ready_now(store.set("a", Value::Int(1), None, SetMode::Always, at(0))).unwrap();
    let second = Some(Duration::from_secs(1));
    ready_now(store.set("b", Value::Int(1), second, SetMode::Always, at(0))).unwrap();
    assert_eq!(ready_now(store.delete(&["a", "b", "c"], at(2))).unwrap(), 1);
    assert_eq!(ready_now(store.get("a", at(2))).unwrap(), None);
}

#[test]
fn the_plain_keys_are_bounded() {
    let store = MemoryStore::with_config(MemoryStoreConfig::default().max_keys(64));
    for i in 0..10_000 {
        ready_now(store.set(
            &format!("k{i}"),
            Value::Int(i),
            None,
            SetMode::Always,
            at(0),
        ))
        .unwrap();
    }
    let stats = store.value_stats(at(0));
    assert!(stats.keys <= 64, "{stats:?}");
    assert!(stats.evictions >= 10_000 - 64, "{stats:?}");
}

#[test]
fn clear_empties_values_limiter_state_and_lists() {
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("api", 1, Duration::from_secs(60)))
        .unwrap();
    assert!(ready_now(limiter.check("10.0.0.1", "api")).unwrap().allowed);
    assert!(!ready_now(limiter.check("10.0.0.1", "api")).unwrap().allowed);
    ready_now(limiter.blacklist_add("10.0.0.9", None)).unwrap();
    let store = limiter.store();
    ready_now(store.set("k", Value::Int(1), None, SetMode::Always, at(0))).unwrap();
    assert_eq!(ready_now(store.clear()).unwrap(), 3);
    assert!(ready_now(limiter.check("10.0.0.1", "api")).unwrap().allowed);
    assert!(ready_now(limiter.check("10.0.0.9", "api")).unwrap().allowed);
    assert_eq!(store.list_len_hint(ListKind::Blacklist, at(0)), 0);
    assert_eq!(ready_now(store.get("k", at(0))).unwrap(), None);
}
