//! The API contract of design.md §3 that other crates rely on, checked at compile time and run
//! time.

use std::future::Future;
use std::time::Duration;

use ratethrottle::clock::{Clock, ManualClock, SystemClock};
use std::sync::Arc;

use ratethrottle::store::{MemoryStore, Outcome, Query, RuleSpec, Store};
use ratethrottle::{Limiter, Rule, Scope, Status, Strategy, parse_rate};

use crate::ready_now;

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
fn assert_copy_eq_display<
    T: Copy + Eq + std::fmt::Debug + std::fmt::Display + std::str::FromStr,
>() {
}

#[test]
fn types_have_the_promised_traits() {
    assert_send_sync_clone::<Limiter>();
    assert_send_sync_clone::<Limiter<MemoryStore>>();
    assert_send_sync_clone::<MemoryStore>();
    assert_send_sync_clone::<ManualClock>();
    assert_copy_eq_display::<Strategy>();
    assert_copy_eq_display::<Scope>();
    let limiter = Limiter::in_memory();
    assert_send(&limiter.check("a", "b"));
    assert_send(&limiter.check_n("a", "b", 2));
    assert_send(&limiter.peek("a", "b"));
    assert_send(&limiter.reset("a", "b"));
    assert_send(&limiter.whitelist_add("a"));
    assert_send(&limiter.blacklist_add("a", None));
}

#[test]
fn clones_share_rules_lists_counters_and_time() {
    let clock = ManualClock::new();
    let a = Limiter::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let b = a.clone();
    a.add_rule(Rule::from_rate("api", "1/second").unwrap())
        .unwrap();
    assert!(ready_now(b.check("x", "api")).unwrap().allowed);
    assert!(!ready_now(a.check("x", "api")).unwrap().allowed);
    clock.clone().advance(Duration::from_secs(400));
    assert!(ready_now(a.check("x", "api")).unwrap().allowed);
    ready_now(b.whitelist_add("vip")).unwrap();
    assert!(ready_now(a.is_whitelisted("vip")).unwrap());
    assert_eq!(a.metrics().total_requests, 3);
    assert_eq!(b.now(), clock.now());
}

#[test]
fn status_headers_come_from_a_real_check() {
    let clock = ManualClock::new();
    let limiter = Limiter::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .build();
    limiter
        .add_rule(Rule::new("api", 100, Duration::from_secs(60)).strategy(Strategy::FixedWindow))
        .unwrap();
    clock.advance(Duration::from_millis(17_500));
    let status: Status = ready_now(limiter.check_n("1.2.3.4", "api", 58)).unwrap();
    let start = ManualClock::START.as_nanos() / 1_000_000_000;
    assert_eq!(
        status.headers(),
        vec![
            ("X-RateLimit-Limit", "100".to_owned()),
            ("X-RateLimit-Remaining", "42".to_owned()),
            ("X-RateLimit-Reset", (start + 60).to_string()),
            ("RateLimit-Policy", "\"api\";q=100;w=60".to_owned()),
            ("RateLimit", "\"api\";r=42;t=43".to_owned()),
        ]
    );
    let denied = ready_now(limiter.check_n("1.2.3.4", "api", 43)).unwrap();
    let headers = denied.headers();
    assert!(
        headers.contains(&("Retry-After", "300".to_owned())),
        "{headers:?}"
    );
}

#[test]
fn parse_rate_and_rules_from_rates() {
    assert_eq!(
        parse_rate("100/minute").unwrap(),
        (100, Duration::from_secs(60))
    );
    let rule = Rule::from_rate("api", "20/5m").unwrap();
    assert_eq!((rule.limit, rule.window), (20, Duration::from_secs(300)));
    let err = Rule::from_rate("api", "100/fortnight")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown time unit \"fortnight\""), "{err}");
    let limiter = Limiter::in_memory();
    let err = limiter
        .add_rule(Rule::new("api", 10, Duration::from_secs(1)).burst(3))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule \"api\": burst 3 is below limit 10; burst must be >= limit"
    );
}

#[test]
fn the_system_clock_drives_the_default_limiter() {
    let limiter = Limiter::in_memory();
    limiter
        .add_rule(Rule::new("api", 1, Duration::from_secs(3600)))
        .unwrap();
    let before = SystemClock.now();
    let status = ready_now(limiter.check("x", "api")).unwrap();
    assert!(status.checked_at >= before);
    // The store keys state by the rule's fingerprint, so a spec rebuilt from the same rule
    // addresses the same key as the limiter did.
    let spec = Arc::new(RuleSpec::new(&limiter.rule("api").unwrap()));
    let query = Query::new(&spec, "x", 1, SystemClock.now());
    let outcome = ready_now(limiter.store().check(query)).unwrap();
    assert!(
        matches!(outcome, Outcome::Decided { decision, .. } if !decision.allowed),
        "{outcome:?}"
    );
}

#[test]
fn a_check_future_decides_once_even_if_polled_again() {
    let limiter = Limiter::builder().clock(ManualClock::new()).build();
    limiter
        .add_rule(Rule::new("api", 5, Duration::from_secs(60)))
        .unwrap();
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(limiter.check("a", "api"));
    assert!(future.as_mut().poll(&mut context).is_ready());
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = future.as_mut().poll(&mut context);
    }));
    assert!(
        again.is_err(),
        "polling a completed check must not decide again"
    );
    assert_eq!(limiter.metrics().total_requests, 1);
}
