//! Recording, the queries, the exports re-read, and sanitizing.

use std::sync::Arc;

use super::*;

const SEC: u64 = 1_000_000_000;
/// 2026-01-15T10:30:00Z.
const T0: u64 = 1_768_473_000 * SEC;

fn at(secs: u64) -> Nanos {
    Nanos::from_nanos(T0 + secs * SEC)
}

fn analytics(max_history: usize, sanitize_data: bool) -> Analytics {
    Analytics::new(AnalyticsSettings {
        max_history,
        sanitize_data,
        ..AnalyticsSettings::default()
    })
    .unwrap()
}

fn violation(identifier: &str, secs: u64) -> ViolationRecord {
    let mut record = ViolationRecord::new(identifier, "api", at(secs));
    record.requests_made = 105;
    record.limit = 100;
    record.retry_after = 300;
    record.scope = "ip".to_owned();
    record
}

#[test]
fn zero_history_is_refused() {
    let error = Analytics::new(AnalyticsSettings {
        max_history: 0,
        ..AnalyticsSettings::default()
    })
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "analytics.max_history must be at least 1, got 0"
    );
}

#[test]
fn history_is_bounded_and_totals_are_not() {
    let analytics = analytics(100, true);
    for i in 0..250 {
        analytics.record_request(&format!("10.0.0.{}", i % 7), "api", i % 5 != 0, None, at(i));
        analytics.record_violation(violation("10.0.0.1", i));
    }
    let summary = analytics.summary();
    assert_eq!(
        (summary.total_requests, summary.total_violations),
        (250, 250)
    );
    assert_eq!(
        (summary.requests_stored, summary.violations_stored),
        (100, 100)
    );
    assert_eq!(summary.unique_identifiers, 7);
    assert_eq!(summary.violation_rate, 100.0);
    assert_eq!(summary.most_triggered_rule.as_deref(), Some("api"));
    // The oldest went first.
    assert_eq!(analytics.requests()[0].at, at(150));
}

#[test]
fn top_violators_count_within_a_window_most_first() {
    let analytics = analytics(1000, true);
    for (identifier, times) in [("a-client-1", 2), ("b-client-2", 5), ("c-client-3", 2)] {
        for t in 0..times {
            analytics.record_violation(violation(identifier, 10 * t));
        }
    }
    let now = at(3600);
    let top = analytics.top_violators(2, None, now);
    assert_eq!(
        top,
        [("b-client-2".to_owned(), 5), ("a-client-1".to_owned(), 2)]
    );
    // Within the last 3,575 s: only the violations at 30 s and after (b's 30 and 40).
    let recent = analytics.top_violators(10, Some(Duration::from_secs(3575)), now);
    assert_eq!(recent, [("b-client-2".to_owned(), 2)]);
    // A violation without a readable time counts in all-time queries only.
    let mut undated = violation("d-client-4", 0);
    undated.at = None;
    analytics.record_violation(undated);
    assert_eq!(analytics.top_violators(10, None, now).len(), 4);
    assert_eq!(
        analytics
            .top_violators(10, Some(Duration::from_secs(86_400)), now)
            .len(),
        3
    );
}

#[test]
fn the_timeline_counts_per_period_within_the_hours() {
    let analytics = analytics(1000, true);
    for secs in [0, 60, 1800, 3600, 7200 + 5] {
        analytics.record_violation(violation("x", secs));
    }
    let now = at(7200 + 10);
    let hourly = analytics.violation_timeline(24, Granularity::Hour, now);
    assert_eq!(
        hourly,
        [
            ("2026-01-15 10:00".to_owned(), 2),
            ("2026-01-15 11:00".to_owned(), 2),
            ("2026-01-15 12:00".to_owned(), 1)
        ]
    );
    // Within 2 h of 12:30:10: all but the one at 10:30:00.
    let by_minute = analytics.violation_timeline(2, Granularity::Minute, now);
    let labels: Vec<&str> = by_minute.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "2026-01-15 10:31",
            "2026-01-15 11:00",
            "2026-01-15 11:30",
            "2026-01-15 12:30"
        ]
    );
    let daily = analytics.violation_timeline(168, Granularity::from_name("day"), now);
    assert_eq!(daily, [("2026-01-15".to_owned(), 5)]);
}

