//! `ratethrottle metrics` and `ratethrottle stats`: what the fleet published to Redis.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ratethrottle_config::{Config, ConfiguredStore};
use ratethrottle_redis::RedisStore;
use ratethrottle_redis::telemetry::{FleetSnapshot, RuleTotals, read_fleet};
use serde_json::{Map, Value, json};

use ratethrottle::clock::Nanos;
use ratethrottle::store::{KeyValueStore, ListKind, Store};
use ratethrottle_protect::adaptive::AdaptiveSummary;
use ratethrottle_protect::ddos::offence_key;

use crate::output::{Format, percent, print_json, table};
use crate::{Outcome, usage};

/// Arguments of `ratethrottle metrics`.
#[derive(Debug, clap::Args)]
pub(crate) struct MetricsArgs {
    /// Only this rule.
    #[arg(long)]
    rule: Option<String>,
}

/// Arguments of `ratethrottle stats`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatsArgs {
    /// Also write the report to FILE: `.json` (the whole report) or `.csv` (one row per fact:
    /// kind, key, allowed, denied, violations, detail).
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// Seconds of per-second history to include.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
}

/// The Redis store the configuration names; an explanation (exit 2) for the memory store.
pub(crate) async fn fleet_store(
    config: &Config,
    command: &str,
) -> Result<RedisStore, crate::Failure> {
    let store = ConfiguredStore::connect(&config.storage).await?;
    match store {
        ConfiguredStore::Redis(store) => Ok(store),
        _ => Err(usage(anyhow::anyhow!(
            "`{command}` reads what a fleet publishes to Redis, but storage.type is memory (the \
             in-memory store's counts live inside the process that serves the traffic). Use \
             --config with storage.type: redis, or RT_STORAGE_TYPE=redis{}",
            if command == "monitor" {
                "; or try `monitor --demo`"
            } else {
                ""
            }
        ))),
    }
}

