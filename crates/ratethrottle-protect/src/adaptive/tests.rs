//! The trust, anomaly and limit math at its boundaries under a hand-set clock; exact
//! enforcement under threads; the bound on profiles; the model file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ratethrottle::clock::ManualClock;
use ratethrottle::store::MemoryStore;

use super::profile::{Profile, RateHistory, SLOTS};
use super::*;

const SEC: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * SEC;

fn adaptive_with(settings: AdaptiveSettings) -> (AdaptiveLimiter<MemoryStore>, ManualClock) {
    let clock = ManualClock::new();
    let limiter = Limiter::builder().clock(clock.clone()).build();
    (AdaptiveLimiter::new(limiter, settings).unwrap(), clock)
}

fn fresh() -> (AdaptiveLimiter<MemoryStore>, ManualClock) {
    adaptive_with(AdaptiveSettings::default())
}

fn check(adaptive: &AdaptiveLimiter<MemoryStore>, id: &str) -> AdaptiveDecision {
    adaptive
        .check_now(id, None)
        .expect("memory answers")
        .expect("a decision")
}

#[test]
fn settings_out_of_range_are_named() {
    type Spoil = fn(&mut AdaptiveSettings);
    let cases: [(Spoil, &str); 7] = [
        (|s| s.base_limit = 0, "base_limit"),
        (|s| s.window = Duration::ZERO, "window"),
        (|s| s.learning_rate = 0.0, "learning_rate"),
        (|s| s.learning_rate = 1.5, "learning_rate"),
        (|s| s.anomaly_threshold = f64::NAN, "anomaly_threshold"),
        (|s| s.max_multiplier = 0.25, "max_multiplier"),
        (|s| s.max_profiles = 10, "max_profiles"),
    ];
    for (spoil, key) in cases {
        let mut settings = AdaptiveSettings::default();
        spoil(&mut settings);
        let error = settings.validate().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("adaptive.{key} must be")),
            "{error}"
        );
    }
    // A sliding_window log cannot hold 3 × 50,000.
    let settings = AdaptiveSettings {
        base_limit: 50_000,
        strategy: ratethrottle::Strategy::SlidingWindow,
        ..AdaptiveSettings::default()
    };
    assert!(
        settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most 100000")
    );
}

#[test]
fn the_ema_follows_the_documented_example() {
    // ml_adaptive.rst: 100 req/min → mean 100; 105 → 100.5; 98 → "100.35", which is an
    // arithmetic slip of the page: 0.9 × 100.5 + 0.1 × 98 = 100.25.
    let settings = AdaptiveSettings::default();
    let mut profile = Profile::new(0);
    for (rate, mean) in [(100.0, 100.0), (105.0, 100.5), (98.0, 100.25)] {
        profile.observe(&settings, SEC, rate as u64, 1.0);
        assert!(
            (profile.mean_rate - mean).abs() < 1e-9,
            "{}",
            profile.mean_rate
        );
    }
    // The population spread of 100, 105, 98 (per minute, a 60 s window).
    let mean = (100.0 + 105.0 + 98.0) / 3.0;
    let exact = [100.0f64, 105.0, 98.0]
        .iter()
        .map(|r| (r - mean) * (r - mean))
        .sum::<f64>()
        / 3.0;
    assert!((profile.std_rate - exact.sqrt()).abs() < 1e-9);
}

#[test]
fn the_rate_history_keeps_the_last_hundred_exactly() {
    let mut history = RateHistory::default();
    for count in 0..250u64 {
        history.push(count % 7);
    }
    let kept: Vec<u64> = history.counts().collect();
    assert_eq!(kept.len(), 100);
    assert_eq!(kept, (150..250u64).map(|c| c % 7).collect::<Vec<_>>());
    let mean = kept.iter().sum::<u64>() as f64 / 100.0;
    let variance = kept.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / 100.0;
    assert!((history.std_counts() - variance.sqrt()).abs() < 1e-12);
}

