//! The fleet commands against a real redis-server: lists shared through Redis, metrics and
//! stats of what `test` runs published, the monitor reading them.

use crate::cli::{json, ratethrottle};
use crate::server::RedisServer;

/// A config file on the shared test server under a prefix of its own.
fn redis_config(dir: &tempfile::TempDir, name: &str) -> Option<std::path::PathBuf> {
    let server = RedisServer::shared()?;
    let path = dir.path().join("fleet.yaml");
    let yaml = format!(
        "storage:\n  type: redis\n  url: redis://127.0.0.1:{}/0\n  key_prefix: \"cli-{name}-{}:\"\n  timeout: 2\nrules:\n  - name: api\n    limit: 3\n    window: 60\n    block_duration: 0\n",
        server.port,
        std::process::id()
    );
    std::fs::write(&path, yaml).unwrap();
    Some(path)
}

/// Runs the CLI with `--config config` before `args`.
fn run_with(config: &str, args: &[&str]) -> std::process::Output {
    ratethrottle()
        .args(["--config", config])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn lists_metrics_stats_and_monitor_share_one_redis() {
    let dir = tempfile::tempdir().unwrap();
    let Some(config) = redis_config(&dir, "fleet") else {
        return;
    };
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| run_with(config, args);

    // A list change made by one command is seen by the next process.
    assert!(
        run(&[
            "manage",
            "blacklist",
            "add",
            "203.0.113.9",
            "--duration",
            "600"
        ])
        .status
        .success()
    );
    let listed = json(&run(&["manage", "blacklist", "list", "--format", "json"]).stdout);
    assert_eq!(listed["entries"][0]["identifier"], "203.0.113.9");
    assert!(listed["entries"][0]["expires_in"].as_f64().unwrap() > 590.0);
    let blocked = run(&[
        "test",
        "--rule",
        "api",
        "--identifier",
        "203.0.113.9",
        "--requests",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(blocked.status.code(), Some(1));
    assert_eq!(json(&blocked.stdout)["requests"][0]["blocked"], true);
    assert!(
        run(&["manage", "blacklist", "remove", "203.0.113.9"])
            .status
            .success()
    );

    // Two "processes" share the limit of 3, and publish what they did.
    let [first, second] = [(); 2].map(|()| {
        let args = [
            "test",
            "--rule",
            "api",
            "--identifier",
            "u1",
            "--requests",
            "2",
        ];
        json(&run(&[&args[..], &["--format", "json"]].concat()).stdout)
    });
    assert_eq!(
        (first["allowed"].as_u64(), second["allowed"].as_u64()),
        (Some(2), Some(1))
    );

    let metrics = json(&run(&["metrics", "--format", "json"]).stdout);
    // 1 blacklisted + 4 checks of u1.
    assert_eq!(metrics["total_requests"], 5);
    assert_eq!(metrics["allowed_requests"], 3);
    assert_eq!(metrics["blocked_requests"], 2);
    assert_eq!(metrics["rules"][0]["rule"], "api");
    let only_api = run(&["metrics", "--rule", "api"]);
    assert!(only_api.status.success());
    let missing = run(&["metrics", "--rule", "nope"]);
    assert_eq!(missing.status.code(), Some(1));

    // A DDoS block with its second offence, as DDoS protection leaves them in the store.
    assert!(
        run(&[
            "manage",
            "blacklist",
            "add",
            "198.51.100.66",
            "--duration",
            "7200"
        ])
        .status
        .success()
    );
    let server = RedisServer::shared().unwrap();
    let offences = format!(
        "cli-fleet-{}:ddos:offences:198.51.100.66",
        std::process::id()
    );
    crate::server::redis_cli(server.port, &["set", &offences, "2"]);

    // An adaptive limiter's figures, as a live process reports them.
    let process = "web-7:4242";
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let telemetry = format!("cli-fleet-{}:{{telemetry}}", std::process::id());
    let summary = r#"{"base_limit":100,"profiles":3,"total_requests":250,"anomalies_detected":4,"low_trust":1,"mean_trust":0.55,"least_trusted":[{"identifier":"203.0.113.9","trust_score":0.2,"anomaly_count":4,"violation_count":30,"current_limit":50}]}"#;
    crate::server::redis_cli(
        server.port,
        &["zadd", &format!("{telemetry}:processes"), &now_ms, process],
    );
    crate::server::redis_cli(
        server.port,
        &[
            "hset",
            &format!("{telemetry}:reports"),
            &format!("adaptive|{process}"),
            summary,
        ],
    );

    let csv = dir.path().join("report.csv");
    let stats = run(&[
        "stats",
        "--export",
        csv.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let report = json(&stats.stdout);
    assert_eq!(report["top_limited"][0]["identifier"], "u1");
    assert_eq!(report["recent_violations"][0]["rule"], "api");
    let blocked = &report["blocked_clients"][0];
    assert_eq!(blocked["identifier"], "198.51.100.66");
    assert_eq!(blocked["ddos_offences"], 2);
    assert!(blocked["expires_in"].as_u64().unwrap() > 7100);
    let csv = std::fs::read_to_string(csv).unwrap();
    assert!(
        csv.starts_with(
            "kind,key,allowed,denied,violations,detail\ntotal,,3,2,1,\nrule,api,3,2,1,"
        ),
        "{csv}"
    );
    assert!(csv.contains("\nidentifier,u1,,,1,\n"), "{csv}");
    assert!(
        csv.contains("\nblocked,198.51.100.66,,,,expires_in=71"),
        "{csv}"
    );
    assert!(csv.contains("ddos_offences=2\n"), "{csv}");
    assert_eq!(report["adaptive"]["profiles"], 3);
    assert_eq!(
        report["adaptive"]["least_trusted"][0]["identifier"],
        "203.0.113.9"
    );
    assert!(
        csv.contains("\ntrust,203.0.113.9,,,30,trust=0.2000 limit=50 anomalies=4\n"),
        "{csv}"
    );
    let table = run(&["stats"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("adaptive limiter (each process learns its own clients): 3 profiles"),
        "{table}"
    );
    let json_file = dir.path().join("report.json");
    assert!(
        run(&["stats", "--export", json_file.to_str().unwrap()])
            .status
            .success()
    );
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json_file).unwrap()).unwrap();
    assert_eq!(exported["total_requests"], 5);
    let wrong = run(&["stats", "--export", "report.txt"]);
    assert_eq!(wrong.status.code(), Some(2));

    let screen = run(&["monitor", "--once", "--settle", "0.1", "--interval", "0.1"]);
    assert!(screen.status.success());
    let screen = String::from_utf8_lossy(&screen.stdout);
    assert!(
        screen.contains("5 checks · 3 allowed · 2 denied (40.0%)"),
        "{screen}"
    );
    assert!(
        screen.contains("3 per 60s, sliding_counter, ip"),
        "{screen}"
    );
    assert!(screen.contains("u1"), "{screen}");
}

#[test]
fn an_unreachable_redis_fails_with_exit_1() {
    let output = ratethrottle()
        .env("RT_STORAGE_TYPE", "redis")
        .env("RT_REDIS_PORT", "1")
        .args(["manage", "whitelist", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot set up the redis store:"),
        "{stderr}"
    );
}

/// Issue 18: the original 1.4 spellings (its documentation's and its own parser's) run as
/// aliases of ours, with the same exit codes.
#[test]
fn the_originals_spellings_are_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let Some(config) = redis_config(&dir, "legacy") else {
        return;
    };
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| run_with(config, args);
    assert!(run(&["--whitelist-add", "10.0.0.1"]).status.success());
    assert!(
        run(&[
            "manage",
            "--blacklist-add",
            "203.0.113.9",
            "--duration",
            "60"
        ])
        .status
        .success()
    );
    let all = json(&run(&["--format", "json", "--list-all"]).stdout);
    assert_eq!(all["whitelist"][0]["identifier"], "10.0.0.1");
    assert_eq!(all["blacklist"][0]["identifier"], "203.0.113.9");
    let same = json(&run(&["manage", "--list-all", "--format", "json"]).stdout);
    assert_eq!(same["whitelist"], all["whitelist"]);
    assert_eq!(same["blacklist"][0]["identifier"], "203.0.113.9");
    assert!(run(&["--whitelist-remove", "10.0.0.1"]).status.success());
    assert!(
        run(&["manage", "--blacklist-remove", "203.0.113.9"])
            .status
            .success()
    );
    let empty = json(&run(&["--format", "json", "manage", "all", "list"]).stdout);
    assert_eq!(empty["whitelist"], serde_json::json!([]));
    // Configuration commands, as documented and as 1.4.0's parser spells them.
    assert!(run(&["config", "--show"]).status.success());
    assert!(run(&["config", "--validate"]).status.success());
    assert!(run(&["config", "--validate", config]).status.success());
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "rules: [").unwrap();
    assert_eq!(
        run(&["config", "--validate", broken.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    let export = dir.path().join("out.yaml");
    assert!(
        run(&["config", "--export", export.to_str().unwrap()])
            .status
            .success()
    );
    assert!(export.exists());
    assert!(run(&["-v", "stats", "--raw-data"]).status.success());
    // A mistake in an alias is a usage error, as in ours.
    assert_eq!(run(&["--whitelist-add"]).status.code(), Some(2));
    assert_eq!(
        run(&["manage", "--list-all", "extra"]).status.code(),
        Some(2)
    );
}
