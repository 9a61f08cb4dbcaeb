//! `ratethrottle serve` as a process: it prints its address, answers, stops cleanly on
//! SIGTERM, and starts while Redis is down.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// `ratethrottle serve` on a free port with `env`, and the HTTP address it printed (with
/// the whole line).
fn spawn_serve(env: &[(&str, &str)]) -> (Child, String, String) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("ratethrottle"));
    command
        .args(["serve", "--http", "127.0.0.1:0"])
        .env_remove("RT_CONFIG")
        .env_remove("RT_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (child, address, line)
}

/// A check of `rule` for `identifier` at `address`, with `token` when given.
fn check(address: &str, rule: &str, identifier: &str, token: Option<&str>) -> (u16, Value) {
    ask(
        address,
        &json!({"rule": rule, "identifier": identifier}),
        token,
    )
}

/// A check with `body` at `address`, with `token` when given.
fn ask(address: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("http://{address}/v1/check"))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

#[test]
fn serve_answers_on_the_printed_address_and_drains_on_sigterm() {
    let (mut child, address, line) = spawn_serve(&[("RT_SERVE_TOKEN", "t0k3n")]);
    assert!(line.contains("token required"), "{line}");
    // The built-in example rules: `login` admits 5 a minute.
    let allowed = (0..7)
        .filter(|_| check(&address, "login", "alice", Some("t0k3n")).1["allowed"] == true)
        .count();
    assert_eq!(allowed, 5);
    assert_eq!(check(&address, "login", "bob", None).0, 401);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("ratethrottle serve: stopped"), "{stderr}");
}

#[test]
fn serve_starts_while_redis_is_down_and_answers_by_the_fault_policy() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let (mut child, address, _) = spawn_serve(&[
        ("RT_STORAGE_TYPE", "redis"),
        ("RT_REDIS_HOST", "127.0.0.1"),
        ("RT_REDIS_PORT", &port),
    ]);
    let (_, body) = check(&address, "api", "x", None);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body["allowed"], true, "fail_open: {body}");
    assert_eq!(body["degraded"], true, "{body}");
}

#[test]
fn serve_runs_the_configured_ddos_protection_and_adaptive_limiter() {
    let (mut child, address, _) = spawn_serve(&[
        ("RT_ADAPTIVE_ENABLED", "true"),
        ("RT_ADAPTIVE_BASE_LIMIT", "10"),
        ("RT_DDOS_ENABLED", "true"),
    ]);
    let (_, body) = check(&address, "adaptive", "new", None);
    // Scored: it describes a client's request.
    let request = json!({"rule": "api", "identifier": "203.0.113.9", "endpoint": "/", "user_agent": "curl/8"});
    assert_eq!(ask(&address, &request, None).0, 200);
    let metrics = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let url = format!("http://{address}/metrics");
            reqwest::get(url).await.unwrap().text().await.unwrap()
        });
    let _ = child.kill();
    let _ = child.wait();
    // A new client's learned limit: 10 × 1.75 × 0.5.
    assert_eq!(
        (body["allowed"].as_bool(), body["limit"].as_u64()),
        (Some(true), Some(8)),
        "{body}"
    );
    for line in [
        "ratethrottle_adaptive_checks_total 1",
        "ratethrottle_adaptive_profiles 1.0",
        "ratethrottle_ddos_analyzed_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

#[test]
fn serve_refuses_a_bad_rate_limit_service_file_naming_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.yaml");
    std::fs::write(
        &path,
        "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: fortnight, requests_per_unit: 5}\n",
    )
    .unwrap();
    let output = Command::new(assert_cmd::cargo::cargo_bin("ratethrottle"))
        .args(["serve", "--http", "127.0.0.1:0", "--rls"])
        .arg(&path)
        .env_remove("RT_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("edge.yaml:4"), "{stderr}");
    assert!(stderr.contains("fortnight"), "{stderr}");
}
