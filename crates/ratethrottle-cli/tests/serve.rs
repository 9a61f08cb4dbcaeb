//! `ratethrottle serve` as a process: it prints its address, answers, and stops cleanly on
//! SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

#[test]
fn serve_answers_on_the_printed_address_and_drains_on_sigterm() {
    let binary = assert_cmd::cargo::cargo_bin("ratethrottle");
    let mut child = Command::new(binary)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("RT_SERVE_TOKEN", "t0k3n")
        .env_remove("RT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("token required"), "{line}");
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let health = client
            .get(format!("http://{address}/healthcheck"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.text().await.unwrap(), "OK");
        // The built-in example rules: `login` admits 5 a minute.
        let mut allowed = 0;
        for _ in 0..7 {
            let body: Value = client
                .post(format!("http://{address}/v1/check"))
                .bearer_auth("t0k3n")
                .json(&json!({"rule": "login", "identifier": "alice"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            allowed += usize::from(body["allowed"] == true);
        }
        assert_eq!(allowed, 5);
        let refused = client
            .post(format!("http://{address}/v1/check"))
            .json(&json!({"rule": "login", "identifier": "bob"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    });
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
    let binary = assert_cmd::cargo::cargo_bin("ratethrottle");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(binary)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("RT_STORAGE_TYPE", "redis")
        .env("RT_REDIS_HOST", "127.0.0.1")
        .env("RT_REDIS_PORT", port.to_string())
        .env_remove("RT_CONFIG")
        .env_remove("RT_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body: Value = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{address}/v1/check"))
            .json(&json!({"rule": "api", "identifier": "x"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body["allowed"], true, "fail_open: {body}");
    assert_eq!(body["degraded"], true, "{body}");
}
