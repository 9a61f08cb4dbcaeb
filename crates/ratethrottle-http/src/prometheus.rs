//! Prometheus metrics (OpenMetrics text, `prometheus-client`; feature `prometheus`): per rule
//! the hits and how they were decided (`PolicyBuilder::prometheus` records the middleware's
//! decisions), the decision latency, and the store's health. `ratethrottle serve` exposes the
//! same registry; an axum app serves it with [`PrometheusMetrics::router`].
//!
//! ```
//! use ratethrottle::Limiter;
//! use ratethrottle_http::prometheus::PrometheusMetrics;
//!
//! let limiter = Limiter::in_memory();
//! let metrics = PrometheusMetrics::new(&limiter);
//! // Policy::builder(limiter).prometheus(metrics.decisions().clone()) ... ;
//! // app.merge(metrics.router())  (feature axum): GET /metrics
//! assert!(metrics.encode().ends_with("# EOF\n"));
//! ```

use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use ratethrottle::store::Store;
use ratethrottle::{Limiter, Status, Verdict};

/// The labels of a rule's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

type Latency = Family<RuleLabel, Histogram, fn() -> Histogram>;

/// One rule's series, looked up once (the families' handles share their values).
#[derive(Debug)]
struct RuleSeries {
    total_hits: Counter,
    over_limit: Counter,
    near_limit: Counter,
    blocked: Counter,
    whitelisted: Counter,
    latency: Histogram,
}

/// Counts of decisions per rule, as envoyproxy/ratelimit names them, and their latency.
#[derive(Clone, Debug)]
pub struct DecisionMetrics {
    series: std::sync::Arc<parking_lot::RwLock<foldhash::HashMap<String, RuleSeries>>>,
    total_hits: Family<RuleLabel, Counter>,
    over_limit: Family<RuleLabel, Counter>,
    near_limit: Family<RuleLabel, Counter>,
    blocked: Family<RuleLabel, Counter>,
    whitelisted: Family<RuleLabel, Counter>,
    shadow_mode: Family<RuleLabel, Counter>,
    latency: Latency,
}

fn latency_histogram() -> Histogram {
    // 1 µs to about 8 ms.
    Histogram::new(exponential_buckets(1e-6, 2.0, 14))
}

impl DecisionMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = DecisionMetrics {
            series: Default::default(),
            total_hits: Family::default(),
            over_limit: Family::default(),
            near_limit: Family::default(),
            blocked: Family::default(),
            whitelisted: Family::default(),
            shadow_mode: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        let counters = [
            (
                "total_hits",
                "Units asked for (the cost of each check)",
                &metrics.total_hits,
            ),
            (
                "over_limit",
                "Units refused for the limit",
                &metrics.over_limit,
            ),
            (
                "near_limit",
                "Units admitted with 80% or more of the limit used",
                &metrics.near_limit,
            ),
            (
                "blocked",
                "Checks refused for a block or the blacklist",
                &metrics.blocked,
            ),
            (
                "whitelisted",
                "Checks of whitelisted identifiers",
                &metrics.whitelisted,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "decision_seconds",
            "Time to decide a check",
            metrics.latency.clone(),
        );
        metrics
    }

    /// Counts `cost` units over the limit of `rule` answered OK (shadow mode).
    pub fn record_shadow(&self, rule: &str, cost: u64) {
        let label = RuleLabel {
            rule: rule.to_owned(),
        };
        self.shadow_mode.get_or_create(&label).inc_by(cost);
    }

    /// Creates the series of `rule`.
    fn create(&self, rule: &str) {
        let label = RuleLabel {
            rule: rule.to_owned(),
        };
        let series = RuleSeries {
            total_hits: self.total_hits.get_or_create(&label).clone(),
            over_limit: self.over_limit.get_or_create(&label).clone(),
            near_limit: self.near_limit.get_or_create(&label).clone(),
            blocked: self.blocked.get_or_create(&label).clone(),
            whitelisted: self.whitelisted.get_or_create(&label).clone(),
            latency: self.latency.get_or_create(&label).clone(),
        };
        let mut all = self.series.write();
        // A bound on the distinct series (detailed metrics name each descriptor value); past
        // it, new series count in the families only.
        if all.len() < 10_000 {
            all.entry(label.rule).or_insert(series);
        }
    }

