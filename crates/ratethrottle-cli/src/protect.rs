//! `ratethrottle protect test`: replays a traffic file (or a synthetic attack) through DDoS
//! protection with the configuration's `ddos_protection` settings, on a simulated clock, and
//! prints who would be blocked, when and for how long (escalation included).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ratethrottle::Limiter;
use ratethrottle::clock::{ManualClock, Nanos};
use ratethrottle_config::Config;
use ratethrottle_protect::ddos::{DdosProtection, ban};
use serde_json::json;

use crate::output::{Format, print_json, table};
use crate::{Failure, Outcome, usage};

/// `ratethrottle protect ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ProtectCommand {
    /// Replay traffic through DDoS protection and print what would be blocked.
    Test(ProtectTestArgs),
}

/// Arguments of `ratethrottle protect test`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProtectTestArgs {
    /// A CSV file of requests with the header `timestamp,identifier,endpoint,user_agent`
    /// (Unix seconds; the user agent may be empty), in time order.
    #[arg(long, value_name = "FILE", conflicts_with = "attack")]
    traffic: Option<PathBuf>,
    /// A synthetic attack among 20 ordinary browsers: `flood` (50 requests a second, no user
    /// agent), `scan` (many endpoints, a crawler's agent) or `bot` (machine-regular requests).
    #[arg(long, value_parser = ["flood", "scan", "bot"], default_value = "flood")]
    attack: String,
    /// Seconds of synthetic traffic.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
}

/// One request to replay.
#[derive(Debug, Clone)]
struct Request {
    at: Nanos,
    identifier: String,
    endpoint: String,
    user_agent: Option<String>,
}

/// What happened to one client.
#[derive(Debug, Default)]
struct ClientReport {
    requests: u64,
    suspicious: u64,
    refused: u64,
    max_score: f64,
    /// (seconds after the start, offence, block seconds).
    blocks: Vec<(f64, u64, u64)>,
}