#[test]
fn the_z_score_is_anomalous_only_above_the_threshold() {
    let mut profile = Profile::new(0);
    profile.mean_rate = 100.0;
    profile.std_rate = 10.0;
    // The documented example: 250 against 100 ± 10 is 15.
    assert!((profile.anomaly_score(250.0) - 15.0).abs() < 1e-12);
    assert_eq!(profile.anomaly_score(130.0), 3.0);
    let threshold = AdaptiveSettings::default().anomaly_threshold;
    assert!(
        profile.anomaly_score(130.0) <= threshold,
        "exactly 3 is not above 3"
    );
    assert!(profile.anomaly_score(130.000_001) > threshold);
    // No learned rate or no spread: no anomaly.
    profile.std_rate = 0.0;
    assert_eq!(profile.anomaly_score(10_000.0), 0.0);
    profile.std_rate = 10.0;
    profile.mean_rate = 0.0;
    assert_eq!(profile.anomaly_score(10_000.0), 0.0);
}

#[test]
fn trust_weighs_age_consistency_offences_and_good_days() {
    let mut profile = Profile::new(0);
    // New, no spread, clean: 0·0.3 + 1·0.4 + 1·0.3 = 0.7.
    assert!((profile.trust_at(0) - 0.7).abs() < 1e-12);
    // 15 days old, clean: age 0.5 → 0.85, plus 15 good days → 0.15 (capped at 0.2 later).
    assert!((profile.trust_at(15 * DAY) - (0.15 + 0.7 + 0.15)).abs() < 1e-12);
    assert_eq!(profile.trust_at(60 * DAY), 1.0, "clamped to 1");
    // Each violation or anomaly costs 0.03; ten of them, the whole 0.3.
    profile.violation_count = 2;
    profile.anomaly_count = 1;
    profile.last_offence = 1;
    assert!((profile.trust_at(1) - (0.7 - 0.09)).abs() < 1e-9);
    profile.violation_count = 50;
    assert!((profile.trust_at(1) - 0.4).abs() < 1e-9);
    // Consistency: cv = 1 → 0.5 of 0.4.
    profile.violation_count = 0;
    profile.anomaly_count = 0;
    profile.mean_rate = 10.0;
    profile.std_rate = 10.0;
    assert!((profile.trust_at(1) - (0.2 + 0.3)).abs() < 1e-9);
    // Good days count from the last offence, not the first request.
    profile.last_offence = 10 * DAY;
    assert_eq!(profile.good_behavior_days(12 * DAY + 1), 2);
}

#[test]
fn the_limit_follows_trust_anomaly_and_age_within_its_bounds() {
    let settings = AdaptiveSettings::default();
    let mut profile = Profile::new(0);
    // The module example: trust 0.5, new: 100 × 1.75 × 0.5 = 87.5 → 87.
    assert_eq!(profile.adjusted_limit(&settings, false, 0), 87);
    // Anomalous: × 0.3 → 26, below the floor of 50.
    assert_eq!(profile.adjusted_limit(&settings, true, 0), 50);
    // Trusted and 45 days old: the documented 0.9 → 1.95 × 100 (with max 2.0 in the docs'
    // example; here max 3.0: 0.5 + 0.9 × 2.5 = 2.75).
    profile.trust_score = 0.9;
    assert_eq!(profile.adjusted_limit(&settings, false, 45 * DAY), 275);
    let docs = AdaptiveSettings {
        max_multiplier: 2.0,
        ..AdaptiveSettings::default()
    };
    assert_eq!(profile.adjusted_limit(&docs, false, 45 * DAY), 185);
    profile.trust_score = 1.0;
    assert_eq!(
        profile.adjusted_limit(&settings, false, 45 * DAY),
        300,
        "the ceiling"
    );
    profile.trust_score = 0.0;
    assert_eq!(
        profile.adjusted_limit(&settings, false, 45 * DAY),
        50,
        "the floor"
    );
    let untrusting = AdaptiveSettings {
        trust_enabled: false,
        ..AdaptiveSettings::default()
    };
    assert_eq!(profile.adjusted_limit(&untrusting, false, 15 * DAY), 75);
    // A base of 1 never falls to 0.
    let tiny = AdaptiveSettings {
        base_limit: 1,
        ..AdaptiveSettings::default()
    };
    assert_eq!(profile.adjusted_limit(&tiny, true, 0), 1);
}

