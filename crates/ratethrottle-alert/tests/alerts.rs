//! Alerts delivered to real receivers on loopback: an HTTP server recording what Slack, a
//! webhook and PagerDuty would receive, and an SMTP server; the cooldown shared by processes
//! on one redis-server; a channel that hangs.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use ratethrottle::Limiter;
use ratethrottle::clock::{Clock, ManualClock};
use ratethrottle_alert::{
    Alert, AlertSettings, Dispatcher, Email, Outcome, PagerDuty, Reading, Severity, Slack, Webhook,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the receiver answers: `fail` requests get a 500 first; `hang` ones never answer
/// until `gate` is opened.
struct Receiver {
    got: Mutex<Vec<Received>>,
    fail: Mutex<usize>,
    gate: tokio::sync::Semaphore,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            got: Mutex::default(),
            fail: Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if path == "hang" {
        let _pass = receiver.gate.acquire().await.unwrap();
    }
    {
        let mut fail = receiver.fail.lock();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    receiver.got.lock().push(Received {
        path,
        headers,
        body,
    });
    StatusCode::OK
}

/// An HTTP receiver on loopback: what it got, and its address.
async fn http_receiver() -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, address)
}

/// A minimal SMTP server on loopback (no TLS): each message's envelope and data.
async fn smtp_receiver() -> (Arc<Mutex<Vec<String>>>, SocketAddr) {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let kept = Arc::clone(&messages);
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut message = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.to_ascii_uppercase();
                    let reply: &[u8] = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if verb.starts_with("MAIL") || verb.starts_with("RCPT") {
                        message.push_str(&line);
                        message.push('\n');
                        b"250 OK\r\n"
                    } else if verb == "DATA" {
                        write.write_all(b"354 go on\r\n").await.unwrap();
                        while let Ok(Some(data)) = lines.next_line().await {
                            if data == "." {
                                break;
                            }
                            message.push_str(&data);
                            message.push('\n');
                        }
                        kept.lock().push(std::mem::take(&mut message));
                        b"250 queued\r\n"
                    } else if verb == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (messages, address)
}

/// Settings sending to `http` (Slack, a signed webhook, PagerDuty) and `smtp`, with quick
/// retries.
fn settings(http: SocketAddr, smtp: Option<SocketAddr>) -> AlertSettings {
    let mut settings = AlertSettings::default();
    settings.slack = Some(Slack {
        webhook_url: format!("http://{http}/slack"),
        channel: "#ops".into(),
        username: "RateThrottle".into(),
    });
    settings.webhook = Some(Webhook {
        url: format!("http://{http}/webhook"),
        headers: vec![("x-team".into(), "edge".into())],
        secret: Some("s3cret".into()),
    });
    settings.pagerduty = Some(PagerDuty {
        routing_key: "R0UTING".into(),
        url: format!("http://{http}/pagerduty"),
    });
    settings.email = smtp.map(|smtp| Email {
        smtp_host: smtp.ip().to_string(),
        smtp_port: smtp.port(),
        use_tls: false,
        username: None,
        password: None,
        from_address: "alerts@example.com".into(),
        to_addresses: vec!["ops@example.com".into(), "oncall@example.com".into()],
    });
    settings.backoff = Duration::from_millis(10);
    settings.timeout = Duration::from_secs(5);
    settings
}

/// [`settings`] with the webhook only.
fn webhook_only(http: SocketAddr) -> AlertSettings {
    let mut settings = settings(http, None);
    settings.slack = None;
    settings.pagerduty = None;
    settings
}

/// A receiver, and a dispatcher sending to its webhook only.
async fn webhook_dispatcher() -> (Arc<Receiver>, Dispatcher, ManualClock) {
    let (receiver, http) = http_receiver().await;
    let (dispatcher, clock) = dispatcher(webhook_only(http));
    (receiver, dispatcher, clock)
}

fn dispatcher(settings: AlertSettings) -> (Dispatcher, ManualClock) {
    let clock = ManualClock::new();
    let limiter = Limiter::builder().clock(clock.clone()).build();
    (Dispatcher::new(settings, limiter).unwrap(), clock)
}

