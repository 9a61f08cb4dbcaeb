//! The factors alone and together, at their boundaries, under a hand-set clock.

use std::time::Duration;

use super::*;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const BROWSER: Option<&str> = Some("Mozilla/5.0");

fn at(nanos: u64) -> Nanos {
    Nanos::from_nanos(T0 + nanos)
}

fn settings() -> DdosSettings {
    DdosSettings {
        threshold: 100,
        window: Duration::from_secs(10),
        whitelist_on_good_behavior: false,
        ..DdosSettings::default()
    }
}

fn factor(analysis: &Analysis, name: &str) -> Option<f64> {
    let part = analysis.pattern.factors.get(name);
    (part > 0.0).then_some(part)
}

#[test]
fn settings_out_of_range_are_named() {
    type Spoil = fn(&mut DdosSettings);
    let cases: [(Spoil, &str); 6] = [
        (|s| s.threshold = 0, "threshold"),
        (|s| s.window = Duration::ZERO, "window"),
        (|s| s.suspicious_threshold = 1.5, "suspicious_threshold"),
        (|s| s.suspicious_threshold = -0.1, "suspicious_threshold"),
        (|s| s.burst_window = Duration::ZERO, "burst_window"),
        (
            |s| s.max_tracked_identifiers = 999,
            "max_tracked_identifiers",
        ),
    ];
    for (spoil, key) in cases {
        let mut settings = DdosSettings::default();
        spoil(&mut settings);
        let error = DdosProtection::new(settings).unwrap_err();
        assert_eq!(error.key, key);
        assert!(
            error
                .to_string()
                .starts_with(&format!("ddos_protection.{key} must be")),
            "{error}"
        );
    }
    assert!(DdosProtection::new(DdosSettings::default()).is_ok());
}

#[test]
fn the_rate_factor_grows_past_half_the_threshold_and_caps_at_0_4() {
    // 100 per 10 s is 10 per second: elevated above 5/s, high above 10/s.
    let ddos = DdosProtection::new(DdosSettings {
        burst_threshold: 10_000,
        ..settings()
    })
    .unwrap();
    let mut last = None;
    for i in 0..60 {
        last = Some(ddos.analyze("a", "/", BROWSER, at(i * SEC / 10)));
    }
    // 60 requests in the window: 6/s, elevated: 0.2 * (6/5 - 1) = 0.04.
    let last = last.unwrap();
    assert!(
        (factor(&last, "elevated_rate").unwrap() - 0.04).abs() < 1e-9,
        "{last:?}"
    );
    assert_eq!(factor(&last, "high_rate"), None);
    for i in 60..400 {
        ddos.analyze("a", "/", BROWSER, at(i * SEC / 100));
    }
    let flood = ddos.analyze("a", "/", BROWSER, at(4 * SEC));
    assert_eq!(factor(&flood, "high_rate"), Some(0.4));
}

#[test]
fn many_endpoints_score_as_a_scan() {
    let ddos = DdosProtection::new(settings()).unwrap();
    let mut last = None;
    for i in 0..26 {
        last = Some(ddos.analyze("a", &format!("/page/{i}"), BROWSER, at(i * SEC)));
    }
    // 26 > 25 (half of 50): 0.15 * (26/25 - 1).
    let elevated = factor(last.as_ref().unwrap(), "elevated_endpoints").unwrap();
    assert!((elevated - 0.15 * (26.0 / 25.0 - 1.0)).abs() < 1e-9);
    for i in 26..200 {
        last = Some(ddos.analyze("a", &format!("/page/{i}"), BROWSER, at(30 * SEC + i * SEC)));
    }
    let last = last.unwrap();
    assert_eq!(factor(&last, "many_endpoints"), Some(0.3));
    assert_eq!(
        last.pattern.unique_endpoints, 100,
        "counted up to twice the limit"
    );
}

