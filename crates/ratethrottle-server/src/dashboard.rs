//! The web dashboard: `GET /dashboard`, one page served from the binary (no external
//! resources), and `GET /dashboard/events`, server-sent events carrying a frame of figures
//! each second: per rule and per second allowed and denied, the most limited identifiers,
//! the blacklist (active blocks with their expiry), the latest violations, the store's
//! health, and the lists. With a token, the events need it as the API does (they name
//! clients), and the page sends it; it manages the lists through `/v1/lists`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use ratethrottle::Limiter;
use ratethrottle::store::{ListKind, Store, StoreError};
use ratethrottle_redis::telemetry::{Deltas, FleetSnapshot, ViolationSink, rule_definition};
use serde_json::{Value, json};

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// Seconds of history the charts show.
const HISTORY: usize = 120;

/// A fleet's figures, read again each second.
pub type FleetFuture = Pin<Box<dyn Future<Output = Result<FleetSnapshot, StoreError>> + Send>>;

/// Where the dashboard's figures come from.
pub enum Source {
    /// The server's own limiter, counted each second.
    Local,
    /// A fleet's telemetry (e.g. `ratethrottle_redis::telemetry::read_fleet` on the fleet's
    /// Redis), read each second.
    Fleet(Box<dyn Fn() -> FleetFuture + Send + Sync>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Local => "Local",
            Source::Fleet(_) => "Fleet",
        })
    }
}

/// The figures the frames are made of, kept up to date by [`View::follow`].
pub(crate) struct View {
    source: Source,
    snapshot: parking_lot::Mutex<FleetSnapshot>,
    /// The last failure to read the fleet's figures, if the last read failed.
    error: parking_lot::Mutex<Option<String>>,
}

impl View {
    pub(crate) fn new(source: Source) -> Self {
        View {
            source,
            snapshot: parking_lot::Mutex::new(FleetSnapshot::default()),
            error: parking_lot::Mutex::new(None),
        }
    }

    /// Updates the figures each second until `stopped`.
    pub(crate) async fn follow<S: Store>(
        self: Arc<Self>,
        limiter: Limiter<S>,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut deltas = Deltas::default();
        let sink = matches!(self.source, Source::Local).then(|| ViolationSink::attach(&limiter));
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            match (&self.source, &sink) {
                (Source::Fleet(read), _) => match read().await {
                    Ok(snapshot) => {
                        *self.snapshot.lock() = snapshot;
                        *self.error.lock() = None;
                    }
                    Err(error) => *self.error.lock() = Some(error.to_string()),
                },
                (Source::Local, Some(sink)) => {
                    let delta = deltas.next(&limiter.metrics());
                    let second = unix_millis() / 1000;
                    let mut snapshot = self.snapshot.lock();
                    snapshot.record(second, &delta, &sink.take(), HISTORY, 50);
                    snapshot.processes = vec![format!("this process ({})", std::process::id())];
                }
                (Source::Local, None) => {}
            }
        }
    }

    /// One frame: the figures, the lists and the store's health now.
    pub(crate) async fn frame<S: Store>(
        &self,
        limiter: &Limiter<S>,
        token_required: bool,
    ) -> Value {
        let snapshot = self.snapshot.lock().clone();
        let metrics = limiter.metrics();
        let definitions: std::collections::HashMap<String, String> = limiter
            .rules()
            .iter()
            .map(|rule| (rule.name.to_string(), rule_definition(rule)))
            .collect();
        let rules: Vec<Value> = snapshot
            .rules
            .iter()
            .map(|r| {
                let definition = if r.definition.is_empty() {
                    definitions.get(&r.rule).cloned().unwrap_or_default()
                } else {
                    r.definition.clone()
                };
                json!({
                    "rule": r.rule,
                    "definition": definition,
                    "allowed": r.allowed,
                    "denied": r.denied,
                    "violations": r.violations,
                })
            })
            .collect();
        let entries = |list| async move {
            limiter
                .list_entries(list)
                .await
                .map(|entries| crate::entries_json(&entries))
        };
        let (whitelist, blacklist) = (
            entries(ListKind::Whitelist).await,
            entries(ListKind::Blacklist).await,
        );
        let store_error = whitelist
            .as_ref()
            .err()
            .or(blacklist.as_ref().err())
            .map(ToString::to_string)
            .or_else(|| self.error.lock().clone());
        json!({
            "at": unix_millis(),
            "source": match self.source { Source::Local => "this process", Source::Fleet(_) => "fleet" },
            "processes": snapshot.processes,
            "totals": {
                "allowed": snapshot.allowed,
                "denied": snapshot.denied,
                "violations": snapshot.violations,
                "block_rate": snapshot.block_rate(),
            },
            "rules": rules,
            "per_second": snapshot.per_second.iter().map(|s| json!({"at": s.at, "allowed": s.allowed, "denied": s.denied})).collect::<Vec<_>>(),
            "top_limited": snapshot.top_limited.iter().take(10).map(|(id, n)| json!({"identifier": id, "violations": n})).collect::<Vec<_>>(),
            "recent_violations": snapshot.recent_violations.iter().take(20).map(|v| json!({
                "at_ms": v.at_ms,
                "identifier": v.identifier,
                "rule": v.rule,
                "limit": v.limit,
                "retry_after_ms": v.retry_after_ms,
            })).collect::<Vec<_>>(),
            "whitelist": whitelist.unwrap_or_default(),
            "blacklist": blacklist.unwrap_or_default(),
            "store": {
                "errors": metrics.store_errors,
                "circuit_open": metrics.store_circuit_open,
                "circuit_opens": metrics.store_circuit_opens,
                "degraded": metrics.degraded_requests,
                "error": store_error,
            },
            "token_required": token_required,
        })
    }
}

fn unix_millis() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// `GET /dashboard`.
pub(crate) async fn page() -> Response {
    (
        [(
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
        )],
        Html(PAGE),
    )
        .into_response()
}

/// `GET /dashboard/events`: a frame now and each second, until the server stops.
pub(crate) fn events<S: Store>(
    view: Arc<View>,
    limiter: Limiter<S>,
    token_required: bool,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Response {
    let state = (view, limiter, stopped, true);
    let frames = futures_util::stream::unfold(
        state,
        move |(view, limiter, mut stopped, first)| async move {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.wait_for(|stop| *stop) => return None,
                }
            }
            if *stopped.borrow() {
                return None;
            }
            let frame = view.frame(&limiter, token_required).await;
            let event = Event::default().event("frame").data(frame.to_string());
            Some((Ok::<_, Infallible>(event), (view, limiter, stopped, false)))
        },
    );
    Sse::new(frames)
        .keep_alive(KeepAlive::default())
        .into_response()
}
