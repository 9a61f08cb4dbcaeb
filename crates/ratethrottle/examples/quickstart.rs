//! A burst of requests against two rules on the in-memory default, printing each decision and
//! the headers a web server would send.
//!
//! Run: `cargo run --release --example quickstart`

use std::time::Duration;

use ratethrottle::{Limiter, Rule, Strategy};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limiter = Limiter::in_memory();
    limiter.add_rule(Rule::from_rate("api", "5/minute")?)?;
    limiter.add_rule(
        Rule::from_rate("search", "2/second")?
            .strategy(Strategy::TokenBucket)
            .burst(4)
            .block_duration(Duration::ZERO),
    )?;
    limiter.on_violation(|v| {
        println!(
            "    ! violation: {} exceeded {} ({} per {:?}); retry in {:.1}s",
            v.identifier,
            v.rule,
            v.limit,
            v.window,
            v.retry_after.as_secs_f64()
        );
    });

    for rule in ["api", "search"] {
        let r = limiter.rule(rule).expect("added above");
        println!(
            "\n== rule {rule}: {} per {:?}, strategy {}, burst {}, block {:?}",
            r.limit, r.window, r.strategy, r.burst, r.block_duration
        );
        for i in 1..=7 {
            let status = limiter.check("203.0.113.7", rule).await?;
            println!(
                "request {i}: {:<7} remaining={} retry_after={}",
                if status.allowed { "allowed" } else { "DENIED" },
                status.remaining,
                status
                    .retry_after
                    .map_or("-".to_owned(), |d| format!("{:.3}s", d.as_secs_f64())),
            );
            if i == 7 {
                for (name, value) in status.headers() {
                    println!("    {name}: {value}");
                }
            }
        }
    }

    limiter.whitelist_add("10.0.0.1").await?;
    limiter
        .blacklist_add("198.51.100.9", Some(Duration::from_secs(3600)))
        .await?;
    let vip = limiter.check("10.0.0.1", "api").await?;
    let banned = limiter.check("198.51.100.9", "api").await?;
    println!("\nwhitelisted 10.0.0.1: {vip}");
    println!("blacklisted 198.51.100.9: {banned}");

    let metrics = limiter.metrics();
    println!(
        "\nmetrics: {} requests, {} allowed, {} denied ({:.1}%), {} violations, {} rules",
        metrics.total_requests,
        metrics.allowed_requests,
        metrics.blocked_requests,
        metrics.block_rate,
        metrics.violations,
        metrics.active_rules
    );
    Ok(())
}