#[test]
fn each_check_admits_exactly_up_to_its_adjusted_limit() {
    let (adaptive, clock) = fresh();
    // All at one instant, so the sliding counter holds exactly the admissions so far.
    let mut admitted = 0;
    for _ in 0..200 {
        let decision = check(&adaptive, "c");
        assert_eq!(decision.status.limit, decision.adjusted_limit);
        assert_eq!(
            decision.allowed(),
            admitted < decision.adjusted_limit,
            "admitted {admitted} at a limit of {}",
            decision.adjusted_limit
        );
        if decision.allowed() {
            admitted += 1;
            assert_eq!(
                decision.status.remaining,
                decision.adjusted_limit - admitted
            );
            assert_eq!(
                (decision.reason, decision.retry_after_secs()),
                (Reason::Allowed, 0)
            );
        } else {
            assert!(decision.retry_after_secs() >= 1);
            assert_ne!(decision.reason, Reason::Allowed);
        }
    }
    let profile = adaptive.user_profile("c").unwrap();
    assert_eq!(profile.request_count, 200);
    assert_eq!(profile.violation_count, 200 - admitted);
    assert!(profile.trust_score < 0.5, "violations cost trust");
    // Two windows later the count is gone (sliding_counter weighs the previous window).
    clock.advance(Duration::from_secs(120));
    assert!(check(&adaptive, "c").allowed());
}

#[test]
fn eight_threads_admit_exactly_one_limit_on_a_shared_key() {
    // Trust fixed by hand and no learning effect on the limit: every check asks for 60.
    let settings = AdaptiveSettings {
        trust_enabled: false,
        min_multiplier: 0.6,
        max_multiplier: 0.6,
        ..AdaptiveSettings::default()
    };
    let (adaptive, _) = adaptive_with(settings);
    let adaptive = Arc::new(adaptive);
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (adaptive, admitted) = (Arc::clone(&adaptive), Arc::clone(&admitted));
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let decision = check(&adaptive, "shared");
                    assert_eq!(decision.adjusted_limit, 60);
                    admitted.fetch_add(u64::from(decision.allowed()), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 60);
    assert_eq!(adaptive.statistics().total_requests, 800);
}

#[test]
fn a_burst_after_steady_traffic_is_an_anomaly_and_lowers_the_limit() {
    let (adaptive, clock) = adaptive_with(AdaptiveSettings {
        base_limit: 1000,
        ..AdaptiveSettings::default()
    });
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    adaptive.on_anomaly(move |anomaly| record.lock().push(anomaly.clone()));
    adaptive.on_anomaly(|_| panic!("a buggy callback"));
    // One request every 6 s for 10 minutes: a steady 10 per minute.
    for _ in 0..100 {
        check(&adaptive, "steady");
        clock.advance(Duration::from_secs(6));
    }
    assert!(seen.lock().is_empty(), "steady traffic is normal");
    let calm = adaptive.user_profile("steady").unwrap();
    assert!((calm.mean_rate - 10.0).abs() < 1.5, "{}", calm.mean_rate);
    // Then 100 requests within a second.
    let mut anomalous = None;
    for _ in 0..100 {
        let decision = check(&adaptive, "steady");
        if decision.anomaly_score > 3.0 {
            anomalous.get_or_insert(decision);
        }
    }
    let decision = anomalous.expect("the burst is anomalous");
    // The anomalous limit: × 0.3, within the floor of 500.
    assert_eq!(decision.adjusted_limit, 500);
    let anomalies = seen.lock();
    assert!(!anomalies.is_empty());
    assert_eq!(anomalies[0].identifier, "steady");
    assert!(anomalies[0].current_rate > anomalies[0].expected_rate);
    let stats = adaptive.statistics();
    assert_eq!(stats.anomalies_detected, anomalies.len() as u64);
    assert_eq!(
        stats.callback_panics,
        anomalies.len() as u64,
        "each panic caught"
    );
    assert!(adaptive.user_profile("steady").unwrap().anomaly_count > 0);
}

#[test]
fn trust_changes_are_reported_and_adjustments_clamped() {
    let (adaptive, clock) = fresh();
    let changes = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = Arc::clone(&changes);
    adaptive.on_trust_change(move |id, trust| record.lock().push((id.to_owned(), trust)));
    adaptive.on_trust_change(|_, _| panic!("a buggy callback"));
    assert_eq!(adaptive.update_trust_score("nobody", 0.1), None);
    check(&adaptive, "u");
    assert_eq!(adaptive.update_trust_score("u", 0.9), Some(1.0));
    assert_eq!(adaptive.update_trust_score("u", -2.0), Some(0.0));
    assert_eq!(adaptive.update_trust_score("u", f64::NAN), Some(0.0));
    assert_eq!(changes.lock().len(), 3);
    // The tenth request recalculates trust: 0.0 → 0.7 (a steady rate, clean, new), reported.
    for _ in 0..9 {
        clock.advance(Duration::from_secs(61));
        check(&adaptive, "u");
    }
    let last = changes.lock().last().cloned().unwrap();
    assert_eq!(last.0, "u");
    assert!((last.1 - 0.7).abs() < 1e-4, "{last:?}");
    assert_eq!(adaptive.statistics().callback_panics, 4);
}

