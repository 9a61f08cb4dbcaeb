//! Rules by name and by handle on the hot path: small and large tables, replacement and
//! removal, many limiters, other threads, re-entrant callbacks, and a store that must be
//! awaited (the limiter's slow path).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ratethrottle::clock::ManualClock;
use ratethrottle::store::{
    ListEntry, ListKind, MemoryStore, Outcome, Query, RuleSpec, Store, StoreError,
};
use ratethrottle::{Error, Limiter, Rule};

use crate::ready_now;

fn limiter() -> Limiter {
    Limiter::builder().clock(ManualClock::new()).build()
}

/// `name` admits exactly `limit` requests of a fresh identifier.
fn admits_exactly(limiter: &Limiter, name: &str, limit: u64, identifier: &str) {
    for _ in 0..limit {
        assert!(
            ready_now(limiter.check(identifier, name)).unwrap().allowed,
            "{name}"
        );
    }
    let denied = ready_now(limiter.check(identifier, name)).unwrap();
    assert!(!denied.allowed, "{name} admitted more than {limit}");
    assert_eq!(denied.rule, name);
}

#[test]
fn large_rule_tables_find_every_rule_after_adds_replacements_and_removals() {
    let limiter = limiter();
    let rules = |base: u64| {
        (0..40).map(move |i| Rule::new(format!("rule-{i}"), base + i, Duration::from_secs(60)))
    };
    for rule in rules(1) {
        limiter.add_rule(rule).unwrap();
    }
    for i in 0..40 {
        admits_exactly(&limiter, &format!("rule-{i}"), 1 + i, "a");
    }
    // Replace every other rule with a different limit: it applies at once (a client keeps
    // what it consumed; a fresh one gets the new limit).
    for i in (0..40).step_by(2) {
        limiter
            .add_rule(Rule::new(format!("rule-{i}"), 2, Duration::from_secs(60)))
            .unwrap();
    }
    for i in (0..40).step_by(2) {
        // "a" went over the old limit and serves the rule's block, which carries over too.
        let used = ready_now(limiter.check("a", &format!("rule-{i}"))).unwrap();
        assert!(used.blocked, "rule-{i}");
        admits_exactly(&limiter, &format!("rule-{i}"), 2, "a2");
    }
    for i in (1..40).step_by(2) {
        assert!(limiter.remove_rule(&format!("rule-{i}")));
    }
    assert_eq!(limiter.rules().len(), 20);
    for i in 0..40 {
        let checked = ready_now(limiter.check("b", &format!("rule-{i}")));
        match checked {
            Ok(status) => assert!(i % 2 == 0 && status.allowed),
            Err(Error::UnknownRule { rule, known }) => {
                assert!(i % 2 == 1);
                assert_eq!(rule, format!("rule-{i}"));
                assert_eq!(known.len(), 20);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    // Shrinking back to a few rules goes back to scanning them.
    limiter.set_rules(rules(10).take(3)).unwrap();
    admits_exactly(&limiter, "rule-2", 12, "c");
    assert!(ready_now(limiter.check("c", "rule-3")).is_err());
}

#[test]
fn names_that_differ_in_one_byte_or_in_length_are_different_rules() {
    let limiter = limiter();
    let names = [
        "a",
        "ab",
        "abc",
        "abcd",
        "abce",
        "abcdefgh",
        "abcdefgi",
        "abcdefghijklmnopq",
    ];
    for (i, name) in names.iter().enumerate() {
        limiter
            .add_rule(Rule::new(*name, i as u64 + 1, Duration::from_secs(60)))
            .unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        admits_exactly(&limiter, name, i as u64 + 1, "x");
    }
    assert!(ready_now(limiter.check("x", "abcdefghijklmnopr")).is_err());
}

#[test]
fn a_thread_sees_rule_changes_made_by_itself_and_by_others_at_once() {
    let limiter = limiter();
    limiter
        .add_rule(Rule::new("api", 1, Duration::from_secs(60)))
        .unwrap();
    assert!(ready_now(limiter.check("a", "api")).unwrap().allowed);
    limiter.remove_rule("api");
    assert!(
        ready_now(limiter.check("a", "api")).is_err(),
        "removed on this thread"
    );
    std::thread::scope(|scope| {
        scope.spawn(|| {
            limiter
                .add_rule(Rule::new("api", 3, Duration::from_secs(60)))
                .unwrap()
        });
    });
    // The rule is back with the same strategy and window: "a" keeps the one it used.
    admits_exactly(&limiter, "api", 2, "a");
    admits_exactly(&limiter, "api", 3, "b");
}

#[test]
fn one_thread_can_use_many_limiters_in_turn() {
    let limiters: Vec<Limiter> = (0..10)
        .map(|i| {
            let limiter = limiter();
            limiter
                .add_rule(Rule::new("api", i + 1, Duration::from_secs(60)))
                .unwrap();
            limiter
        })
        .collect();
    for round in 0..3 {
        for (i, limiter) in limiters.iter().enumerate() {
            let status = ready_now(limiter.check(&format!("id-{round}"), "api")).unwrap();
            assert_eq!(status.limit, i as u64 + 1);
            assert_eq!(status.remaining, i as u64);
        }
    }
}

#[test]
fn a_violation_callback_may_check_the_same_limiter_again() {
    let limiter = limiter();
    limiter
        .add_rule(Rule::new("api", 1, Duration::from_secs(60)))
        .unwrap();
    limiter
        .add_rule(Rule::new("audit", 100, Duration::from_secs(60)))
        .unwrap();
    let inner = limiter.clone();
    let audited = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&audited);
    limiter.on_violation(move |violation| {
        let status = ready_now(inner.check(&violation.identifier.to_string(), "audit")).unwrap();
        seen.store(status.remaining, Ordering::SeqCst);
    });
    assert!(ready_now(limiter.check("a", "api")).unwrap().allowed);
    assert!(!ready_now(limiter.check("a", "api")).unwrap().allowed);
    assert_eq!(
        audited.load(Ordering::SeqCst),
        99,
        "the callback's own check ran"
    );
    assert_eq!(limiter.metrics().callback_panics, 0);
}

/// A store that must be awaited: it answers through a future that is pending once.
#[derive(Clone, Debug, Default)]
struct Awaited(MemoryStore);

/// Pending on the first poll, then ready with `value`.
fn pending_once<T>(value: T) -> impl Future<Output = T> {
    let mut value = Some(value);
    let mut polled = false;
    std::future::poll_fn(move |context| {
        if !polled {
            polled = true;
            context.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(value.take().expect("polled after completion"))
    })
}

impl Store for Awaited {
    fn kind(&self) -> &'static str {
        "awaited"
    }

    fn check(&self, query: Query<'_>) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        pending_once(Ok(self.0.check_now(&query)))
    }

    fn reset(
        &self,
        rule: &RuleSpec,
        identifier: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.0.reset(rule, identifier)
    }

    fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires_at: Option<ratethrottle::clock::Nanos>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.0.list_add(list, identifier, expires_at)
    }

    fn list_remove(
        &self,
        list: ListKind,
        identifier: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.0.list_remove(list, identifier)
    }

    fn list_contains(
        &self,
        list: ListKind,
        identifier: &str,
        now: ratethrottle::clock::Nanos,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.0.list_contains(list, identifier, now)
    }

    fn list_entries(
        &self,
        list: ListKind,
        now: ratethrottle::clock::Nanos,
    ) -> impl Future<Output = Result<Vec<ListEntry>, StoreError>> + Send {
        self.0.list_entries(list, now)
    }

    fn list_len_hint(&self, list: ListKind, now: ratethrottle::clock::Nanos) -> u64 {
        self.0.list_len_hint(list, now)
    }
}

#[test]
fn stores_that_must_be_awaited_take_the_general_path() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limiter = Limiter::builder()
            .store(Awaited::default())
            .clock(ManualClock::new())
            .build();
        limiter
            .add_rule(Rule::new("api", 2, Duration::from_secs(60)))
            .unwrap();
        assert!(limiter.check("a", "api").await.unwrap().allowed);
        assert_eq!(limiter.check_n("a", "api", 1).await.unwrap().remaining, 0);
        assert!(!limiter.peek("a", "api").await.unwrap().allowed);
        assert!(
            limiter.check_n("a", "api", 3).await.is_err(),
            "cost above capacity"
        );
        assert!(limiter.check("a", "nope").await.is_err());
        limiter.whitelist_add("vip").await.unwrap();
        assert!(
            limiter.check("vip", "nope").await.unwrap().allowed,
            "lists apply to unknown rules"
        );
        assert_eq!(limiter.metrics().allowed_requests, 3);
    });
}