pub(crate) async fn run(config: &Config, command: &ProtectCommand, format: Format) -> Outcome {
    let ProtectCommand::Test(args) = command;
    let settings = config.ddos_protection.settings();
    if !settings.enabled {
        eprintln!("note: ddos_protection.enabled is false; testing its settings anyway");
    }
    let mut settings = settings;
    settings.enabled = true;
    let traffic = match &args.traffic {
        Some(path) => read_traffic(path)?,
        None => synthetic(&args.attack, args.seconds),
    };
    let Some(start) = traffic.first().map(|r| r.at) else {
        return Err(usage(anyhow::anyhow!("the traffic file has no requests")));
    };
    let ddos = DdosProtection::new(settings.clone()).map_err(usage)?;
    let clock = ManualClock::at(start);
    let limiter = Limiter::builder().clock(clock.clone()).build();
    let mut clients: BTreeMap<String, ClientReport> = BTreeMap::new();
    for request in &traffic {
        if request.at > limiter.now() {
            clock.set(request.at);
        }
        let report = clients.entry(request.identifier.clone()).or_default();
        report.requests += 1;
        let analysis = ddos.analyze(
            &request.identifier,
            &request.endpoint,
            request.user_agent.as_deref(),
            request.at,
        );
        let pattern = analysis.pattern;
        report.max_score = report.max_score.max(pattern.suspicious_score);
        report.suspicious += u64::from(pattern.is_suspicious);
        if analysis.block_for.is_some()
            && let Some(ban) = ban(&limiter, &settings, &request.identifier).await?
        {
            let after = request.at.saturating_sub(start).as_secs_f64();
            report
                .blocks
                .push((after, ban.offence, ban.duration.as_secs()));
        }
        if limiter.is_blacklisted(&request.identifier).await? {
            report.refused += 1;
        }
    }
    let blocked: Vec<&String> = clients
        .iter()
        .filter(|(_, r)| !r.blocks.is_empty())
        .map(|(id, _)| id)
        .collect();
    match format {
        Format::Json => print_json(&json!({
            "requests": traffic.len(),
            "clients": clients.iter().map(|(id, r)| json!({
                "identifier": id, "requests": r.requests, "suspicious": r.suspicious,
                "refused": r.refused, "max_score": r.max_score,
                "blocks": r.blocks.iter().map(|(after, offence, seconds)| json!({
                    "after_seconds": after, "offence": offence, "seconds": seconds,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "blocked": blocked,
        }))?,
        Format::Table => {
            let rows: Vec<Vec<String>> = clients
                .iter()
                .map(|(id, r)| {
                    let blocks = r
                        .blocks
                        .iter()
                        .map(|(after, offence, seconds)| {
                            format!("#{offence} at {after:.1}s for {seconds}s")
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    vec![
                        id.clone(),
                        r.requests.to_string(),
                        r.suspicious.to_string(),
                        format!("{:.2}", r.max_score),
                        r.refused.to_string(),
                        if blocks.is_empty() {
                            "-".to_owned()
                        } else {
                            blocks
                        },
                    ]
                })
                .collect();
            out!(
                "{}",
                table(
                    &[
                        "identifier",
                        "requests",
                        "suspicious",
                        "max_score",
                        "refused",
                        "blocks"
                    ],
                    &rows
                )
            );
            outln!(
                "\n{} requests from {} clients: {} would be blocked",
                traffic.len(),
                clients.len(),
                blocked.len()
            );
        }
    }
    Ok(())
}

/// The requests of a traffic CSV, each malformed row named by its line.
fn read_traffic(path: &Path) -> Result<Vec<Request>, Failure> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(usage)?;
    let header = reader.headers().map_err(|e| usage(anyhow::anyhow!(e)))?;
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(at), Some(id), Some(endpoint)) = (
        column("timestamp"),
        column("identifier"),
        column("endpoint"),
    ) else {
        return Err(usage(anyhow::anyhow!(
            "{}: the header must name timestamp, identifier and endpoint (and optionally \
             user_agent), got {:?}",
            path.display(),
            header.iter().collect::<Vec<_>>()
        )));
    };
    let agent = column("user_agent");
    let mut requests = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record =
            record.map_err(|e| usage(anyhow::anyhow!("{}:{line}: {e}", path.display())))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let seconds: f64 = field(at)
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                usage(anyhow::anyhow!(
                    "{}:{line}: timestamp must be Unix seconds, got {:?}",
                    path.display(),
                    field(at)
                ))
            })?;
        if field(id).is_empty() {
            return Err(usage(anyhow::anyhow!(
                "{}:{line}: the identifier is empty",
                path.display()
            )));
        }
        requests.push(Request {
            at: Nanos::from_nanos((seconds * 1e9) as u64),
            identifier: field(id).to_owned(),
            endpoint: field(endpoint).to_owned(),
            user_agent: agent
                .map(field)
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
        });
    }
    requests.sort_by_key(|r| r.at);
    Ok(requests)
}

/// `seconds` of traffic from 20 browsers (a request every 2 to 6 seconds each) and one
/// attacker of the given kind.
fn synthetic(attack: &str, seconds: u64) -> Vec<Request> {
    const START: u64 = 1_767_225_600;
    let at = |millis: u64| Nanos::from_nanos(START * 1_000_000_000 + millis * 1_000_000);
    let mut requests = Vec::new();
    for browser in 0..20u64 {
        let mut millis = browser * 97;
        while millis < seconds * 1000 {
            requests.push(Request {
                at: at(millis),
                identifier: format!("198.51.100.{}", browser + 1),
                endpoint: format!("/page/{}", millis % 7),
                user_agent: Some("Mozilla/5.0".to_owned()),
            });
            millis += 2000 + (browser * 211 + millis) % 4000;
        }
    }
    let (gap, agent): (u64, Option<&str>) = match attack {
        "scan" => (500, Some("SomeCrawler/1.0")),
        "bot" => (80, Some("python-requests/2.32")),
        _ => (20, None),
    };
    for (n, millis) in (0..seconds * 1000).step_by(gap as usize).enumerate() {
        let endpoint = if attack == "scan" {
            format!("/admin/{n}")
        } else {
            "/login".to_owned()
        };
        requests.push(Request {
            at: at(millis),
            identifier: "203.0.113.66".to_owned(),
            endpoint,
            user_agent: agent.map(str::to_owned),
        });
    }
    requests.sort_by_key(|r| r.at);
    requests
}