pub(crate) async fn metrics(config: &Config, args: &MetricsArgs, format: Format) -> Outcome {
    let store = fleet_store(config, "metrics").await?;
    let fleet = read_fleet(&store, 1)
        .await
        .context("could not read the fleet's metrics")?;
    let rules: Vec<_> = fleet
        .rules
        .iter()
        .filter(|r| args.rule.as_deref().is_none_or(|name| r.rule == name))
        .collect();
    if let Some(name) = &args.rule
        && rules.is_empty()
    {
        let known: Vec<&str> = fleet.rules.iter().map(|r| r.rule.as_str()).collect();
        return Err(crate::Failure::Failed(anyhow::anyhow!(
            "no metrics for rule {name:?}; rules with metrics: {}",
            if known.is_empty() {
                "(none yet)".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    match format {
        Format::Json => print_json(&Value::Object(summary_json(&fleet, &rules)))?,
        Format::Table => {
            if args.rule.is_none() {
                outln!(
                    "total {}  allowed {}  denied {}  block rate {}  violations {}  processes reporting {}\n",
                    fleet.total(),
                    fleet.allowed,
                    fleet.denied,
                    percent(fleet.block_rate()),
                    fleet.violations,
                    fleet.processes.len()
                );
            }
            out!("{}", rules_table(&rules));
        }
    }
    Ok(())
}

fn rules_table(rules: &[&RuleTotals]) -> String {
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.rule.clone(),
                r.definition.clone(),
                r.allowed.to_string(),
                r.denied.to_string(),
                r.violations.to_string(),
                percent(r.block_rate()),
            ]
        })
        .collect();
    table(
        &[
            "rule",
            "definition",
            "allowed",
            "denied",
            "violations",
            "block_rate",
        ],
        &rows,
    )
}

pub(crate) async fn stats(config: &Config, args: &StatsArgs, format: Format) -> Outcome {
    let store = fleet_store(config, "stats").await?;
    let fleet = read_fleet(&store, args.seconds)
        .await
        .context("could not read the fleet's statistics")?;
    let blocked = blocked_clients(&store).await?;
    let mut report = report_json(&fleet);
    report["blocked_clients"] = Value::Array(
        blocked
            .iter()
            .map(|b| json!({"identifier": b.identifier, "expires_in": b.expires_in, "ddos_offences": b.offences}))
            .collect(),
    );
    match format {
        Format::Json => print_json(&report)?,
        Format::Table => {
            outln!(
                "total {}  allowed {}  denied {}  block rate {}  violations {}\n",
                fleet.total(),
                fleet.allowed,
                fleet.denied,
                percent(fleet.block_rate()),
                fleet.violations
            );
            out!("{}", rules_table(&fleet.rules.iter().collect::<Vec<_>>()));
            outln!("\ntop limited identifiers (last 5 minutes):");
            let top: Vec<Vec<String>> = fleet
                .top_limited
                .iter()
                .take(10)
                .map(|(id, n)| vec![id.clone(), n.to_string()])
                .collect();
            out!("{}", table(&["identifier", "violations"], &top));
            outln!(
                "\nblocked clients (blacklist; DDoS protection's blocks escalate with offences):"
            );
            out!(
                "{}",
                table(
                    &["identifier", "expires in", "ddos offences"],
                    &blocked_rows(&blocked)
                )
            );
            if let Some(adaptive) = adaptive_of(&fleet) {
                outln!(
                    "\nadaptive limiter (each process learns its own clients): {}",
                    adaptive_line(&adaptive)
                );
                out!(
                    "{}",
                    table(
                        &["least trusted", "trust", "limit", "violations", "anomalies"],
                        &trust_rows(&adaptive)
                    )
                );
            }
        }
    }
    if let Some(path) = &args.export {
        export(path, &fleet, &report, &blocked)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// How many of the least trusted clients the reports show.
pub(crate) const LEAST_TRUSTED: usize = 10;

/// The adaptive limiter's figures the fleet's processes report, merged; `None` when no
/// process reports any.
pub(crate) fn adaptive_of(fleet: &FleetSnapshot) -> Option<AdaptiveSummary> {
    fleet
        .reports_named("adaptive")
        .filter_map(AdaptiveSummary::from_json)
        .reduce(|mut all, one| {
            all.merge(&one, LEAST_TRUSTED);
            all
        })
}

/// The adaptive limiter's figures in one line.
pub(crate) fn adaptive_line(summary: &AdaptiveSummary) -> String {
    format!(
        "{} profiles · mean trust {:.2} · {} below 0.3 · {} anomalies / {} checks",
        summary.profiles,
        summary.mean_trust,
        summary.low_trust,
        summary.anomalies_detected,
        summary.total_requests
    )
}

/// The least trusted clients as table rows: identifier, trust, limit, violations, anomalies.
pub(crate) fn trust_rows(summary: &AdaptiveSummary) -> Vec<Vec<String>> {
    summary
        .least_trusted
        .iter()
        .map(|t| {
            vec![
                t.identifier.clone(),
                format!("{:.2}", t.trust_score),
                t.current_limit.to_string(),
                t.violation_count.to_string(),
                t.anomaly_count.to_string(),
            ]
        })
        .collect()
}

/// A blacklisted client: who, for how long more, and how many DDoS offences the fleet
/// remembers of it (0 for an entry made by hand).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Blocked {
    pub(crate) identifier: String,
    /// Seconds left; `None` until removed.
    pub(crate) expires_in: Option<u64>,
    pub(crate) offences: i64,
}

/// The most blacklist entries shown.
const MAX_BLOCKED: usize = 100;

/// The fleet's blacklist (the blocks DDoS protection made, among others), soonest to end
/// last, with the offences counted for each.
pub(crate) async fn blocked_clients<S: Store + KeyValueStore>(
    store: &S,
) -> anyhow::Result<Vec<Blocked>> {
    let now = Nanos::from_system_time(std::time::SystemTime::now());
    let mut entries = store
        .list_entries(ListKind::Blacklist, now)
        .await
        .context("could not read the blacklist")?;
    entries.sort_by_key(|e| std::cmp::Reverse(e.expires_at.unwrap_or(Nanos::from_nanos(u64::MAX))));
    let mut blocked = Vec::new();
    for entry in entries.into_iter().take(MAX_BLOCKED) {
        let offences = store
            .get(&offence_key(&entry.identifier), now)
            .await?
            .and_then(|value| value.as_integer())
            .unwrap_or(0);
        blocked.push(Blocked {
            expires_in: entry.expires_at.map(|at| at.saturating_sub(now).as_secs()),
            identifier: entry.identifier,
            offences,
        });
    }
    Ok(blocked)
}

/// The blocks as table rows: identifier, time left, offences.
pub(crate) fn blocked_rows(blocked: &[Blocked]) -> Vec<Vec<String>> {
    blocked
        .iter()
        .map(|b| {
            vec![
                b.identifier.clone(),
                b.expires_in
                    .map_or_else(|| "until removed".to_owned(), |s| format!("{s}s")),
                b.offences.to_string(),
            ]
        })
        .collect()
}

/// Totals and the given rules' counts, named as in the original's `get_metrics()`.
fn summary_json(fleet: &FleetSnapshot, rules: &[&RuleTotals]) -> Map<String, Value> {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "rule": r.rule, "definition": r.definition, "allowed": r.allowed,
                "denied": r.denied, "violations": r.violations, "block_rate": r.block_rate(),
            })
        })
        .collect();
    let mut summary = Map::new();
    summary.insert("total_requests".into(), json!(fleet.total()));
    summary.insert("allowed_requests".into(), json!(fleet.allowed));
    summary.insert("blocked_requests".into(), json!(fleet.denied));
    summary.insert("block_rate".into(), json!(fleet.block_rate()));
    summary.insert("violations".into(), json!(fleet.violations));
    summary.insert("processes".into(), json!(fleet.processes));
    summary.insert("rules".into(), Value::Array(rules));
    summary
}