fn at(receiver: &Receiver, path: &str) -> Vec<Received> {
    receiver
        .got
        .lock()
        .iter()
        .filter(|r| r.path == path)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_reaches_slack_the_webhook_pagerduty_and_email() {
    let (receiver, http) = http_receiver().await;
    let (mail, smtp) = smtp_receiver().await;
    let (dispatcher, _clock) = dispatcher(settings(http, Some(smtp)));
    let reading = Reading::of(dispatcher.limiter()).with_block_rate(25.0);
    let raised = dispatcher.check_and_alert(reading).await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].0.event, "block_rate_exceeded");
    assert_eq!(
        (raised[0].0.severity, raised[0].1),
        (Severity::Critical, Outcome::Queued)
    );
    dispatcher.flush().await;
    assert_eq!(dispatcher.statistics().sent, 1);

    let slack = at(&receiver, "slack")[0].json();
    assert_eq!(slack["channel"], "#ops");
    assert_eq!(
        slack["text"],
        "🔴 RateThrottle [CRITICAL] block_rate_exceeded"
    );
    assert_eq!(slack["attachments"][0]["color"], "danger");
    assert_eq!(slack["attachments"][0]["fields"][2]["value"], "25");

    // The webhook gets the original's payload, signed.
    let webhook = &at(&receiver, "webhook")[0];
    let payload = webhook.json();
    for key in [
        "severity",
        "event",
        "rule",
        "value",
        "threshold",
        "timestamp",
        "icon",
        "title",
        "message",
        "details",
    ] {
        assert!(payload.get(key).is_some(), "{key} in {payload}");
    }
    assert_eq!(payload["threshold"], 20.0);
    assert_eq!(payload["details"]["block_rate_pct"], 25.0);
    assert_eq!(
        payload["message"],
        "block_rate_exceeded — value 25.00 exceeded critical threshold 20.00"
    );
    assert_eq!(webhook.headers["x-team"], "edge");
    let timestamp = webhook.headers["x-ratethrottle-timestamp"]
        .to_str()
        .unwrap();
    let signature = webhook.headers["x-ratethrottle-signature"]
        .to_str()
        .unwrap();
    assert_eq!(
        signature,
        ratethrottle_alert::sign("s3cret", timestamp, &webhook.body)
    );
    assert_ne!(
        signature,
        ratethrottle_alert::sign("other", timestamp, &webhook.body)
    );

    let pagerduty = at(&receiver, "pagerduty")[0].json();
    assert_eq!(pagerduty["routing_key"], "R0UTING");
    assert_eq!(pagerduty["event_action"], "trigger");
    assert_eq!(pagerduty["payload"]["severity"], "critical");
    assert_eq!(pagerduty["payload"]["source"], "ratethrottle");
    assert_eq!(pagerduty["payload"]["custom_details"]["value"], 25.0);

    let mail = mail.lock().clone();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(
        mail[0].contains("MAIL FROM:<alerts@example.com>"),
        "{}",
        mail[0]
    );
    assert!(
        mail[0].contains("RCPT TO:<oncall@example.com>"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("block_rate_exceeded"), "{}", mail[0]);
    assert!(mail[0].contains("Value     : 25.0000"), "{}", mail[0]);
}

#[tokio::test]
async fn each_event_and_severity_is_sent_once_per_cooldown() {
    let (receiver, dispatcher, clock) = webhook_dispatcher().await;
    let alert = || {
        Alert::new(
            Severity::Warning,
            "block_rate_exceeded",
            6.0,
            5.0,
            clock.now(),
        )
    };
    assert_eq!(dispatcher.send(alert()).await, Outcome::Queued);
    assert_eq!(dispatcher.send(alert()).await, Outcome::Suppressed);
    let critical = Alert::new(
        Severity::Critical,
        "block_rate_exceeded",
        30.0,
        20.0,
        clock.now(),
    );
    assert_eq!(
        dispatcher.send(critical).await,
        Outcome::Queued,
        "another severity"
    );
    clock.advance(Duration::from_secs(299));
    assert_eq!(dispatcher.send(alert()).await, Outcome::Suppressed);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        dispatcher.send(alert()).await,
        Outcome::Queued,
        "the cooldown ended"
    );
    dispatcher.flush().await;
    assert_eq!(at(&receiver, "webhook").len(), 3);
    let statistics = dispatcher.statistics();
    assert_eq!((statistics.sent, statistics.suppressed), (3, 2));
}

