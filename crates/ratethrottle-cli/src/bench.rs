//! `ratethrottle bench`: check throughput on the configured store, with a progress bar.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ratethrottle::store::Store;
use ratethrottle::{Rule, Strategy};
use ratethrottle_config::Config;
use serde_json::json;

use crate::output::{Format, percent, print_json, table};
use crate::{Outcome, usage};

/// Arguments of `ratethrottle bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The strategy to measure.
    #[arg(long, default_value = "sliding_counter")]
    strategy: Strategy,
    /// Distinct identifiers the checks spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
}

/// Roughly what one key costs in the memory store (cell, identifier, table slot).
const BYTES_PER_KEY: u64 = 160;

/// Refuses a `--keys` the memory store could not hold in half the available memory.
fn check_memory(config: &Config, keys: u64) -> Outcome {
    if config.storage.kind != ratethrottle_config::StorageKind::Memory {
        return Ok(());
    }
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let needed = keys.saturating_mul(BYTES_PER_KEY);
    if needed > available / 2 {
        return Err(usage(anyhow::anyhow!(
            "--keys {keys} would need about {} MiB in the memory store, more than half of the {} MiB available; use at most {} keys",
            needed >> 20,
            available >> 20,
            available / 2 / BYTES_PER_KEY
        )));
    }
    Ok(())
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (Linux; `None` elsewhere).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

pub(crate) async fn run(config: &Config, args: &BenchArgs, format: Format) -> Outcome {
    let duration = Duration::try_from_secs_f64(args.duration)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
        .ok_or_else(|| {
            usage(anyhow::anyhow!(
                "--duration must be above 0 and at most 3600 seconds"
            ))
        })?;
    check_memory(config, args.keys)?;
    let limiter = config.build_limiter().await?;
    // Its own rule name, so a shared store's real rules are not touched.
    let rule_name = format!("ratethrottle-bench-{}", std::process::id());
    let rule = Rule::new(&rule_name, 1000, Duration::from_secs(1))
        .strategy(args.strategy)
        .block_duration(Duration::ZERO);
    limiter.add_rule(rule).map_err(usage)?;
    let (checks, allowed, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|worker| {
            let (limiter, keys, rule) = (limiter.clone(), args.keys, rule_name.clone());
            let (checks, allowed, errors, stop) = (
                checks.clone(),
                allowed.clone(),
                errors.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut k = worker % keys;
                // Identifiers are written into one buffer as they are needed: none are stored.
                let mut id = String::with_capacity(32);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        k = ((u128::from(k) + 7919) % u128::from(keys)) as u64;
                        id.clear();
                        let _ = write!(id, "bench-{k}");
                        match limiter.check(&id, &rule).await {
                            Ok(status) => {
                                allowed.fetch_add(u64::from(status.allowed), Ordering::Relaxed);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    checks.fetch_add(256, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let bar = if format == Format::Table {
        ProgressBar::new(duration.as_millis() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed().min(duration);
        bar.set_position(elapsed.as_millis() as u64);
        let rate = checks.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
        bar.set_message(format!("{rate:.0} checks/s"));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    limiter.remove_rule(&rule_name);
    let (checks, allowed, errors) = (
        checks.load(Ordering::Relaxed),
        allowed.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    let per_second = checks as f64 / elapsed.as_secs_f64();
    let ns_per_check = elapsed.as_nanos() as f64 * args.threads as f64 / checks.max(1) as f64;
    match format {
        Format::Json => print_json(&json!({
            "store": limiter.store().kind(), "strategy": args.strategy.to_string(),
            "keys": args.keys, "threads": args.threads, "seconds": elapsed.as_secs_f64(),
            "checks": checks, "checks_per_second": per_second,
            "ns_per_check_per_thread": ns_per_check, "allowed": allowed, "errors": errors,
        }))?,
        Format::Table => out!(
            "{}",
            table(
                &[
                    "store",
                    "strategy",
                    "keys",
                    "threads",
                    "checks",
                    "checks/s",
                    "ns/check/thread",
                    "allowed",
                    "errors"
                ],
                &[vec![
                    limiter.store().kind().to_owned(),
                    args.strategy.to_string(),
                    args.keys.to_string(),
                    args.threads.to_string(),
                    checks.to_string(),
                    format!("{per_second:.0}"),
                    format!("{ns_per_check:.0}"),
                    percent(100.0 * allowed as f64 / checks.max(1) as f64),
                    errors.to_string(),
                ]],
            )
        ),
    }
    Ok(())
}
