//! The Redis store under a failing Redis, for minutes: `scripts/soak.sh` runs it.
//!
//! `soak run [--seconds N] [--workers N]` starts a `redis-server` of its own (`appendonly yes`,
//! `appendfsync always`, so Redis itself loses nothing), starts the workers (this program,
//! `soak worker`), kills and restarts Redis every 30 s and pauses it once for 5 s (`SIGSTOP`),
//! keeps the last minute calm, then reads what the workers report and checks:
//!
//! - no list entry lost: every list change a worker was told succeeded is in Redis at the end;
//! - no circuit stuck open: the last 20 s have no degraded answer;
//! - p99.9 check latency at most the per-call timeout plus 10 ms;
//! - every degraded period logged once: starts and ends alternate, as many of each;
//! - resident memory flat (±10 %) after a minute of warm-up;
//! - exact limits in every calm second: a shared limit of 100 per second admits exactly 100
//!   across all workers in every second that no fault came near.
//!
//! Each worker mixes checks of four strategies on random identifiers with checks of the shared
//! limit (4× over it) and list changes, from 8 concurrent tasks.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratethrottle::store::ListKind;
use ratethrottle::{Limiter, Rule, Strategy};
use ratethrottle_redis::{RedisConfig, RedisStore, TimeSource};

/// The per-call timeout the workers configure.
const TIMEOUT: Duration = Duration::from_millis(50);
/// The shared limit per second whose exactness is checked.
const EXACT_LIMIT: u64 = 100;
/// Latency buckets of 100 µs up to 1 s (later ones in the last bucket).
const BUCKETS: usize = 10_000;
/// List entries each worker toggles.
const LIST_SLOTS: u64 = 200;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    match args.get(1).map(String::as_str) {
        Some("worker") => worker(
            args.get(2).expect("a redis url").clone(),
            flag("--id", 0),
            flag("--seconds", 60),
        ),
        Some("run") => {
            let passed = run(flag("--seconds", 600), flag("--workers", 4));
            std::process::exit(if passed { 0 } else { 1 });
        }
        _ => {
            eprintln!("usage: soak run [--seconds N] [--workers N]");
            std::process::exit(2);
        }
    }
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Counts of one second of the shared limit, and of faults in it.
#[derive(Default, Clone, Copy)]
struct Second {
    attempts: u64,
    admitted: u64,
    /// Degraded answers or errors of any check in this second.
    faults: u64,
}

/// What a worker records: bounded (per-second counts, latency buckets).
struct Record {
    seconds: Mutex<BTreeMap<u64, Second>>,
    latency: Vec<AtomicU64>,
    checks: AtomicU64,
}