#[tokio::test]
async fn failures_are_retried_and_an_alert_no_channel_took_gives_its_cooldown_back() {
    let (receiver, dispatcher, clock) = webhook_dispatcher().await;
    let alert = || {
        Alert::new(
            Severity::Warning,
            "store_errors_exceeded",
            2.0,
            1.0,
            clock.now(),
        )
    };
    // Two failures, then the third attempt gets through.
    *receiver.fail.lock() = 2;
    assert_eq!(dispatcher.send(alert()).await, Outcome::Queued);
    dispatcher.flush().await;
    assert_eq!(at(&receiver, "webhook").len(), 1);
    assert_eq!(dispatcher.statistics().channel_failures, 0);

    // Three failures: given up, and the cooldown is given back.
    clock.advance(Duration::from_secs(300));
    *receiver.fail.lock() = 3;
    assert_eq!(dispatcher.send(alert()).await, Outcome::Queued);
    dispatcher.flush().await;
    let statistics = dispatcher.statistics();
    assert_eq!((statistics.failed, statistics.channel_failures), (1, 1));
    assert_eq!(
        dispatcher.send(alert()).await,
        Outcome::Queued,
        "not suppressed"
    );
    dispatcher.flush().await;
    assert_eq!(at(&receiver, "webhook").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_hangs_holds_up_neither_the_caller_nor_checks() {
    let (receiver, http) = http_receiver().await;
    let mut settings = webhook_only(http);
    settings.webhook.as_mut().unwrap().url = format!("http://{http}/hang");
    let (dispatcher, clock) = dispatcher(settings);
    let limiter = dispatcher.limiter().clone();
    limiter
        .add_rule(ratethrottle::Rule::new("api", 100, Duration::from_secs(60)))
        .unwrap();
    // If sending waited for the channel, this would not finish until the gate opens (the
    // outer timeout is only a guard against a hang).
    let sent = tokio::time::timeout(Duration::from_secs(30), async {
        let outcome = dispatcher
            .send(Alert::new(
                Severity::Critical,
                "ddos_score_exceeded",
                0.9,
                0.8,
                clock.now(),
            ))
            .await;
        let mut admitted = 0;
        for _ in 0..150 {
            admitted += usize::from(limiter.check("client", "api").await.unwrap().allowed);
        }
        (outcome, admitted)
    })
    .await
    .expect("send and the checks finished while the channel hung");
    assert_eq!(sent, (Outcome::Queued, 100));
    assert!(at(&receiver, "hang").is_empty(), "still hanging");
    receiver.gate.add_permits(100);
    dispatcher.flush().await;
    assert_eq!(at(&receiver, "hang").len(), 1);
}

#[tokio::test]
async fn readings_raise_the_original_events_and_the_stores() {
    let (dispatcher, clock) = dispatcher(AlertSettings::default());
    let start = Reading::of(dispatcher.limiter());
    let mut reading = start;
    reading.violations = 0;
    assert!(dispatcher.check_and_alert(reading).await.is_empty());
    clock.advance(Duration::from_secs(60));
    let mut reading = Reading::of(dispatcher.limiter()).with_violations(120);
    reading.store_errors = 90;
    reading.circuit_opens = 2;
    let reading = reading.with_ddos(&{
        let mut stats = ratethrottle_protect::ddos::DdosStatistics::default();
        stats.total_analyzed = 100;
        stats.suspicious_detected = 60;
        stats
    });
    let raised: Vec<(String, Severity, f64)> = dispatcher
        .check_and_alert(reading)
        .await
        .into_iter()
        .map(|(alert, outcome)| {
            assert_eq!(outcome, Outcome::Disabled, "no channel is set");
            (alert.event, alert.severity, alert.value)
        })
        .collect();
    assert_eq!(
        raised,
        [
            (
                "violations_per_minute_exceeded".into(),
                Severity::Warning,
                120.0
            ),
            ("ddos_score_exceeded".into(), Severity::Warning, 0.6),
            ("store_errors_exceeded".into(), Severity::Critical, 90.0),
            ("store_circuit_opened".into(), Severity::Critical, 2.0),
        ]
    );
}

const MEMBER: &str = "RT_ALERT_FLEET_MEMBER";

/// A worker process of the fleet test (runs only when the parent sets `MEMBER`): 8
/// dispatchers on one Redis send the same alert at once; prints how many were queued.
#[test]
fn fleet_member() {
    let Ok(spec) = std::env::var(MEMBER) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (redis, prefix, http) = (parts[0], parts[1], parts[2]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queued = runtime.block_on(async {
        let mut dispatchers = Vec::new();
        for _ in 0..8 {
            let config = ratethrottle_redis::RedisConfig::new(redis).key_prefix(prefix);
            let store = ratethrottle_redis::RedisStore::with_config(config)
                .await
                .unwrap();
            let limiter = Limiter::builder().store(store).build();
            let settings = webhook_only(http.parse().unwrap());
            dispatchers.push(Dispatcher::new(settings, limiter).unwrap());
        }
        let sends: Vec<_> = dispatchers
            .iter()
            .map(|dispatcher| {
                let dispatcher = dispatcher.clone();
                tokio::spawn(async move {
                    let alert = Alert::new(
                        Severity::Critical,
                        "block_rate_exceeded",
                        50.0,
                        20.0,
                        dispatcher.limiter().now(),
                    );
                    dispatcher.send(alert).await
                })
            })
            .collect();
        let mut queued = 0;
        for send in sends {
            queued += usize::from(send.await.unwrap() == Outcome::Queued);
        }
        for dispatcher in &dispatchers {
            dispatcher.flush().await;
        }
        queued
    });
    println!("QUEUED {queued}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_eight_dispatchers_send_one_alert_per_cooldown() {
    let Some(redis) = server::RedisServer::shared() else {
        return;
    };
    let (receiver, http) = http_receiver().await;
    let prefix = format!("alerts-{}:", std::process::id());
    let exe = std::env::current_exe().unwrap();
    for round in 0..2 {
        // Both processes at once.
        let workers: Vec<_> = (0..2)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "fleet_member",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(MEMBER, format!("{}|{prefix}|{http}", redis.url()))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut queued = 0;
        for worker in workers {
            let output = tokio::task::spawn_blocking(move || worker.wait_with_output().unwrap())
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            queued += stdout
                .lines()
                .find_map(|line| line.split("QUEUED ").nth(1))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no count from a worker: {stdout}"));
        }
        assert_eq!(queued, 1, "round {round}: 16 dispatchers, one alert");
        assert_eq!(at(&receiver, "webhook").len(), round + 1);
        // The cooldown lives in Redis for 300 s; ending it by hand, as its expiry would.
        let key = format!("{prefix}rt:alert_cd:block_rate_exceeded:critical");
        let ttl: i64 = server::redis_cli(redis.port, &["PTTL", &key])
            .trim()
            .parse()
            .unwrap();
        assert!((290_000..=300_000).contains(&ttl), "{key}: {ttl} ms left");
        server::redis_cli(redis.port, &["DEL", &key]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_snapshots_writes_json_and_alerts_on_what_it_reads() {
    use ratethrottle_alert::{Monitor, MonitorSettings};
    let (receiver, http) = http_receiver().await;
    let settings = webhook_only(http);
    let (dispatcher, _clock) = dispatcher(settings);
    let limiter = dispatcher.limiter().clone();
    limiter
        .add_rule(ratethrottle::Rule::new("api", 5, Duration::from_secs(60)))
        .unwrap();
    for _ in 0..10 {
        limiter.check("client", "api").await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut monitoring = MonitorSettings::default();
    monitoring.export_json = true;
    monitoring.export_path = dir.path().join("metrics").join("metrics.json");
    let monitor = Monitor::new(limiter, monitoring.clone()).alerts(dispatcher.clone());
    let snapshot = monitor.tick().await;
    assert_eq!(snapshot["limiter"]["block_rate"], 50.0);
    assert_eq!(snapshot["limiter"]["rules"]["api"]["denied"], 5);
    let written: Value =
        serde_json::from_slice(&std::fs::read(&monitoring.export_path).unwrap()).unwrap();
    assert_eq!(written, snapshot);
    dispatcher.flush().await;
    // Half the checks refused; one violation (the rule then blocks the client) within the
    // first second, counted as a second: 60 a minute.
    let mut events: Vec<(String, String)> = at(&receiver, "webhook")
        .iter()
        .map(|r| {
            let alert = r.json();
            (
                alert["event"].as_str().unwrap().to_owned(),
                alert["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("block_rate_exceeded".to_owned(), "critical".to_owned()),
            (
                "violations_per_minute_exceeded".to_owned(),
                "warning".to_owned()
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_started_monitor_ticks_every_interval_until_dropped() {
    use ratethrottle_alert::{Monitor, MonitorSettings};
    let dir = tempfile::tempdir().unwrap();
    let mut monitoring = MonitorSettings::default();
    monitoring.export_json = true;
    monitoring.log_metrics = false;
    monitoring.export_path = dir.path().join("metrics.json");
    let task = Monitor::new(Limiter::in_memory(), monitoring.clone()).start();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(
        !monitoring.export_path.exists(),
        "not before the first interval"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(monitoring.export_path.exists());
    drop(task);
    std::fs::remove_file(&monitoring.export_path).unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(!monitoring.export_path.exists(), "stopped");
}
