//! The binary end to end: exit codes, table and JSON output, config commands, errors.

use assert_cmd::Command;
use serde_json::Value;

/// The binary with a clean environment (no RT_* from the caller).
pub(crate) fn ratethrottle() -> Command {
    let mut command = Command::cargo_bin("ratethrottle").expect("the binary is built");
    for (name, _) in std::env::vars() {
        if name.starts_with("RT_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

pub(crate) fn json(output: &[u8]) -> Value {
    serde_json::from_slice(output).expect("valid JSON on stdout")
}

fn text(output: &[u8]) -> String {
    String::from_utf8_lossy(output).into_owned()
}

#[test]
fn test_runs_the_builtin_rules_and_exits_1_when_denied() {
    let output = ratethrottle()
        .args(["test", "--rule", "api", "--requests", "12"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("rule api: 10 per 60s, sliding_counter"),
        "{stdout}"
    );
    assert!(stdout.contains("10  allowed           0  -"), "{stdout}");
    assert!(stdout.contains("11  DENIED"), "{stdout}");
    assert!(stdout.contains("summary: 10 allowed, 2 denied"), "{stdout}");

    let output = ratethrottle()
        .args([
            "test",
            "--rule",
            "api",
            "--requests",
            "10",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "all allowed");
    let report = json(&output.stdout);
    assert_eq!(report["allowed"], 10);
    assert_eq!(report["denied"], 0);
    assert_eq!(report["requests"][9]["remaining"], 0);
    assert_eq!(report["next_allowed"], false);
    assert!(report["next_retry_after"].as_f64().unwrap() > 0.0);
}

#[test]
fn test_with_cost_and_delay() {
    let output = ratethrottle()
        .args([
            "test",
            "--rule",
            "search",
            "--requests",
            "3",
            "--cost",
            "8",
            "--delay",
            "0.01",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let report = json(&output.stdout);
    // Burst 20: 8 + 8 fit, the third 8 does not (a few ms refill only).
    assert_eq!(report["allowed"], 2);
    assert_eq!(report["denied"], 1);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn usage_and_unknown_rules_exit_2() {
    let output = ratethrottle()
        .args(["test", "--rule", "apii"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr).trim(),
        "error: unknown rule \"apii\"; known rules: api, login, search, upload"
    );
    let output = ratethrottle().args(["test"]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap reports usage errors with 2"
    );
    let output = ratethrottle()
        .args(["test", "--rule", "api", "--delay", "-1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let output = ratethrottle().arg("--help").output().unwrap();
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("ratethrottle test --rule api --requests 12"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("Exit codes: 0 ok, 1 denied or failed check, 2 usage or configuration error")
    );
}

#[test]
fn a_broken_config_file_exits_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "rules:\n  - name: api\n    rate: 100/fortnight\n").unwrap();
    let output = ratethrottle()
        .args(["--config", path.to_str().unwrap(), "test", "--rule", "api"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:3:11: rules[0].rate: invalid rate \"100/fortnight\"",
            path.display()
        )),
        "{stderr}"
    );
    // RT_CONFIG works like --config.
    let output = ratethrottle()
        .env("RT_CONFIG", &path)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn config_validate_init_export_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ratethrottle.yaml");
    let file_arg = file.to_str().unwrap();
    ratethrottle()
        .args(["config", "init", file_arg])
        .assert()
        .success();
    let output = ratethrottle()
        .args(["config", "init", file_arg])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "does not overwrite");
    assert!(text(&output.stderr).contains("pass --force"));

    let output = ratethrottle()
        .args(["config", "validate", file_arg, "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let report = json(&output.stdout);
    assert_eq!(report["valid"], true);
    assert_eq!(
        report["rules"],
        serde_json::json!(["api", "search", "login", "upload"])
    );

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "storage:\n  tpye: redis\n").unwrap();
    let output = ratethrottle()
        .args(["config", "validate", broken.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("broken.yaml:2:3: storage: unknown field `tpye`"));
    assert!(text(&output.stderr).contains("(did you mean `type`?)"));

    // show: the file + RT_* variables, secrets masked.
    let output = ratethrottle()
        .env("RT_REDIS_PASSWORD", "hunter2")
        .env("RT_LOG_LEVEL", "ERROR")
        .args(["--config", file_arg, "config", "show"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let shown = text(&output.stdout);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("password: '********'"), "{shown}");
    assert!(shown.contains("log_level: ERROR"), "{shown}");
    let output = ratethrottle()
        .env("RT_REDIS_PASSWORD", "hunter2")
        .args(["--config", file_arg, "config", "show", "--format", "json"])
        .output()
        .unwrap();
    let shown = json(&output.stdout);
    assert_eq!(shown["storage"]["password"], "********");
    assert_eq!(shown["rules"][0]["name"], "api");

    let exported = dir.path().join("exported.yaml");
    ratethrottle()
        .args([
            "--config",
            file_arg,
            "config",
            "export",
            exported.to_str().unwrap(),
        ])
        .assert()
        .success();
    ratethrottle()
        .args(["config", "validate", exported.to_str().unwrap()])
        .assert()
        .success();
}

#[test]
fn fleet_commands_explain_what_they_need_on_memory() {
    for args in [
        vec!["manage", "whitelist", "add", "10.0.0.1"],
        vec!["metrics"],
        vec!["stats"],
        vec!["monitor"],
    ] {
        let output = ratethrottle().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("storage.type"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("RT_STORAGE_TYPE=redis"),
            "{args:?}: {stderr}"
        );
    }
}

/// One screen of `monitor --demo` with the environment `env`.
fn demo_screen(env: &[(&str, &str)]) -> String {
    let output = ratethrottle()
        .envs(env.iter().copied())
        .args([
            "monitor",
            "--demo",
            "--once",
            "--settle",
            "1.2",
            "--interval",
            "0.3",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// Issue 20: with the adaptive limiter enabled, the demo's clients ask it too, and the screen
/// shows its trust figures.
#[test]
fn monitor_demo_shows_the_adaptive_limiters_trust() {
    let screen = demo_screen(&[
        ("RT_ADAPTIVE_ENABLED", "true"),
        ("RT_ADAPTIVE_BASE_LIMIT", "20"),
    ]);
    for part in [
        "adaptive: least trusted",
        "profiles · mean trust",
        "trust · limit",
    ] {
        assert!(screen.contains(part), "{part} missing:\n{screen}");
    }
}

#[test]
fn monitor_demo_prints_a_screen() {
    let screen = demo_screen(&[]);
    for part in [
        "ratethrottle monitor",
        "allowed/s",
        "denied/s",
        "rules",
        "top limited identifiers",
        "recent violations",
        "api",
        "203.0.113.7",
    ] {
        assert!(screen.contains(part), "{part} missing:\n{screen}");
    }
}

#[test]
fn bench_measures_and_reports_json() {
    let output = ratethrottle()
        .args([
            "bench",
            "--strategy",
            "gcra",
            "--keys",
            "100",
            "--threads",
            "2",
            "--duration",
            "0.3",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = json(&output.stdout);
    assert_eq!(report["strategy"], "gcra");
    assert!(report["checks"].as_u64().unwrap() > 0);
    assert_eq!(report["errors"], 0);
    let output = ratethrottle()
        .args(["bench", "--strategy", "fastest"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Issue 15 (5, 7): rows stream as they are decided, and a reader that goes away ends the
/// command quietly (exit 0, nothing on stderr) instead of a panic.
#[test]
fn rows_stream_and_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    let binary = assert_cmd::cargo::cargo_bin("ratethrottle");
    for format in ["table", "json"] {
        let mut child = std::process::Command::new(&binary)
            .args([
                "test",
                "--rule",
                "api",
                "--requests",
                "1000000",
                "--format",
                format,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..5 {
            lines.next().unwrap().unwrap();
        }
        drop(lines);
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{format}");
        assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    }
}

/// Issue 15 (7): a full disk is a clear error with exit 1.
#[test]
fn a_full_disk_is_a_clear_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("skipped: no /dev/full here");
        return;
    };
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("ratethrottle"))
        .args(["config", "show"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot write to standard output: No space left"),
        "{stderr}"
    );
}

/// Issue 15 (4, 14): numbers that cannot work are refused with a message that says why.
#[test]
fn impossible_numbers_are_refused_clearly() {
    let output = ratethrottle()
        .args(["bench", "--keys", "1000000000000"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("would need about"),
        "{}",
        text(&output.stderr)
    );
    let output = ratethrottle()
        .args(["test", "--rule", "api", "--delay", "1e30"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: --delay must be from 0 to 86400 seconds, got 1000000000000000000000000000000\n"
    );
    // Each cause of an error is named once.
    let output = ratethrottle()
        .args(["test", "--rule", "api"])
        .env("RT_STORAGE_TYPE", "redis")
        .env("RT_REDIS_URL", "redis://127.0.0.1:1/0")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    let config = ratethrottle()
        .args(["--config", "/dev/zero", "config", "show"])
        .output()
        .unwrap();
    assert_eq!(config.status.code(), Some(2));
    assert!(text(&config.stderr).contains("larger than 1048576 bytes"));
}

#[test]
fn protect_test_replays_attacks_and_traffic_files() {
    let output = ratethrottle()
        .args([
            "--format",
            "json",
            "protect",
            "test",
            "--attack",
            "flood",
            "--seconds",
            "60",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json(&output.stdout);
    assert_eq!(report["blocked"], serde_json::json!(["203.0.113.66"]));
    let attacker = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["identifier"] == "203.0.113.66")
        .unwrap();
    assert_eq!(attacker["blocks"][0]["offence"], 1);
    assert_eq!(attacker["blocks"][0]["seconds"], 3600);

    // A file: a client blocked twice, the second block twice as long (escalation), and a
    // browser left alone.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ddos.yaml");
    std::fs::write(
        &config,
        "ddos_protection:\n  enabled: true\n  suspicious_threshold: 0.1\n  block_duration: 10\n",
    )
    .unwrap();
    let mut csv = String::from("timestamp,identifier,endpoint,user_agent\n");
    for i in 0..40 {
        csv.push_str(&format!("{},10.0.0.1,/login,\n", 1_700_000_000 + i));
        csv.push_str(&format!("{},10.0.0.2,/,Mozilla/5.0\n", 1_700_000_000 + i));
    }
    let traffic = dir.path().join("traffic.csv");
    std::fs::write(&traffic, csv).unwrap();
    let output = ratethrottle()
        .args(["--format", "json", "--config"])
        .arg(&config)
        .args(["protect", "test", "--traffic"])
        .arg(&traffic)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json(&output.stdout);
    assert_eq!(report["blocked"], serde_json::json!(["10.0.0.1"]));
    let blocks = &report["clients"][0]["blocks"];
    assert_eq!(blocks[0]["seconds"], 10);
    assert_eq!(blocks[1]["seconds"], 20);

    // A bad row is named by its line.
    std::fs::write(&traffic, "timestamp,identifier,endpoint\n1,a,/\nsoon,b,/\n").unwrap();
    let output = ratethrottle()
        .args(["protect", "test", "--traffic"])
        .arg(&traffic)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr)
            .contains("traffic.csv:3: timestamp must be Unix seconds, got \"soon\""),
        "{}",
        text(&output.stderr)
    );
}