#[test]
fn handles_follow_their_rule_through_replacements_removal_and_return() {
    let limiter = limiter();
    limiter
        .add_rule(Rule::new("api", 2, Duration::from_secs(60)).block_duration(Duration::ZERO))
        .unwrap();
    assert!(matches!(
        limiter.rule_handle("apii"),
        Err(Error::UnknownRule { .. })
    ));
    let api = limiter.rule_handle("api").unwrap();
    assert_eq!(api.name(), "api");
    let check = |id: &str| api.check_now(id, 1).expect("memory store").unwrap();
    assert!(check("a").allowed && check("a").allowed && !check("a").allowed);
    // The handle, the name and the future all count as one rule.
    assert!(!ready_now(api.check("a")).unwrap().allowed);
    assert!(!ready_now(limiter.check("a", "api")).unwrap().allowed);
    assert_eq!(limiter.metrics().total_requests, 5);

    // A reload with a new limit applies through the handle at once.
    limiter
        .set_rules([Rule::new("api", 4, Duration::from_secs(60)).block_duration(Duration::ZERO)])
        .unwrap();
    let status = check("a");
    assert_eq!((status.allowed, status.limit), (true, 4));
    assert_eq!(ready_now(api.peek("b")).unwrap().remaining, 4);

    // Removed: a clear error, naming the rule; added again: the handle works again.
    assert!(limiter.remove_rule("api"));
    // Not at once: the lists may still decide for an unknown rule, which can need the store.
    assert!(api.check_now("a", 1).is_none());
    match ready_now(api.check("a")) {
        Err(Error::UnknownRule { rule, .. }) => assert_eq!(rule, "api"),
        other => panic!("expected UnknownRule, got {other:?}"),
    }
    limiter
        .add_rule(Rule::new("api", 1, Duration::from_secs(60)))
        .unwrap();
    assert!(check("fresh").allowed && !check("fresh").allowed);
    assert_eq!(api.scope(), Some(ratethrottle::Scope::Ip));
}

#[test]
fn handles_under_concurrent_reloads_never_admit_more_than_the_limit() {
    let limiter = limiter();
    let rule = || Rule::new("api", 100, Duration::from_secs(60)).block_duration(Duration::ZERO);
    limiter.add_rule(rule()).unwrap();
    let api = limiter.rule_handle("api").unwrap();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..200 {
                    if api.check_now("one", 1).unwrap().unwrap().allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Reloads of the same rule keep its state; they must not reset anyone's count.
        scope.spawn(|| {
            for i in 0..200 {
                let other = Rule::new(format!("other-{i}"), 1, Duration::from_secs(1));
                limiter.set_rules([rule(), other]).unwrap();
            }
        });
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
}
