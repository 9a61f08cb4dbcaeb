//! `ratethrottle manage whitelist|blacklist add|remove|list`, and `manage all list`.

use std::time::Duration;

use anyhow::Context;
use ratethrottle::clock::Nanos;
use ratethrottle::store::{ListEntry, ListKind, Store};
use ratethrottle_config::{Config, StorageKind};
use serde_json::json;

use crate::output::{Format, duration, print_json, table};
use crate::{Outcome, usage};

/// Arguments of `ratethrottle manage`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManageArgs {
    /// Which list.
    #[arg(value_enum)]
    list: List,
    /// What to do.
    #[arg(value_enum)]
    action: Action,
    /// The identifier (for add and remove).
    identifier: Option<String>,
    /// For `blacklist add`: seconds until the entry expires (default: never).
    #[arg(long)]
    duration: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum List {
    Whitelist,
    Blacklist,
    /// Both lists (with `list` only).
    All,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Action {
    Add,
    Remove,
    List,
}

pub(crate) async fn run(config: &Config, args: &ManageArgs, format: Format) -> Outcome {
    if config.storage.kind == StorageKind::Memory {
        return Err(usage(anyhow::anyhow!(
            "manage changes the lists in the configured store, but storage.type is memory: each \
             process has its own lists there, so a change made here would vanish when this \
             command exits. Use storage.type: redis (or RT_STORAGE_TYPE=redis) to manage a \
             fleet's lists, or edit whitelist/blacklist in the configuration file"
        )));
    }
    if let (Action::List, Some(extra)) = (args.action, &args.identifier) {
        return Err(usage(anyhow::anyhow!(
            "`manage ... list` takes no IDENTIFIER (got {extra:?})"
        )));
    }
    let kind = match args.list {
        List::Whitelist => ListKind::Whitelist,
        List::Blacklist => ListKind::Blacklist,
        List::All if matches!(args.action, Action::List) => {
            return list_all(config, format).await;
        }
        List::All => {
            return Err(usage(anyhow::anyhow!(
                "`manage all` only lists; add to or remove from the whitelist or the blacklist"
            )));
        }
    };
    let list = kind.as_str();
    let needs_id = || {
        args.identifier.as_deref().ok_or_else(|| {
            usage(anyhow::anyhow!(
                "`manage {list} add|remove` needs an IDENTIFIER"
            ))
        })
    };
    if args.duration.is_some()
        && !matches!((args.list, args.action), (List::Blacklist, Action::Add))
    {
        return Err(usage(anyhow::anyhow!(
            "--duration applies to `blacklist add` only"
        )));
    }
    let limiter = config.build_limiter().await?;
    match args.action {
        Action::Add => {
            let id = needs_id()?;
            match kind {
                ListKind::Whitelist => limiter.whitelist_add(id).await,
                ListKind::Blacklist => {
                    limiter
                        .blacklist_add(id, args.duration.map(Duration::from_secs))
                        .await
                }
            }
            .context("could not change the list")?;
            outln!("added {id:?} to the {list}");
        }
        Action::Remove => {
            let id = needs_id()?;
            let removed = match kind {
                ListKind::Whitelist => limiter.whitelist_remove(id).await,
                ListKind::Blacklist => limiter.blacklist_remove(id).await,
            }
            .context("could not change the list")?;
            if removed {
                outln!("removed {id:?} from the {list}");
            } else {
                outln!("{id:?} was not on the {list}");
            }
        }
        Action::List => {
            let entries = limiter
                .list_entries(kind)
                .await
                .context("could not read the list")?;
            match format {
                Format::Json => print_json(&json!({
                    "list": list,
                    "store": limiter.store().kind(),
                    "entries": entries_json(&entries, limiter.now()),
                }))?,
                Format::Table => print_table(list, &entries, limiter.now())?,
            }
        }
    }
    Ok(())
}

/// `manage all list` (1.4.0's `--list-all`): both lists.
async fn list_all(config: &Config, format: Format) -> Outcome {
    let limiter = config.build_limiter().await?;
    let mut lists = Vec::new();
    for kind in [ListKind::Whitelist, ListKind::Blacklist] {
        let entries = limiter
            .list_entries(kind)
            .await
            .context("could not read the list")?;
        lists.push((kind.as_str(), entries));
    }
    let now = limiter.now();
    match format {
        Format::Json => {
            let mut all = serde_json::Map::new();
            all.insert("store".into(), json!(limiter.store().kind()));
            for (list, entries) in &lists {
                all.insert((*list).into(), entries_json(entries, now));
            }
            print_json(&serde_json::Value::Object(all))?;
        }
        Format::Table => {
            for (list, entries) in &lists {
                outln!("{list}:");
                print_table(list, entries, now)?;
            }
        }
    }
    Ok(())
}

/// Seconds each entry has left, `None` for entries that do not expire.
fn expires_in(entry: &ListEntry, now: Nanos) -> Option<Duration> {
    entry.expires_at.map(|at| at.saturating_sub(now))
}

fn entries_json(entries: &[ListEntry], now: Nanos) -> serde_json::Value {
    entries
        .iter()
        .map(|e| {
            json!({
                "identifier": e.identifier,
                "expires_in": expires_in(e, now).map(|d| d.as_secs_f64()),
            })
        })
        .collect()
}

fn print_table(list: &str, entries: &[ListEntry], now: Nanos) -> Outcome {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| vec![e.identifier.clone(), duration(expires_in(e, now))])
        .collect();
    out!("{}", table(&["identifier", "expires_in"], &rows));
    outln!(
        "{} entr{} on the {list}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    );
    Ok(())
}