    /// Counts a decision under `rule` of `cost` units that took `elapsed` (when timed).
    pub fn record(&self, rule: &str, status: &Status, cost: u64, elapsed: Option<Duration>) {
        if !self.series.read().contains_key(rule) {
            self.create(rule);
        }
        let all = self.series.read();
        let Some(series) = all.get(rule) else {
            return;
        };
        series.total_hits.inc_by(cost);
        match status.verdict {
            Verdict::Whitelisted => {
                series.whitelisted.inc();
            }
            Verdict::Blocked | Verdict::Blacklisted => {
                series.blocked.inc();
            }
            Verdict::Limited => {
                series.over_limit.inc_by(cost);
            }
            _ if status.allowed => {
                let used = status.limit.saturating_sub(status.remaining);
                if u128::from(used) * 5 >= u128::from(status.limit) * 4 {
                    series.near_limit.inc_by(cost);
                }
            }
            _ => {}
        }
        if let Some(elapsed) = elapsed {
            series.latency.observe(elapsed.as_secs_f64());
        }
    }
}

/// A registry (prefix `ratethrottle`) with the decision metrics and the store's health.
pub struct PrometheusMetrics {
    registry: std::sync::Arc<Registry>,
    decisions: DecisionMetrics,
}

impl fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl PrometheusMetrics {
    /// The metrics of `limiter` in a registry of their own.
    pub fn new<S: Store>(limiter: &Limiter<S>) -> Self {
        Self::within(Registry::with_prefix("ratethrottle"), limiter)
    }

    /// The metrics of `limiter` added to `registry` (an application's own).
    pub fn within<S: Store>(mut registry: Registry, limiter: &Limiter<S>) -> Self {
        let decisions = DecisionMetrics::new(&mut registry);
        registry.register_collector(Box::new(StoreHealth::new(limiter.clone())));
        PrometheusMetrics {
            registry: std::sync::Arc::new(registry),
            decisions,
        }
    }

    /// The decision counters, to record into (`PolicyBuilder::prometheus`).
    pub fn decisions(&self) -> &DecisionMetrics {
        &self.decisions
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The content type of [`encode`](Self::encode)'s text.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// `GET /metrics` serving the registry, to merge into an axum app.
    #[cfg(feature = "axum")]
    pub fn router<T: Clone + Send + Sync + 'static>(&self) -> axum::Router<T> {
        let registry = std::sync::Arc::clone(&self.registry);
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = std::sync::Arc::clone(&registry);
                async move {
                    let mut text = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
                    (
                        [(http::header::CONTENT_TYPE, PrometheusMetrics::CONTENT_TYPE)],
                        text,
                    )
                }
            }),
        )
    }
}

/// The store's health, read from the limiter at each scrape.
pub struct StoreHealth<S: Store> {
    limiter: Limiter<S>,
}

impl<S: Store> StoreHealth<S> {
    /// Reports `limiter`'s store.
    pub fn new(limiter: Limiter<S>) -> Self {
        StoreHealth { limiter }
    }
}

impl<S: Store> fmt::Debug for StoreHealth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreHealth").finish_non_exhaustive()
    }
}

impl<S: Store> Collector for StoreHealth<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let m = self.limiter.metrics();
        let counters = [
            (
                "store_errors",
                "Checks the store failed to decide",
                m.store_errors,
            ),
            (
                "store_circuit_opens",
                "Times the store's circuit opened",
                m.store_circuit_opens,
            ),
            (
                "degraded_decisions",
                "Checks answered by the fault policy",
                m.degraded_requests,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let open = ConstGauge::new(i64::from(m.store_circuit_open));
        let metric = encoder.encode_descriptor(
            "store_circuit_open",
            "1 while the store's circuit is open",
            None,
            open.metric_type(),
        )?;
        open.encode(metric)?;
        let rules = ConstGauge::new(i64::try_from(m.active_rules).unwrap_or(i64::MAX));
        let metric =
            encoder.encode_descriptor("rules", "Rules in force", None, rules.metric_type())?;
        rules.encode(metric)
    }
}