/// The whole report as JSON: the summary, per second, top limited and recent violations.
pub(crate) fn report_json(fleet: &FleetSnapshot) -> Value {
    let mut report = summary_json(fleet, &fleet.rules.iter().collect::<Vec<_>>());
    report.insert("generated_at_ms".into(), json!(fleet.at_ms));
    let per_second: Vec<Value> = fleet
        .per_second
        .iter()
        .map(|s| json!({"at": s.at, "allowed": s.allowed, "denied": s.denied}))
        .collect();
    report.insert("per_second".into(), Value::Array(per_second));
    let top: Vec<Value> = fleet
        .top_limited
        .iter()
        .map(|(id, n)| json!({"identifier": id, "violations": n}))
        .collect();
    report.insert("top_limited".into(), Value::Array(top));
    let recent: Vec<Value> = fleet
        .recent_violations
        .iter()
        .map(|v| {
            json!({
                "at_ms": v.at_ms, "identifier": v.identifier, "rule": v.rule,
                "limit": v.limit, "retry_after_ms": v.retry_after_ms,
            })
        })
        .collect();
    report.insert("recent_violations".into(), Value::Array(recent));
    if let Some(adaptive) = adaptive_of(fleet) {
        report.insert("adaptive".into(), json!(adaptive));
    }
    Value::Object(report)
}

fn export(path: &Path, fleet: &FleetSnapshot, report: &Value, blocked: &[Blocked]) -> Outcome {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension.to_ascii_lowercase().as_str() {
        "json" => {
            let text = serde_json::to_string_pretty(report)?;
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        "csv" => {
            let mut writer = csv::Writer::from_path(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            writer.write_record(["kind", "key", "allowed", "denied", "violations", "detail"])?;
            let n = |v: u64| v.to_string();
            writer.write_record([
                "total",
                "",
                &n(fleet.allowed),
                &n(fleet.denied),
                &n(fleet.violations),
                "",
            ])?;
            for r in &fleet.rules {
                writer.write_record([
                    "rule",
                    &r.rule,
                    &n(r.allowed),
                    &n(r.denied),
                    &n(r.violations),
                    &r.definition,
                ])?;
            }
            for s in &fleet.per_second {
                writer.write_record(["second", &n(s.at), &n(s.allowed), &n(s.denied), "", ""])?;
            }
            for (id, count) in &fleet.top_limited {
                writer.write_record(["identifier", id, "", "", &n(*count), ""])?;
            }
            for v in &fleet.recent_violations {
                let detail = format!(
                    "at_ms={} rule={} limit={} retry_after_ms={}",
                    v.at_ms, v.rule, v.limit, v.retry_after_ms
                );
                writer.write_record(["violation", &v.identifier, "", "", "1", &detail])?;
            }
            for t in adaptive_of(fleet)
                .map(|a| a.least_trusted)
                .unwrap_or_default()
            {
                let detail = format!(
                    "trust={:.4} limit={} anomalies={}",
                    t.trust_score, t.current_limit, t.anomaly_count
                );
                let violations = n(t.violation_count);
                writer.write_record(["trust", &t.identifier, "", "", &violations, &detail])?;
            }
            for b in blocked {
                let detail = format!(
                    "expires_in={} ddos_offences={}",
                    b.expires_in
                        .map_or_else(|| "never".to_owned(), |s| s.to_string()),
                    b.offences
                );
                writer.write_record(["blocked", &b.identifier, "", "", "", &detail])?;
            }
            writer.flush()?;
        }
        _ => {
            return Err(usage(anyhow::anyhow!(
                "--export {}: the file name must end in .json or .csv",
                path.display()
            )));
        }
    }
    Ok(())
}
