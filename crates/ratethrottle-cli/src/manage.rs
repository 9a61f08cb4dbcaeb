//! `ratethrottle manage whitelist|blacklist add|remove|list`.

use std::time::Duration;

use anyhow::Context;
use ratethrottle::store::{ListKind, Store};
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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum List {
    Whitelist,
    Blacklist,
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
    let kind = match args.list {
        List::Whitelist => ListKind::Whitelist,
        List::Blacklist => ListKind::Blacklist,
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
            match args.list {
                List::Whitelist => limiter.whitelist_add(id).await,
                List::Blacklist => {
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
            let removed = match args.list {
                List::Whitelist => limiter.whitelist_remove(id).await,
                List::Blacklist => limiter.blacklist_remove(id).await,
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
            let now = limiter.now();
            let left =
                |e: &ratethrottle::store::ListEntry| e.expires_at.map(|at| at.saturating_sub(now));
            match format {
                Format::Json => print_json(&json!({
                    "list": list,
                    "store": limiter.store().kind(),
                    "entries": entries.iter().map(|e| json!({
                        "identifier": e.identifier,
                        "expires_in": left(e).map(|d| d.as_secs_f64()),
                    })).collect::<Vec<_>>(),
                }))?,
                Format::Table => {
                    let rows: Vec<Vec<String>> = entries
                        .iter()
                        .map(|e| vec![e.identifier.clone(), duration(left(e))])
                        .collect();
                    out!("{}", table(&["identifier", "expires_in"], &rows));
                    outln!(
                        "{} entr{} on the {list}",
                        rows.len(),
                        if rows.len() == 1 { "y" } else { "ies" }
                    );
                }
            }
        }
    }
    Ok(())
}
