//! Checks per second through `RedisStore` against raw `INCR` on the same server, in one run.
//!
//! Run: `cargo bench -p ratethrottle-redis --bench throughput` (starts its own `redis-server`
//! on a free port; set `RT_BENCH_REDIS_URL` to use another server). Each concurrency runs
//! `RT_BENCH_ROUNDS` rounds (default 7) of one slice per case (`RT_BENCH_SECONDS`, default 1 s),
//! `INCR` first; a case's ratio is the median of its per-round ratios. Prints a Markdown table
//! for BENCHMARKS.md.
//!
//! Contestants: raw `INCR`, our checks, and the lean GCRA script that published Redis
//! limiters use ([`LEAN_GCRA`], written here from the redis-gcra design: `TIME`, `GET` the
//! stored TAT, float arithmetic, `SET … EX` when admitted; no lists, no blocks), through the
//! same redis-rs connection. `RT_BENCH_PIN=1` pins redis-server to core 0 and this process to
//! core 1 (`taskset`), so client and server stop competing for the same core.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratethrottle::{Limiter, Rule, Strategy};
use ratethrottle_redis::{RedisConfig, RedisStore};

const STRATEGIES: [Strategy; 3] = [
    Strategy::SlidingCounter,
    Strategy::TokenBucket,
    Strategy::Gcra,
];
const CONCURRENCY: [usize; 2] = [1, 64];

/// A minimal GCRA limiter in Lua, as published Redis limiters do it (see the file's header).
const LEAN_GCRA: &str = include_str!("lean_gcra.lua");

/// Pins this process to core 1 when `RT_BENCH_PIN` is set (redis-server goes to core 0).
fn pinned() -> bool {
    let pin = std::env::var_os("RT_BENCH_PIN").is_some();
    if pin {
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("taskset (util-linux) runs");
        assert!(
            status.success(),
            "taskset could not pin the bench to core 1"
        );
    }
    pin
}

/// Runs `tasks` copies of `work(task)` for `seconds`; returns operations per second.
async fn throughput<F, Fut>(tasks: usize, seconds: f64, work: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (work, stop, done) = (Arc::clone(&work), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    work(task).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await.expect("a bench task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn start_server(pin: bool) -> (String, Option<std::process::Child>) {
    if let Ok(url) = std::env::var("RT_BENCH_REDIS_URL") {
        return (url, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut command = if pin {
        let mut taskset = std::process::Command::new("taskset");
        taskset.args(["-c", "0", "redis-server"]);
        taskset
    } else {
        std::process::Command::new("redis-server")
    };
    let child = command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--loglevel", "warning"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (format!("redis://127.0.0.1:{port}"), Some(child))
}

fn main() {
    let setting = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let seconds = setting("RT_BENCH_SECONDS", 1.0);
    let rounds = setting("RT_BENCH_ROUNDS", 7.0) as usize;
    let pin = pinned();
    let (url, mut server) = start_server(pin);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let rows = runtime.block_on(async {
        let config = RedisConfig::new(url.clone())
            .key_prefix("bench:")
            .timeout(Duration::from_secs(5));
        let limiter = Limiter::builder()
            .store(RedisStore::with_config(config).await.expect("redis"))
            .build();
        // A million per second: never exhausted by one task's share of the run.
        for strategy in STRATEGIES {
            let rule =
                Rule::new(strategy.as_str(), 1_000_000, Duration::from_secs(1)).strategy(strategy);
            limiter.add_rule(rule).expect("a valid rule");
        }
        let client = redis::Client::open(url.as_str()).expect("a url");
        let raw = redis::aio::ConnectionManager::new(client)
            .await
            .expect("redis");
        let mut rows = Vec::new();
        for tasks in CONCURRENCY {
            // Rounds of back-to-back slices, INCR first: each round's ratios compare runs a
            // few seconds apart, so the machine's slow and calm stretches cancel out.
            let mut incr_rates = Vec::new();
            let mut check_rates = vec![Vec::new(); STRATEGIES.len()];
            let mut ratios = vec![Vec::new(); STRATEGIES.len()];
            let (mut lean_rates, mut lean_ratios, mut ours_to_lean) =
                (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let incr_raw = raw.clone();
                let incr = throughput(tasks, seconds, move |task| {
                    let mut raw = incr_raw.clone();
                    async move {
                        let _: u64 = redis::cmd("INCR")
                            .arg(format!("bench:incr:{task}"))
                            .query_async(&mut raw)
                            .await
                            .expect("INCR");
                    }
                })
                .await;
                incr_rates.push(incr);
                for (index, strategy) in STRATEGIES.into_iter().enumerate() {
                    let limiter = limiter.clone();
                    let per_second = throughput(tasks, seconds, move |task| {
                        let limiter = limiter.clone();
                        async move {
                            let id = format!("client-{task}");
                            let status = limiter.check(&id, strategy.as_str()).await;
                            assert!(status.expect("a check").allowed);
                        }
                    })
                    .await;
                    check_rates[index].push(per_second);
                    ratios[index].push(per_second / incr);
                }
                let lean_raw = raw.clone();
                let script = Arc::new(redis::Script::new(LEAN_GCRA));
                let lean = throughput(tasks, seconds, move |task| {
                    let (mut raw, script) = (lean_raw.clone(), Arc::clone(&script));
                    async move {
                        // A million per second with a burst of a million, as our rules.
                        let admitted: u64 = script
                            .key(format!("bench:lean:{task}"))
                            .arg(0.000_001)
                            .arg(1.0)
                            .invoke_async(&mut raw)
                            .await
                            .expect("the lean script");
                        assert_eq!(admitted, 1);
                    }
                })
                .await;
                lean_rates.push(lean);
                lean_ratios.push(lean / incr);
                let gcra = STRATEGIES
                    .iter()
                    .position(|s| *s == Strategy::Gcra)
                    .and_then(|index| check_rates[index].last().copied())
                    .expect("gcra is a contestant");
                ours_to_lean.push(gcra / lean);
            }
            rows.push(format!(
                "| raw `INCR` | {tasks} | {:.0} | 1.00× | |",
                median(&mut incr_rates)
            ));
            for (index, strategy) in STRATEGIES.into_iter().enumerate() {
                let ratios = &mut ratios[index];
                let median_ratio = median(ratios);
                rows.push(format!(
                    "| `{strategy}` check | {tasks} | {:.0} | {median_ratio:.2}× | {:.2}–{:.2} |",
                    median(&mut check_rates[index]),
                    ratios[0],
                    ratios[ratios.len() - 1],
                ));
            }
            let lean_median = median(&mut lean_ratios);
            rows.push(format!(
                "| lean GCRA script (redis-gcra design) | {tasks} | {:.0} | {lean_median:.2}× | {:.2}–{:.2} |",
                median(&mut lean_rates),
                lean_ratios[0],
                lean_ratios[lean_ratios.len() - 1],
            ));
            let ours_median = median(&mut ours_to_lean);
            rows.push(format!(
                "| our `gcra` ÷ lean script | {tasks} | | **{ours_median:.2}×** of the lean script | {:.2}–{:.2} |",
                ours_to_lean[0],
                ours_to_lean[ours_to_lean.len() - 1],
            ));
        }
        rows
    });
    if let Some(server) = server.as_mut() {
        let _ = server.kill();
        let _ = server.wait();
    }
    println!(
        "| case | concurrency | per second (median) | ratio to INCR (median of rounds) | \
         ratio range |"
    );
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}