#[test]
fn profiles_are_bounded_under_a_flood_of_new_clients() {
    let (adaptive, clock) = adaptive_with(AdaptiveSettings {
        max_profiles: 1000,
        ..AdaptiveSettings::default()
    });
    for n in 0..20_000 {
        check(&adaptive, &format!("flood-{n}"));
        clock.advance(Duration::from_millis(1));
    }
    let stats = adaptive.statistics();
    assert!(stats.profiles <= 1000 + 64, "{}", stats.profiles);
    assert_eq!(stats.users_tracked, 20_000);
    assert!(
        adaptive.user_profile("flood-19999").is_some(),
        "the newest is kept"
    );
    assert!(adaptive.reset_user("flood-19999"));
    assert!(adaptive.user_profile("flood-19999").is_none());
}

#[test]
fn the_recent_count_covers_one_window_in_slots() {
    let (adaptive, clock) = fresh();
    let slot = Duration::from_secs(60 / SLOTS as u64);
    for _ in 0..10 {
        check(&adaptive, "s");
    }
    // The 11th sees 10 in the window: 10 per minute.
    check(&adaptive, "s");
    let rate = adaptive.user_profile("s").unwrap();
    assert!(rate.mean_rate > 0.0);
    // A whole window of slots later, none of the eleven is counted: a rate of 0.
    clock.advance(slot * (SLOTS as u32));
    let before = adaptive.user_profile("s").unwrap().mean_rate;
    check(&adaptive, "s");
    let after = adaptive.user_profile("s").unwrap().mean_rate;
    assert!(
        after < before,
        "a rate of 0 pulls the mean down: {before} → {after}"
    );
}

#[test]
fn a_model_round_trips_and_a_corrupt_one_changes_nothing() {
    let (adaptive, clock) = fresh();
    let mut metadata = Map::new();
    metadata.insert("plan".into(), Value::from("pro"));
    for n in 0..30 {
        adaptive
            .check_now("alice", Some(&metadata))
            .unwrap()
            .unwrap();
        if n % 3 == 0 {
            check(&adaptive, "bob");
        }
        clock.advance(Duration::from_secs(1));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models/adaptive_model.json");
    adaptive.export_model(&path).unwrap();
    let (restored, restored_clock) = fresh();
    restored_clock.set(adaptive.limiter().now());
    assert_eq!(restored.load_model(&path).unwrap(), 2);
    for id in ["alice", "bob"] {
        let (a, b) = (
            adaptive.user_profile(id).unwrap(),
            restored.user_profile(id).unwrap(),
        );
        assert_eq!(a.request_count, b.request_count);
        assert_eq!(a.trust_score, b.trust_score);
        assert_eq!(a.mean_rate, b.mean_rate);
        assert!((a.std_rate - b.std_rate).abs() < 1e-9);
        assert_eq!(a.current_limit, b.current_limit);
        assert_eq!(a.metadata, b.metadata);
        // Microseconds survive seconds as a double.
        assert!(a.first_seen.as_nanos().abs_diff(b.first_seen.as_nanos()) < 1_000);
    }
    assert_eq!(restored.statistics().total_requests, 40);
    // Corrupt files: an error naming the file, and nothing changes.
    let corrupt = [
        "{not json",
        r#"{"version": "9", "profiles": {}}"#,
        r#"{"version": "2", "profiles": {"x": {"identifier": "x"}}}"#,
        r#"{"version": "2", "profiles": {"x": {"identifier": "x", "first_seen": 1, "last_seen": 1,
            "request_count": 1, "mean_rate": 1, "std_rate": 1, "trust_score": 7,
            "violation_count": 0}}}"#,
    ];
    for text in corrupt {
        std::fs::write(&path, text).unwrap();
        let error = restored.load_model(&path).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("adaptive_model.json"), "{message}");
        assert!(message.contains("the model is unchanged"), "{message}");
        assert!(restored.user_profile("x").is_none());
        assert_eq!(restored.statistics().profiles, 2);
    }
    let missing = restored
        .load_model(dir.path().join("none.json"))
        .unwrap_err();
    assert!(matches!(missing, AdaptiveError::Model { .. }));
}