impl Record {
    fn note(&self, second: u64, exact: Option<bool>, fault: bool, took: Duration) {
        let bucket = usize::try_from(took.as_micros() / 100)
            .unwrap_or(BUCKETS - 1)
            .min(BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.checks.fetch_add(1, Ordering::Relaxed);
        let mut seconds = self.seconds.lock().unwrap();
        let entry = seconds.entry(second).or_default();
        if let Some(admitted) = exact {
            entry.attempts += 1;
            entry.admitted += u64::from(admitted);
        }
        entry.faults += u64::from(fault);
    }
}

/// The store's log lines about degraded periods, in order: `true` a start, `false` an end.
#[derive(Clone, Default)]
struct PeriodLog(Arc<Mutex<Vec<bool>>>);

impl Write for PeriodLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(bytes);
        let mut periods = self.0.lock().unwrap();
        for line in text.lines() {
            if line.contains("until redis answers again") {
                periods.push(true);
            } else if line.contains("is answering again") {
                periods.push(false);
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// A tiny xorshift generator: no dependency, no allocation.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn worker(url: String, id: u64, seconds: u64) {
    let periods = PeriodLog::default();
    let sink = periods.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let config = RedisConfig::new(url)
            .key_prefix("soak:")
            .time(TimeSource::Caller)
            .timeout(TIMEOUT);
        let store = RedisStore::with_config(config)
            .await
            .expect("a valid store");
        let limiter = Limiter::builder().store(store).build();
        let second = Duration::from_secs(1);
        let rules = [
            Rule::new("exact", EXACT_LIMIT, second).strategy(Strategy::FixedWindow),
            Rule::new("bucket", 20, second).strategy(Strategy::TokenBucket),
            Rule::new("log", 10, Duration::from_secs(10)).strategy(Strategy::SlidingWindow),
            Rule::new("counter", 50, Duration::from_secs(60)),
        ];
        for rule in rules {
            limiter
                .add_rule(rule.block_duration(Duration::ZERO))
                .unwrap();
        }
        let record = Arc::new(Record {
            seconds: Mutex::new(BTreeMap::new()),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            checks: AtomicU64::new(0),
        });
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for task in 0..8u64 {
            let (limiter, record) = (limiter.clone(), Arc::clone(&record));
            tasks.push(tokio::spawn(async move {
                let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ (id << 8 | task) | 1);
                let mut n = 0u64;
                while Instant::now() < end {
                    n += 1;
                    let (rule, identifier) = match n % 4 {
                        0 => ("exact", "exact".to_owned()),
                        1 => ("bucket", format!("u{}", random.below(1000))),
                        2 => ("log", format!("u{}", random.below(1000))),
                        _ => ("counter", format!("u{}", random.below(1000))),
                    };
                    let started = Instant::now();
                    let result = limiter.check(&identifier, rule).await;
                    let took = started.elapsed();
                    // The second a check of the shared limit counts in is the window that
                    // decided it, which ends when its allowance is full again: with the
                    // processes' clocks a little apart, a check near a boundary may be decided
                    // in the window another process has already begun.
                    let (fault, allowed, at) = match &result {
                        Ok(status) => {
                            let at = if rule == "exact" && !status.degraded {
                                status.reset_at().as_nanos().saturating_sub(1)
                            } else {
                                status.checked_at.as_nanos()
                            };
                            (status.degraded, status.allowed, at / 1_000_000_000)
                        }
                        Err(_) => (true, false, unix_now().as_secs()),
                    };
                    let exact = (rule == "exact" && !fault).then_some(allowed);
                    record.note(at, exact, fault, took);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
        }
        // List changes: toggle one of this worker's slots every 100 ms. A change Redis
        // confirmed is expected at the end; one that failed leaves its slot uncertain until the
        // next confirmed change of that slot.
        let mut expected: HashMap<u64, Option<bool>> = HashMap::new();
        let mut rss = Vec::new();
        let mut n = 0u64;
        while Instant::now() < end {
            let slot = n % LIST_SLOTS;
            let identifier = format!("soak-{id}-{slot}");
            let listed = expected.get(&slot).copied().flatten().unwrap_or(false);
            let result = if listed {
                limiter.blacklist_remove(&identifier).await.map(|_| ())
            } else {
                limiter.blacklist_add(&identifier, None).await
            };
            expected.insert(slot, result.is_ok().then_some(!listed));
            if n.is_multiple_of(100) {
                rss.push(resident_kib());
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        // The lists as Redis has them now (it is up: the driver keeps the tail calm).
        let entries = limiter.list_entries(ListKind::Blacklist).await;
        let mut out = String::new();
        match entries {
            Ok(entries) => {
                let prefix = format!("soak-{id}-");
                let listed: std::collections::HashSet<u64> = entries
                    .iter()
                    .filter_map(|e| e.identifier.strip_prefix(&prefix)?.parse().ok())
                    .collect();
                let (mut lost, mut extra, mut certain) = (0, 0, 0);
                for (slot, state) in &expected {
                    let Some(should) = state else { continue };
                    certain += 1;
                    match (should, listed.contains(slot)) {
                        (true, false) => lost += 1,
                        (false, true) => extra += 1,
                        _ => {}
                    }
                }
                out += &format!("lists certain {certain} lost {lost} extra {extra}\n");
            }
            Err(error) => out += &format!("lists unreadable {error}\n"),
        }
        let stats = limiter.store().fault_stats();
        out += &format!(
            "faults errors {} degraded {} opens {} open {}\n",
            stats.errors, stats.degraded, stats.circuit_opens, stats.circuit_open
        );
        let periods = periods.0.lock().unwrap().clone();
        let alternating = periods
            .iter()
            .enumerate()
            .all(|(i, &start)| start == (i % 2 == 0));
        let starts = periods.iter().filter(|&&s| s).count();
        out += &format!(
            "periods starts {starts} ends {} alternating {alternating}\n",
            periods.len() - starts
        );
        out += &format!(
            "rss {}\n",
            rss.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
        );
        out += &format!("checks {}\n", record.checks.load(Ordering::Relaxed));
        for (bucket, count) in record.latency.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                out += &format!("latency {bucket} {count}\n");
            }
        }
        for (second, counts) in record.seconds.lock().unwrap().iter() {
            out += &format!(
                "second {second} {} {} {}\n",
                counts.attempts, counts.admitted, counts.faults
            );
        }
        print!("{out}");
    });
}

/// The driver's Redis: one process at a time on a fixed port, with its data kept on disk.
struct Redis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Redis {
    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs");
    }
}

/// Unix seconds in which Redis was down or paused (the driver's view).
type Outages = Vec<(f64, f64)>;

fn run(seconds: u64, workers: u64) -> bool {
    // Below the ephemeral range: a worker retrying the killed server could otherwise be given
    // its port for an outgoing connection and keep the restarted server from binding it.
    let port = (20_000..32_000)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below 32000");
    let dir = std::env::temp_dir().join(format!("ratethrottle-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = Redis {
        port,
        dir: dir.clone(),
        child: None,
    };
    redis.start();
    let url = format!("redis://127.0.0.1:{port}");
    let me = std::env::current_exe().unwrap();
    let children: Vec<Child> = (0..workers)
        .map(|id| {
            Command::new(&me)
                .args(["worker", &url, "--id", &id.to_string()])
                .args(["--seconds", &seconds.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("a worker starts")
        })
        .collect();
    let started = Instant::now();
    let at = |t: u64| started + Duration::from_secs(t);
    let now_f = || unix_now().as_secs_f64();
    let mut outages: Outages = Vec::new();
    let pause_at = 165.min(seconds.saturating_sub(70));
    let mut paused = false;
    let mut next_kill = 30;
    println!("soak: {workers} workers for {seconds} s on redis port {port}");
    loop {
        let elapsed = started.elapsed().as_secs();
        if !paused && elapsed >= pause_at && pause_at >= 10 {
            let from = now_f();
            redis.signal("STOP");
            std::thread::sleep(Duration::from_secs(5));
            redis.signal("CONT");
            outages.push((from, now_f()));
            println!("soak: t={elapsed}s paused redis for 5 s");
            paused = true;
        } else if next_kill + 60 <= seconds && elapsed >= next_kill {
            let from = now_f();
            redis.kill();
            std::thread::sleep(Duration::from_secs(2));
            redis.start();
            outages.push((from, now_f()));
            println!("soak: t={elapsed}s killed and restarted redis");
            next_kill += 30;
        } else if Instant::now() >= at(seconds) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let reports: Vec<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("the worker ends");
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect();
    redis.kill();
    let _ = std::fs::remove_dir_all(&dir);
    analyze(&reports, &outages, seconds)
}

fn analyze(reports: &[String], outages: &Outages, seconds: u64) -> bool {
    let mut passed = true;
    let mut verdict = |ok: bool, line: String| {
        println!("{} {line}", if ok { "PASS" } else { "FAIL" });
        passed &= ok;
    };
    let mut latency = vec![0u64; BUCKETS];
    let mut per_second: BTreeMap<u64, Second> = BTreeMap::new();
    let mut checks = 0;
    for (id, report) in reports.iter().enumerate() {
        for line in BufReader::new(report.as_bytes()).lines() {
            let line = line.unwrap();
            let words: Vec<&str> = line.split(' ').collect();
            let n = |i: usize| {
                words
                    .get(i)
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            match words[0] {
                "lists" => verdict(
                    words[1] == "certain" && n(4) == 0 && n(6) == 0,
                    format!("worker {id}: list entries after recovery: {line}"),
                ),
                "faults" => verdict(
                    words.get(8) == Some(&"false"),
                    format!("worker {id}: circuit closed at the end: {line}"),
                ),
                "periods" => verdict(
                    n(2) == n(4) && n(2) > 0 && words.get(6) == Some(&"true"),
                    format!("worker {id}: degraded periods logged once each: {line}"),
                ),
                "rss" => {
                    let samples: Vec<u64> =
                        words[1..].iter().filter_map(|w| w.parse().ok()).collect();
                    // One sample per 10 s: warm-up is the first minute.
                    let settled = &samples[samples.len().min(6)..];
                    if let (Some(first), Some(max), Some(min)) =
                        (settled.first(), settled.iter().max(), settled.iter().min())
                    {
                        let spread = |v: u64| (v as f64 / *first as f64 - 1.0) * 100.0;
                        verdict(
                            spread(*max) <= 10.0 && spread(*min) >= -10.0,
                            format!(
                                "worker {id}: resident memory after warm-up {min}–{max} KiB \
                                 (from {first} KiB: {:+.1}% / {:+.1}%)",
                                spread(*min),
                                spread(*max)
                            ),
                        );
                    }
                }
                "checks" => checks += n(1),
                "latency" => latency[n(1) as usize] += n(2),
                "second" => {
                    let entry = per_second.entry(n(1)).or_default();
                    entry.attempts += n(2);
                    entry.admitted += n(3);
                    entry.faults += n(4);
                }
                _ => {}
            }
        }
    }
    let total: u64 = latency.iter().sum();
    let quantile = |q: f64| {
        let target = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (bucket, count) in latency.iter().enumerate() {
            seen += count;
            if seen >= target {
                return Duration::from_micros((bucket as u64 + 1) * 100);
            }
        }
        Duration::from_secs(1)
    };
    let p999 = quantile(0.999);
    verdict(
        p999 <= TIMEOUT + Duration::from_millis(10),
        format!(
            "{checks} checks: p50 ≤ {:?}, p99 ≤ {:?}, p99.9 ≤ {p999:?} (bar: timeout {TIMEOUT:?} + 10 ms)",
            quantile(0.5),
            quantile(0.99)
        ),
    );
    // Calm seconds: no fault anywhere in it or its neighbours, Redis up throughout, and more
    // attempts than the limit.
    let near_outage = |second: u64| {
        let (from, to) = (second as f64 - 1.0, second as f64 + 2.0);
        outages.iter().any(|&(a, b)| a < to && b > from)
    };
    let faults_near = |second: u64| {
        (second.saturating_sub(1)..=second + 1)
            .any(|s| per_second.get(&s).is_some_and(|c| c.faults > 0))
    };
    let (first, last) = (
        per_second.keys().next().copied().unwrap_or(0),
        per_second.keys().last().copied().unwrap_or(0),
    );
    let mut calm = 0;
    let mut inexact = Vec::new();
    for (&second, counts) in &per_second {
        if second == first
            || second == last
            || near_outage(second)
            || faults_near(second)
            || counts.attempts < EXACT_LIMIT * 2
        {
            continue;
        }
        calm += 1;
        if counts.admitted != EXACT_LIMIT {
            inexact.push((second, counts.admitted));
        }
    }
    verdict(
        inexact.is_empty() && calm * 2 > per_second.len(),
        format!(
            "exact limit in every calm second: {calm} of {} seconds calm, inexact: {inexact:?}",
            per_second.len()
        ),
    );
    // How long after Redis was back checks were still degraded (whole seconds: the first
    // second without a fault after the outage ended).
    let mut recoveries: Vec<f64> = outages
        .iter()
        .map(|&(_, back)| {
            let mut second = back.ceil() as u64;
            while per_second.get(&second).is_some_and(|c| c.faults > 0) {
                second += 1;
            }
            second as f64 - back
        })
        .collect();
    recoveries.sort_by(f64::total_cmp);
    let faulty: u64 = per_second.values().map(|c| c.faults).sum();
    println!(
        "INFO degraded answers: {faulty} of {checks} checks ({:.1}%); back to Redis within \
         {:.1} s of its return (median), {:.1} s (worst)",
        faulty as f64 * 100.0 / checks.max(1) as f64,
        recoveries.get(recoveries.len() / 2).copied().unwrap_or(0.0),
        recoveries.last().copied().unwrap_or(0.0)
    );
    let tail_faults: u64 = per_second
        .range(last.saturating_sub(20)..=last)
        .map(|(_, c)| c.faults)
        .sum();
    verdict(
        tail_faults == 0,
        format!("no degraded answer in the last 20 s (circuits closed): {tail_faults}"),
    );
    println!(
        "soak: {} outages over {seconds} s; {}",
        outages.len(),
        if passed {
            "all checks passed"
        } else {
            "FAILED"
        }
    );
    passed
}