#[test]
fn rule_statistics_and_clearing_old_data() {
    let analytics = analytics(1000, true);
    for i in 0..10 {
        analytics.record_request(
            &format!("user-{}", i % 3),
            "api",
            i < 8,
            None,
            at(i * 86_400),
        );
    }
    analytics.record_request("user-9", "login", false, None, at(9 * 86_400));
    let stats = analytics.rule_statistics();
    assert_eq!(stats[0].0, "api");
    let api = &stats[0].1;
    assert_eq!((api.total_requests, api.allowed, api.blocked), (10, 8, 2));
    assert_eq!((api.violation_rate, api.unique_identifiers), (20.0, 3));
    assert_eq!(
        (stats[1].0.as_str(), stats[1].1.violation_rate),
        ("login", 100.0)
    );
    // Keep the last 3 days before day 10: days 8 and 9 (three requests).
    assert_eq!(analytics.clear_old_data(3, at(10 * 86_400 + 1)), 8);
    assert_eq!(analytics.requests().len(), 3);
}

#[test]
fn sanitizing_masks_identifiers_and_redacts_secrets() {
    assert_eq!(sanitize_identifier("10.1.2.3"), "10.1.2.xxx");
    assert_eq!(sanitize_identifier("2001:db8::1"), "2001:db8::/64");
    assert_eq!(sanitize_identifier("fe80::1:2:3:4"), "fe80::/64");
    assert_eq!(sanitize_identifier("api-key-abcdef"), "api-...cdef");
    assert_eq!(sanitize_identifier("12345678"), "****");
    assert_eq!(sanitize_identifier("ünïcödé-ïd"), "ünïc...é-ïd");
    let metadata: Metadata = serde_json::from_str(
        r#"{"endpoint": "/x", "Password": "p", "X-Api_Key": "k", "headers": {"Authorization": "Bearer t"}, "session_id": 4}"#,
    )
    .unwrap();
    let clean = Value::Object(sanitize_metadata(metadata));
    assert_eq!(
        clean,
        json!({"endpoint": "/x", "Password": REDACTED, "X-Api_Key": REDACTED, "headers": {"Authorization": REDACTED}, "session_id": REDACTED})
    );
    // Recorded metadata is redacted as it comes in; off, it is kept as given.
    let on = analytics(10, true);
    let off = analytics(10, false);
    let token: Metadata = serde_json::from_str(r#"{"token": "t"}"#).unwrap();
    on.record_request("10.0.0.1", "api", true, Some(token.clone()), at(0));
    off.record_request("10.0.0.1", "api", true, Some(token), at(0));
    assert_eq!(
        on.requests()[0].metadata.as_deref().unwrap()["token"],
        REDACTED
    );
    assert_eq!(off.requests()[0].metadata.as_deref().unwrap()["token"], "t");
    assert_eq!(on.shown("10.0.0.1"), "10.0.0.xxx");
    assert_eq!(off.shown("10.0.0.1"), "10.0.0.1");
}

#[test]
fn ten_thousand_violations_export_to_csv_and_json_and_read_back() {
    let analytics = analytics(10_000, true);
    for i in 0..10_000u64 {
        let mut record = violation(&format!("10.0.{}.{}", i / 250, i % 250), i);
        record.rule_name = format!("rule \"{}\", with comma", i % 3);
        record.metadata.insert("password".into(), "hunter2".into());
        record
            .extra
            .insert("note".into(), format!("line one\nline {i}").into());
        analytics.record_violation(record);
        analytics.record_request("10.9.9.9", "api", i % 2 == 0, None, at(i));
    }
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("nested/violations.csv");
    assert_eq!(
        analytics
            .export_csv(&csv_path, DataType::Violations)
            .unwrap(),
        10_000
    );
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "blocked_until",
            "identifier",
            "limit",
            "note",
            "requests_made",
            "retry_after",
            "rule_name",
            "scope",
            "timestamp"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 10_000);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(&row[1], format!("10.0.{}.xxx", i / 250));
        assert_eq!(&row[3], format!("line one\nline {i}"));
        assert_eq!(&row[6], format!("rule \"{}\", with comma", i % 3));
        assert_eq!(&row[8], iso_timestamp(at(i as u64)));
    }
    assert!(
        !std::fs::read_to_string(&csv_path)
            .unwrap()
            .contains("hunter2")
    );

    let requests_path = dir.path().join("requests.csv");
    assert_eq!(
        analytics
            .export_csv(&requests_path, "requests".parse().unwrap())
            .unwrap(),
        10_000
    );
    let mut reader = csv::Reader::from_path(&requests_path).unwrap();
    let first = reader.records().next().unwrap().unwrap();
    assert_eq!(
        first.iter().collect::<Vec<_>>(),
        ["True", "10.9.9.xxx", "api", &iso_timestamp(at(0))]
    );

    let json_path = dir.path().join("report.json");
    analytics
        .export_report(&json_path, true, at(10_000))
        .unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(report["summary"]["total_violations"], 10_000);
    assert_eq!(report["summary"]["records_stored"]["violations"], 10_000);
    assert_eq!(report["configuration"]["data_sanitized"], true);
    assert_eq!(
        report["raw_data"]["violations"].as_array().unwrap().len(),
        500
    );
    assert_eq!(
        report["raw_data"]["requests"].as_array().unwrap().len(),
        1000
    );
    let last = &report["raw_data"]["violations"][499];
    assert_eq!(last["identifier"], "10.0.39.xxx");
    assert_eq!(last["metadata"]["password"], REDACTED);
    let top = &report["top_violators"][0];
    assert_eq!(
        (top["violations"].as_u64(), top["count"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(top["identifier"], "10.0.0.xxx");
    assert_eq!(report["rule_statistics"]["api"]["violation_rate"], 50.0);
    // 24 h timeline at 10,000 s after 10:30: hours 10, 11, 12 and 13.
    assert_eq!(
        report["violation_timeline_24h"].as_object().unwrap().len(),
        4
    );

    // Nothing held: no file, as in the original; a bad data type is named.
    let empty = analytics_empty();
    assert_eq!(
        empty
            .export_csv(&dir.path().join("none.csv"), DataType::Requests)
            .unwrap(),
        0
    );
    assert!(!dir.path().join("none.csv").exists());
    assert!(
        "bogus"
            .parse::<DataType>()
            .unwrap_err()
            .to_string()
            .contains("\"bogus\"")
    );
    // A path that cannot be written is an error naming it.
    let blocked = csv_path.join("under-a-file.json");
    let error = analytics.export_report(&blocked, false, at(0)).unwrap_err();
    assert!(error.to_string().contains("under-a-file.json"), "{error}");
}

fn analytics_empty() -> Analytics {
    analytics(10, true)
}

#[test]
fn eight_threads_record_concurrently() {
    let analytics = Arc::new(analytics(1_000, true));
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let analytics = Arc::clone(&analytics);
            scope.spawn(move || {
                for i in 0..10_000 {
                    let id = format!("10.{thread}.0.{}", i % 100);
                    analytics.record_request(&id, "api", i % 10 != 0, None, at(i));
                    if i % 10 == 0 {
                        analytics.record_violation(violation(&id, i));
                    }
                }
            });
        }
    });
    let summary = analytics.summary();
    assert_eq!(
        (summary.total_requests, summary.total_violations),
        (80_000, 8_000)
    );
    assert_eq!(
        (summary.requests_stored, summary.violations_stored),
        (1_000, 1_000)
    );
}

#[test]
fn many_rules_are_counted_through_the_index() {
    let analytics = analytics(10, true);
    for i in 0..30u64 {
        for _ in 0..=(i % 5) {
            analytics.record_request("x", &format!("rule-{i}"), true, None, at(i));
        }
    }
    // rule-4 is the first with five repeats.
    assert_eq!(
        analytics.summary().most_triggered_rule.as_deref(),
        Some("rule-4")
    );
    assert_eq!(analytics.summary().total_requests, 90);
}
