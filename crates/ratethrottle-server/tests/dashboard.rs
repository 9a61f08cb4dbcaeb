//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver).
//! The page shows the rules, updates after traffic, and manages the blacklist: an entry added
//! through the page is enforced, and refused without the token.
//!
//! Outside CI the test skips with a message when chromedriver is not installed (Debian:
//! `apt-get install chromium chromium-driver`); in CI it must run. With
//! `RT_DASHBOARD_SCREENSHOT=FILE.png` it also drives a simulated load for a few seconds and
//! saves a screenshot of the page under it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use ratethrottle::{Limiter, Rule};
use ratethrottle_server::{Server, ServerOptions};
use serde_json::{Value, json};

const TOKEN: &str = "t0k3n";

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Driver {
    async fn start() -> Option<Driver> {
        if !installed("chromedriver") {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromedriver is required in CI (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "skipped: chromedriver is not installed (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        // Waits for chromedriver to listen (a process starting, not a time window).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await;
            if let Ok(response) = ready {
                let status: Value = response.json().await.unwrap();
                if status["value"]["ready"] == true {
                    return Some(driver);
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"].get("error").is_none(), "{path}: {answer}");
        answer["value"].clone()
    }

    async fn session(&self) -> Session<'_> {
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("chromium");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1300"],
            },
        }}});
        let value = self
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await;
        Session {
            driver: self,
            id: value["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

impl Session<'_> {
    async fn post(&self, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver
            .call(reqwest::Method::POST, &path, Some(body))
            .await
    }

    async fn open(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await;
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Waits until `script` returns `expected` (the page updates each second).
    async fn until(&self, script: &str, expected: Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.script(script, json!([])).await;
            if last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{script}: waited for {expected}, last {last}");
    }

    async fn screenshot(&self, path: &str) {
        let url = format!("{}/session/{}/screenshot", self.driver.base, self.id);
        let answer: Value = self
            .driver
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer["value"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    async fn close(self) {
        let path = format!("/session/{}", self.id);
        self.driver.call(reqwest::Method::DELETE, &path, None).await;
    }
}

async fn check(address: SocketAddr, rule: &str, identifier: &str) -> Value {
    reqwest::Client::new()
        .post(format!("http://{address}/v1/check"))
        .bearer_auth(TOKEN)
        .json(&json!({"rule": rule, "identifier": identifier}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_rules_updates_live_and_manages_the_blacklist() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let limiter = Limiter::in_memory();
    for rule in [
        Rule::new("api", 5, Duration::from_secs(60)).block_duration(Duration::ZERO),
        Rule::new("login", 3, Duration::from_secs(300)),
    ] {
        limiter.add_rule(rule).unwrap();
    }
    let options = ServerOptions {
        http: Some("127.0.0.1:0".parse().unwrap()),
        token: Some(TOKEN.into()),
        ..ServerOptions::default()
    };
    let server = Server::bind(limiter.clone(), &options).await.unwrap();
    let address = server.http_address();
    tokio::spawn(server.run(std::future::pending()));

    let session = driver.session().await;
    session.open(&format!("http://{address}/dashboard")).await;
    let rules =
        "return [...document.querySelectorAll('#rules tr')].map(r => r.dataset.rule || null)";
    // The figures name clients: with a token set, the page needs it before they flow (the
    // first frame comes at once then).
    session
        .until(
            "return document.body.dataset.connection",
            json!("unauthorized"),
        )
        .await;
    let frames = "return Number(document.body.dataset.frames)";
    assert_eq!(session.script(frames, json!([])).await, json!(0));
    session.type_into("#token", TOKEN).await;
    session.click("#connect").await;
    session
        .until(
            "return Number(document.body.dataset.frames) > 0",
            json!(true),
        )
        .await;
    assert!(
        session
            .script(
                "return document.getElementById('source').textContent",
                json!([])
            )
            .await
            .as_str()
            .unwrap()
            .contains("changes need the token")
    );

    // Traffic: 8 checks of `api` (5 admitted, 3 violations) and 4 of `login` (3 admitted; the
    // violation blocks alice, so one).
    for _ in 0..8 {
        check(address, "api", "203.0.113.5").await;
    }
    for _ in 0..4 {
        check(address, "login", "alice").await;
    }
    session.until(rules, json!(["api", "login"])).await;
    session
        .until(
            "return document.getElementById('total-denied').textContent",
            json!("4"),
        )
        .await;
    session
        .until(
            "return document.getElementById('total-allowed').textContent",
            json!("8"),
        )
        .await;
    session
        .until(
            "return [...document.querySelectorAll('#rules tr[data-rule=api] td')].map(t => t.textContent).slice(5)",
            json!(["5", "3", "3"]),
        )
        .await;
    session
        .until(
            "return [...document.querySelectorAll('#top td')].map(t => t.textContent)",
            json!(["203.0.113.5", "3", "alice", "1"]),
        )
        .await;
    session
        .until(
            "return document.querySelectorAll('#violations tr').length",
            json!(4),
        )
        .await;

    // Blacklisting through the page without the token is refused.
    session.type_into("#token", "").await;
    session.type_into("#list-identifier", "198.51.100.66").await;
    session.type_into("#list-duration", "600").await;
    session.click("#list-submit").await;
    session
        .until(
            "return document.getElementById('list-status').dataset.status",
            json!("401"),
        )
        .await;
    assert_eq!(
        check(address, "api", "198.51.100.66").await["allowed"],
        true
    );

    // With the token it is added, enforced, and shown among the active blocks.
    session.type_into("#token", TOKEN).await;
    session.click("#list-submit").await;
    session
        .until(
            "return document.getElementById('list-status').dataset.status",
            json!("201"),
        )
        .await;
    let refused = check(address, "api", "198.51.100.66").await;
    assert_eq!(refused["verdict"], "blacklisted", "{refused}");
    session
        .until(
            "return [...document.querySelectorAll('#blocks tr[data-identifier]')].map(r => r.firstChild.textContent)",
            json!(["198.51.100.66"]),
        )
        .await;
    let expires = session
        .script(
            "return document.querySelector('#blocks tr[data-identifier] td.num').textContent",
            json!([]),
        )
        .await;
    assert!(
        ["10 min", "9 min"].contains(&expires.as_str().unwrap()),
        "{expires}"
    );

    // Removed through the page (with the token), it is enforced no more.
    session
        .click("#blocks button[data-identifier='198.51.100.66']")
        .await;
    session
        .until(
            "return document.getElementById('list-status').textContent",
            json!("removed 198.51.100.66"),
        )
        .await;
    assert_eq!(
        check(address, "login", "198.51.100.66").await["allowed"],
        true
    );

    if let Ok(path) = std::env::var("RT_DASHBOARD_SCREENSHOT") {
        limiter
            .add_rule(Rule::new("search", 3000, Duration::from_secs(60)))
            .unwrap();
        limiter
            .blacklist_add("203.0.113.66", Some(Duration::from_secs(900)))
            .await
            .unwrap();
        limiter
            .blacklist_add("198.51.100.7", Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        limiter.whitelist_add("10.0.0.1").await.unwrap();
        simulated_load(address, Duration::from_secs(30)).await;
        session.screenshot(&path).await;
    }
    session.close().await;
}

/// A load for screenshots: steady clients searching, a few on the API, two abusive ones.
async fn simulated_load(address: SocketAddr, length: Duration) {
    let end = Instant::now() + length;
    let mut round = 0u64;
    while Instant::now() < end {
        round += 1;
        let steady = 20 + 10 * (round % 7);
        let mut calls: Vec<(&str, String)> = (0..steady)
            .map(|client| ("search", format!("10.0.0.{}", client % 40)))
            .collect();
        calls.extend((0..4).map(|client| ("api", format!("10.0.1.{client}"))));
        for _ in 0..(2 + round % 5) {
            calls.push(("api", "203.0.113.9".into()));
            calls.push(("login", "mallory".into()));
        }
        futures_util::future::join_all(
            calls
                .iter()
                .map(|(rule, identifier)| check(address, rule, identifier)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
