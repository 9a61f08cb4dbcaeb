//! Checks per second through `RedisStore` against raw `INCR` on the same server, in one run.
//!
//! Run: `cargo bench -p ratethrottle-redis --bench throughput` (starts its own `redis-server`
//! on a free port; set `RT_BENCH_REDIS_URL` to use another server). Each concurrency runs
//! `RT_BENCH_ROUNDS` rounds (default 7) of one slice per case (`RT_BENCH_SECONDS`, default 1 s),
//! `INCR` first; a case's ratio is the median of its per-round ratios. Prints a Markdown table
//! for BENCHMARKS.md.

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

fn start_server() -> (String, Option<std::process::Child>) {
    if let Ok(url) = std::env::var("RT_BENCH_REDIS_URL") {
        return (url, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new("redis-server")
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
    let (url, mut server) = start_server();
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
            for _ in 0..rounds {
                let raw = raw.clone();
                let incr = throughput(tasks, seconds, move |task| {
                    let mut raw = raw.clone();
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
