//! Fleet telemetry: two limiters publish, one snapshot shows them both.

use std::time::Duration;

use ratethrottle::{Limiter, Rule};
use ratethrottle_redis::telemetry::{Telemetry, read_fleet};

use crate::runtime;
use crate::server::{caller_clock_store, cluster_store};

async fn two_processes_add_up(store: ratethrottle_redis::RedisStore) {
    let limiters: Vec<_> = (0..2)
        .map(|_| {
            let limiter = Limiter::builder().store(store.clone()).build();
            limiter
                .add_rule(
                    Rule::new("api", 3, Duration::from_secs(60)).block_duration(Duration::ZERO),
                )
                .unwrap();
            let telemetry = Telemetry::attach(&limiter, &store);
            (limiter, telemetry)
        })
        .collect();
    for (limiter, _) in &limiters {
        for id in ["a", "a", "b"] {
            limiter.check(id, "api").await.unwrap();
        }
    }
    // "a" made 4 checks across both: 3 admitted, 1 denied; "b" 2 admitted.
    limiters[0]
        .1
        .report("adaptive", || r#"{"profiles": 1}"#.to_owned());
    limiters[0]
        .1
        .report("adaptive", || r#"{"profiles": 2}"#.to_owned()); // replaces
    for (limiter, telemetry) in &limiters {
        telemetry.publish(limiter).await.unwrap();
        telemetry.publish(limiter).await.unwrap(); // nothing new: adds nothing
    }
    let fleet = read_fleet(&store, 60).await.unwrap();
    assert_eq!((fleet.allowed, fleet.denied, fleet.violations), (5, 1, 1));
    assert_eq!(fleet.rules.len(), 1);
    assert_eq!(fleet.rules[0].rule, "api");
    assert_eq!((fleet.rules[0].allowed, fleet.rules[0].denied), (5, 1));
    assert_eq!(fleet.rules[0].definition, "3 per 60s, sliding_counter, ip");
    assert_eq!(fleet.top_limited, [("a".to_owned(), 1)]);
    assert_eq!(fleet.recent_violations.len(), 1);
    assert_eq!(fleet.recent_violations[0].identifier, "a");
    assert_eq!(fleet.per_second.len(), 60);
    let last_seconds: u64 = fleet.per_second.iter().map(|s| s.allowed + s.denied).sum();
    assert_eq!(last_seconds, 6);
    assert_eq!(
        fleet.processes.len(),
        1,
        "both limiters are in this one process"
    );
    let reports: Vec<&str> = fleet.reports_named("adaptive").collect();
    assert_eq!(reports, [r#"{"profiles": 2}"#]);
    assert_eq!(fleet.reports[0].1, fleet.processes[0]);
}

#[test]
fn telemetry_of_two_limiters_adds_up() {
    runtime().block_on(async {
        let Some(store) = caller_clock_store().await else {
            return;
        };
        two_processes_add_up(store).await;
    });
}

#[test]
fn telemetry_works_on_a_cluster() {
    runtime().block_on(async {
        let Some(store) = cluster_store().await else {
            return;
        };
        two_processes_add_up(store).await;
    });
}