#[test]
fn the_originals_model_files_load() {
    // As ratethrottle 1.4.0's export_model writes them.
    let original = r#"{
      "version": "1.0",
      "timestamp": 1767225600.5,
      "config": {"base_limit": 100, "window": 60, "learning_rate": 0.1,
                 "anomaly_threshold": 3.0, "trust_enabled": true,
                 "min_multiplier": 0.5, "max_multiplier": 3.0},
      "profiles": {"user_1": {"identifier": "user_1", "first_seen": 1764633600.0,
        "last_seen": 1767225600.0, "request_count": 42, "mean_rate": 12.5,
        "std_rate": 2.0, "request_rates": [10.0, 12.0, 14.0], "trust_score": 0.8,
        "violation_count": 1, "good_behavior_days": 0, "metadata": {"tier": "pro"}}},
      "stats": {"total_requests": 42, "anomalies_detected": 0, "limits_adjusted": 42,
                "users_tracked": 1}
    }"#;
    let (adaptive, _) = fresh();
    assert_eq!(adaptive.load_model_json(original), Ok(1));
    let profile = adaptive.user_profile("user_1").unwrap();
    assert_eq!((profile.request_count, profile.violation_count), (42, 1));
    assert_eq!(profile.trust_score, 0.8);
    // 30 days old at the clock's start: full age; 0.5 + 0.8 × 2.5 = 2.5 → 250.
    assert_eq!(profile.current_limit, 250);
    assert_eq!(adaptive.statistics().users_tracked, 1);
}

#[test]
fn a_saver_loads_on_start_and_saves_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    let (first, _) = fresh();
    let first = Arc::new(first);
    let saver = first.persist(Persistence::new(&path)).unwrap();
    assert!(!path.exists(), "nothing saved before the stop");
    check(&first, "kept");
    saver.stop();
    assert!(path.exists());
    let (second, _) = fresh();
    let second = Arc::new(second);
    let saver = second.persist(Persistence::new(&path)).unwrap();
    assert!(second.user_profile("kept").is_some(), "loaded on start");
    drop(saver);
    // A corrupt file stops the start with an error.
    std::fs::write(&path, "garbage").unwrap();
    let (third, _) = fresh();
    assert!(Arc::new(third).persist(Persistence::new(&path)).is_err());
}

#[test]
fn summaries_round_trip_as_json_and_merge_across_processes() {
    let (one, _) = fresh();
    let (two, _) = fresh();
    for _ in 0..200 {
        check(&one, "hammer");
    }
    check(&one, "calm");
    check(&two, "other");
    let first = AdaptiveSummary::from_json(&one.summary_json(5)).unwrap();
    let direct = one.summary(5);
    assert_eq!(first.least_trusted, direct.least_trusted);
    assert!((first.mean_trust - direct.mean_trust).abs() < 1e-12);
    assert_eq!((first.profiles, first.total_requests), (2, 201));
    assert_eq!(first.least_trusted[0].identifier, "hammer", "{first:?}");
    assert!(first.least_trusted[0].violation_count > 0);
    let mut fleet = first.clone();
    fleet.merge(&two.summary(5), 2);
    assert_eq!((fleet.profiles, fleet.total_requests), (3, 202));
    assert_eq!(fleet.least_trusted.len(), 2);
    let mean = (first.mean_trust * 2.0 + 0.5) / 3.0;
    assert!((fleet.mean_trust - mean).abs() < 1e-12);
    assert_eq!(AdaptiveSummary::from_json("not json"), None);
}

#[test]
fn huge_identifiers_are_kept_hashed_and_a_removed_rule_is_named() {
    let (adaptive, _) = fresh();
    let huge = "x".repeat(1 << 20);
    check(&adaptive, &huge);
    check(&adaptive, &huge);
    assert_eq!(adaptive.user_profile(&huge).unwrap().request_count, 2);
    let model = adaptive.model_json();
    assert!(
        model.len() < 10_000,
        "the profile is kept under a 256-byte key"
    );
    assert!(adaptive.reset_user(&huge));
    adaptive.limiter().remove_rule("adaptive");
    let error = adaptive.check_now("c", None).unwrap().unwrap_err();
    assert!(
        error.to_string().contains("unknown rule \"adaptive\""),
        "{error}"
    );
}
