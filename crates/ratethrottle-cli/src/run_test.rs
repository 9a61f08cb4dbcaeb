//! `ratethrottle test`: requests through one rule, each decision printed, then a summary.

use std::time::Duration;

use anyhow::Context;
use ratethrottle::store::Store;
use ratethrottle_config::Config;
use serde_json::json;

use crate::output::{Format, duration, percent};
use crate::{Failure, Outcome, usage};

/// Arguments of `ratethrottle test`.
#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// The rule to test.
    #[arg(long)]
    pub(crate) rule: String,
    /// Who the requests come from.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) identifier: String,
    /// How many requests.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) requests: u64,
    /// Seconds to wait between requests (e.g. 0.5).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) delay: f64,
    /// Units each request costs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) cost: u64,
}

/// The longest `--delay` between requests: one day.
const MAX_DELAY: Duration = Duration::from_secs(86_400);

pub(crate) async fn run(config: &Config, args: &TestArgs, format: Format) -> Outcome {
    let delay = Duration::try_from_secs_f64(args.delay)
        .ok()
        .filter(|d| *d <= MAX_DELAY)
        .ok_or_else(|| {
            usage(anyhow::anyhow!(
                "--delay must be from 0 to {} seconds, got {}",
                MAX_DELAY.as_secs(),
                args.delay
            ))
        })?;
    if !config.global.enabled {
        eprintln!(
            "note: global.enabled is false: adapters let every request through; testing the rule anyway"
        );
    }
    let limiter = config.build_limiter().await?;
    let telemetry = config.start_telemetry(&limiter);
    let Some(rule) = limiter.rule(&args.rule) else {
        // The limiter's own error names the rules that exist.
        let error = limiter.peek(&args.identifier, &args.rule).await.err();
        return Err(usage(anyhow::anyhow!(
            "{}",
            error.map_or_else(
                || format!("unknown rule {:?}", args.rule),
                |e| e.to_string()
            )
        )));
    };
    if format == Format::Table {
        outln!(
            "rule {}: {} per {:?}, {}, burst {}, scope {}, block {} ({} store)",
            rule.name,
            rule.limit,
            rule.window,
            rule.strategy,
            rule.burst,
            rule.scope,
            if rule.block_duration.is_zero() {
                "none".to_owned()
            } else {
                duration(Some(rule.block_duration))
            },
            limiter.store().kind()
        );
        outln!(
            "{} requests from {:?}, cost {}, {} apart\n",
            args.requests,
            args.identifier,
            args.cost,
            duration(Some(delay))
        );
    }
    // Each decision is printed as it is made (nothing is collected), so a long run holds no
    // memory and Ctrl-C keeps what was printed.
    let widths = [
        args.requests.to_string().len().max(1),
        8,
        rule.capacity().to_string().len().max("remaining".len()),
    ];
    match format {
        Format::Json => out!(
            "{{\"rule\":{},\"identifier\":{},\"store\":{},\"requests\":[",
            json!(rule.name),
            json!(args.identifier),
            json!(limiter.store().kind())
        ),
        Format::Table => outln!(
            "{:>w0$}  {:<w1$}  {:>w2$}  retry_after",
            "#",
            "decision",
            "remaining",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ),
    }
    let (mut allowed, mut denied) = (0u64, 0u64);
    for n in 1..=args.requests {
        if n > 1 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let s = limiter
            .check_n(&args.identifier, &args.rule, args.cost)
            .await
            .context("the check failed")?;
        if s.allowed {
            allowed += 1;
        } else {
            denied += 1;
        }
        match format {
            Format::Json => out!(
                "{}\n{}",
                if n == 1 { "" } else { "," },
                json!({
                    "request": n,
                    "allowed": s.allowed,
                    "blocked": s.blocked,
                    "remaining": s.remaining,
                    "limit": s.limit,
                    "retry_after": s.retry_after.map(|d| d.as_secs_f64()),
                    "reset_after": s.reset_after.as_secs_f64(),
                })
            ),
            Format::Table => outln!(
                "{n:>w0$}  {:<w1$}  {:>w2$}  {}",
                match (s.allowed, s.blocked) {
                    (true, _) => "allowed",
                    (false, true) => "BLOCKED",
                    (false, false) => "DENIED",
                },
                s.remaining,
                duration(s.retry_after),
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            ),
        }
    }
    let next = limiter
        .peek(&args.identifier, &args.rule)
        .await
        .context("the check failed")?;
    if let Some(telemetry) = &telemetry
        && let Err(error) = telemetry.flush().await
    {
        eprintln!("warning: could not publish the counts to Redis: {error}");
    }
    match format {
        Format::Json => outln!(
            "\n],\"allowed\":{allowed},\"denied\":{denied},\"next_allowed\":{},\"next_retry_after\":{}}}",
            next.allowed,
            json!(next.retry_after.map(|d| d.as_secs_f64()))
        ),
        Format::Table => {
            let next_text = if next.allowed {
                format!("allowed ({} remaining)", next.remaining)
            } else {
                format!("denied, retry after {}", duration(next.retry_after))
            };
            outln!(
                "\nsummary: {allowed} allowed, {denied} denied ({} denied); next request: {next_text}",
                percent(100.0 * denied as f64 / args.requests as f64)
            );
        }
    }
    if denied > 0 {
        Err(Failure::Denied)
    } else {
        Ok(())
    }
}