#[test]
fn bursts_machine_intervals_and_user_agents() {
    let ddos = DdosProtection::new(DdosSettings {
        threshold: 100_000,
        burst_threshold: 20,
        ..settings()
    })
    .unwrap();
    // 30 requests 50 ms apart: a burst over 20, uniform (< 100 ms) and rapid (< 0.5 s).
    let mut last = None;
    for i in 0..30 {
        last = Some(ddos.analyze("a", "/", BROWSER, at(i * SEC / 20)));
    }
    let last = last.unwrap();
    assert!((factor(&last, "burst").unwrap() - 0.2 * (30.0 / 20.0 - 1.0)).abs() < 1e-9);
    assert_eq!(factor(&last, "uniform_intervals"), Some(0.2));
    assert_eq!(factor(&last, "rapid_succession"), Some(0.1));
    // Intervals of 300 ms: rapid, not uniform.
    for i in 0..25 {
        last_slow(&ddos, i);
    }
    let slow = ddos.analyze("b", "/", BROWSER, at(100 * SEC + 25 * 3 * SEC / 10));
    assert_eq!(factor(&slow, "uniform_intervals"), None);
    assert_eq!(factor(&slow, "rapid_succession"), Some(0.1));
    // User agents: none 0.1, a bot's 0.05, a browser's nothing.
    assert_eq!(
        factor(&ddos.analyze("c", "/", None, at(0)), "no_user_agent"),
        Some(0.1)
    );
    assert_eq!(
        factor(&ddos.analyze("c", "/", Some(""), at(0)), "no_user_agent"),
        Some(0.1)
    );
    let bot = ddos.analyze("d", "/", Some("Googlebot/2.1"), at(0));
    assert_eq!(factor(&bot, "suspicious_agent"), Some(0.05));
    assert_eq!(
        ddos.analyze("e", "/", BROWSER, at(0))
            .pattern
            .factors
            .iter()
            .count(),
        0
    );
}

fn last_slow(ddos: &DdosProtection, i: u64) {
    ddos.analyze("b", "/", BROWSER, at(100 * SEC + i * 3 * SEC / 10));
}

#[test]
fn three_suspicious_events_in_five_minutes_or_a_high_score_block() {
    let ddos = DdosProtection::new(DdosSettings {
        suspicious_threshold: 0.1,
        ..settings()
    })
    .unwrap();
    // No user agent scores 0.1: suspicious, not enough alone to block.
    let first = ddos.analyze("a", "/", None, at(0));
    assert!(first.pattern.is_suspicious && first.block_for.is_none());
    assert!(
        ddos.analyze("a", "/", None, at(100 * SEC))
            .block_for
            .is_none()
    );
    let third = ddos.analyze("a", "/", None, at(200 * SEC));
    assert_eq!(third.block_for, Some(Duration::from_secs(3600)));
    // Spread over more than five minutes: no block.
    for (i, t) in [0, 200, 400].into_iter().enumerate() {
        let analysis = ddos.analyze("b", "/", None, at(t * SEC));
        assert!(analysis.block_for.is_none(), "event {i}");
    }
    let stats = ddos.statistics();
    assert_eq!((stats.suspicious_detected, stats.auto_blocked), (6, 1));
    // Without auto_block nothing is blocked.
    let manual = DdosProtection::new(DdosSettings {
        suspicious_threshold: 0.1,
        auto_block: false,
        ..settings()
    })
    .unwrap();
    for t in 0..3 {
        assert!(
            manual
                .analyze("a", "/", None, at(t * SEC))
                .block_for
                .is_none()
        );
    }
}

#[test]
fn a_long_good_record_exempts_a_client() {
    let ddos = DdosProtection::new(DdosSettings {
        good_behavior_threshold: 5,
        whitelist_on_good_behavior: true,
        ..settings()
    })
    .unwrap();
    for i in 0..5 {
        assert!(
            !ddos
                .analyze("a", "/", BROWSER, at(i * SEC))
                .pattern
                .is_suspicious
        );
    }
    let trusted = ddos.analyze("a", "/", None, at(6 * SEC));
    let factors: Vec<_> = trusted.pattern.factors.iter().collect();
    assert_eq!(factors, [("whitelisted", 1.0)]);
    assert_eq!(ddos.statistics().false_positives_prevented, 1);
    assert_eq!(ddos.statistics().trusted_identifiers, 1);
    // Distrusted, it is scored again.
    assert!(ddos.distrust("a"));
    assert!(!ddos.distrust("never-seen"));
    let scored = ddos.analyze("a", "/", None, at(7 * SEC));
    assert_eq!(factor(&scored, "no_user_agent"), Some(0.1));
    assert_eq!(ddos.statistics().trusted_identifiers, 0);
}

