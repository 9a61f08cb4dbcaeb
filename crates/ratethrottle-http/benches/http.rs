//! Requests per second through axum: bare, with ratethrottle's layer, and with tower_governor,
//! measured in the same run over loopback by a small hyper load generator.
//!
//! ```text
//! cargo bench -p ratethrottle-http --bench http
//! ROUNDS=7 SECONDS=3 CONNECTIONS=32 cargo bench -p ratethrottle-http --bench http
//! ONLY='ratethrottle (headers)' cargo bench -p ratethrottle-http --bench http   # to profile
//! ```
//!
//! The server runs on one tokio worker thread and the load generator (`wrk -t1` when
//! installed, else a built-in hyper client) on another, so on a 2-core machine each has a
//! core. Variants are measured in turn, `ROUNDS` times in rotating order, and the medians
//! are compared: requests per second, and the server thread's CPU time per request (read
//! from `/proc`, much less noisy on a shared machine). A heavy load generator hides server
//! differences (it pays for parsing every response header too), hence wrk.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

mod common;

use common::{apps, env_or};

/// Completed requests against `address` in `duration` with `wrk` (one thread,
/// `connections` keep-alive HTTP/1.1 connections); `None` if wrk is not installed.
fn wrk(address: SocketAddr, connections: u64, duration: Duration) -> Option<u64> {
    let output = std::process::Command::new("wrk")
        .args(["-t1", &format!("-c{connections}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg(format!("http://{address}/"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "every request must be admitted:\n{text}"
    );
    text.lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.trim().parse().ok())
}

/// Completed requests against `address` in `duration`, over `connections` keep-alive
/// HTTP/1.1 connections of hyper's client (when wrk is not installed).
async fn hyper_load(address: SocketAddr, connections: u64, duration: Duration) -> u64 {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            let mut done = 0u64;
            while Instant::now() < deadline {
                let request = http::Request::get("/")
                    .header("host", "localhost")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let response = sender.send_request(request).await.expect("response");
                assert_eq!(response.status(), 200, "every request is admitted");
                response.into_body().collect().await.expect("body");
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("load task");
    }
    total
}

/// The name of the server's worker thread, to find its CPU time in `/proc`.
const SERVER_THREAD: &str = "http-bench-srv";

/// Nanoseconds the server threads have run on a CPU (Linux `schedstat`; 0 elsewhere).
fn server_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == SERVER_THREAD)
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds = env_or("ROUNDS", 5) as usize;
    let seconds = env_or("SECONDS", 2);
    let connections = env_or("CONNECTIONS", 16);
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    let variants: Vec<(&str, SocketAddr)> = server.block_on(async {
        let mut out = Vec::new();
        // `ONLY=ratethrottle` keeps the variants whose name contains it (for profiling).
        let only = std::env::var("ONLY").unwrap_or_default();
        for (name, app) in apps().into_iter().filter(|(name, _)| name.contains(&*only)) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address");
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, service).await.expect("serve") });
            out.push((name, address));
        }
        out
    });
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    println!(
        "http: {rounds} rounds x {seconds}s per variant, {connections} connections, \
         server on 1 worker thread"
    );
    let use_wrk = std::env::var("LOAD").map_or(true, |load| load != "hyper")
        && wrk(variants[0].1, 1, Duration::from_secs(1)).is_some();
    let load = |address, duration| match use_wrk {
        true => wrk(address, connections, duration).expect("wrk ran before"),
        false => client.block_on(hyper_load(address, connections, duration)),
    };
    println!(
        "load generator: {}",
        if use_wrk {
            "wrk -t1 (LOAD=hyper for the built-in one)"
        } else {
            "built-in hyper client (install wrk for a lighter one)"
        }
    );
    // Warm up each variant once.
    for (_, address) in &variants {
        load(*address, Duration::from_secs(1));
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut cpu_per_request: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            let (name, address) = variants[index];
            let duration = Duration::from_secs(seconds);
            let cpu_before = server_cpu_ns();
            let requests = load(address, duration);
            let cpu_ns = (server_cpu_ns() - cpu_before) as f64;
            let cpu = cpu_ns / requests as f64 / 1000.0;
            let busy = 100.0 * cpu_ns / duration.as_nanos() as f64;
            let rate = requests as f64 / duration.as_secs_f64();
            println!(
                "  round {:>2} {name:<26} {rate:>8.0} req/s {cpu:>6.2} µs server CPU/request, \
                 server busy {busy:>3.0}%",
                round + 1
            );
            results[index].push(rate);
            cpu_per_request[index].push(cpu);
        }
    }
    if variants.len() < apps().len() {
        return;
    }
    let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
    let cpu: Vec<f64> = cpu_per_request.iter_mut().map(|c| median(c)).collect();
    let index = |name: &str| {
        variants
            .iter()
            .position(|(n, _)| *n == name)
            .expect("variant")
    };
    println!(
        "\n| variant | req/s (median) | vs bare axum | server CPU/request | bare axum's CPU / this |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.3} | {:.2} µs | {:.3} |",
            medians[i],
            medians[i] / medians[0],
            cpu[i],
            cpu[0] / cpu[i]
        );
    }
    let versus = |ours: &str, theirs: &str| {
        let (a, b) = (index(ours), index(theirs));
        format!(
            "{:.3} by req/s, {:.3} by CPU/request",
            medians[a] / medians[b],
            cpu[b] / cpu[a]
        )
    };
    println!("\nratethrottle / tower_governor (above 1 = ratethrottle faster):");
    println!(
        "  defaults (ratethrottle adds headers, tower_governor does not): {}",
        versus("ratethrottle (headers)", "tower_governor")
    );
    println!(
        "  no headers on either:   {}",
        versus("ratethrottle (no headers)", "tower_governor")
    );
    println!(
        "  headers on both:        {}",
        versus("ratethrottle (headers)", "tower_governor (headers)")
    );
    println!(
        "  three headers on both:  {}",
        versus(
            "ratethrottle (3 legacy headers)",
            "tower_governor (headers)"
        )
    );
}