#[test]
fn tracking_is_bounded_under_a_flood_of_new_clients() {
    let ddos = DdosProtection::new(DdosSettings {
        max_tracked_identifiers: 1000,
        ..settings()
    })
    .unwrap();
    for i in 0..1_000_000u64 {
        ddos.analyze(
            &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            "/",
            BROWSER,
            at(i),
        );
    }
    let tracked = ddos.statistics().tracked_identifiers;
    assert!((1000..=1000 + 64).contains(&tracked), "{tracked}");
}

#[test]
fn eight_threads_analyse_concurrently() {
    let ddos = DdosProtection::new(settings()).unwrap();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let ddos = &ddos;
            scope.spawn(move || {
                for i in 0..10_000u64 {
                    ddos.analyze(
                        &format!("client-{}", i % 100),
                        "/",
                        BROWSER,
                        at(t * 1000 + i),
                    );
                }
            });
        }
    });
    let stats = ddos.statistics();
    assert_eq!(stats.total_analyzed, 80_000);
    assert_eq!(stats.tracked_identifiers, 100);
}

#[test]
fn blocks_escalate_over_four_offences_up_to_the_cap() {
    let hour = Duration::from_secs(3600);
    let settings = DdosSettings {
        block_increment: 2.0,
        max_block_duration: 5 * hour,
        ..DdosSettings::default()
    };
    let blocks: Vec<Duration> = (1..=5).map(|n| settings.block_for(n)).collect();
    assert_eq!(blocks, [hour, 2 * hour, 4 * hour, 5 * hour, 5 * hour]);
    // 1 keeps every block as the original's; a huge offence count saturates at the cap.
    let fixed = DdosSettings {
        block_increment: 1.0,
        ..DdosSettings::default()
    };
    assert!((1..=4).all(|n| fixed.block_for(n) == hour));
    assert_eq!(settings.block_for(u64::MAX), 5 * hour);
    assert_eq!(settings.block_for(0), hour);
    type Spoil = fn(&mut DdosSettings);
    let cases: [(Spoil, &str); 3] = [
        (|s| s.block_increment = 0.5, "block_increment"),
        (
            |s| s.max_block_duration = Duration::from_secs(1),
            "max_block_duration",
        ),
        (|s| s.offence_memory = Duration::ZERO, "offence_memory"),
    ];
    for (spoil, key) in cases {
        let mut settings = DdosSettings::default();
        spoil(&mut settings);
        assert_eq!(settings.validate().unwrap_err().key, key);
    }
}

#[tokio::test]
async fn offences_are_counted_in_the_store_and_forgotten_after_the_memory() {
    use ratethrottle::clock::ManualClock;
    let clock = ManualClock::at(at(0));
    let limiter = ratethrottle::Limiter::builder()
        .clock(clock.clone())
        .build();
    let settings = DdosSettings {
        offence_memory: Duration::from_secs(86_400),
        ..DdosSettings::default()
    };
    let hours = |ban: Option<Ban>| ban.map(|ban| (ban.offence, ban.duration.as_secs() / 3600));
    let first = ban(&limiter, &settings, "10.0.0.1").await.unwrap();
    assert_eq!(hours(first), Some((1, 1)));
    // Blacklisted already: nothing counted.
    assert_eq!(ban(&limiter, &settings, "10.0.0.1").await.unwrap(), None);
    clock.advance(Duration::from_secs(3600));
    let second = ban(&limiter, &settings, "10.0.0.1").await.unwrap();
    assert_eq!(hours(second), Some((2, 2)));
    let other = ban(&limiter, &settings, "10.0.0.2").await.unwrap();
    assert_eq!(hours(other), Some((1, 1)));
    // The block is on the blacklist and ends with its duration.
    assert!(limiter.is_blacklisted("10.0.0.1").await.unwrap());
    clock.advance(Duration::from_secs(2 * 3600 + 1));
    assert!(!limiter.is_blacklisted("10.0.0.1").await.unwrap());
    // Each offence restarts the memory; a day without one starts again at the first.
    clock.advance(Duration::from_secs(86_400 - 3 * 3600));
    let third = ban(&limiter, &settings, "10.0.0.1").await.unwrap();
    assert_eq!(hours(third), Some((3, 4)));
    clock.advance(Duration::from_secs(86_400 + 1));
    let fresh = ban(&limiter, &settings, "10.0.0.1").await.unwrap();
    assert_eq!(hours(fresh), Some((1, 1)));
}
