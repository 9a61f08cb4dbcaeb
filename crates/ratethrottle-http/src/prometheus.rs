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
use ratethrottle_protect::adaptive::AdaptiveLimiter;
use ratethrottle_protect::ddos::DdosProtection;

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
    shadow_mode: Counter,
    latency: Histogram,
}

impl RuleSeries {
    /// Counts a decision of `cost` units that took `elapsed` (when timed).
    fn count(&self, status: &Status, cost: u64, elapsed: Option<Duration>) {
        self.total_hits.inc_by(cost);
        match status.verdict {
            Verdict::Whitelisted => {
                self.whitelisted.inc();
            }
            Verdict::Blocked | Verdict::Blacklisted => {
                self.blocked.inc();
            }
            Verdict::Limited => {
                self.over_limit.inc_by(cost);
            }
            _ if status.allowed => {
                let used = status.limit.saturating_sub(status.remaining);
                if u128::from(used) * 5 >= u128::from(status.limit) * 4 {
                    self.near_limit.inc_by(cost);
                }
            }
            _ => {}
        }
        if let Some(elapsed) = elapsed {
            self.latency.observe(elapsed.as_secs_f64());
        }
    }
}

/// The most series [`DecisionMetrics`] keeps: detailed metrics name each descriptor value,
/// and a service that runs for months must stay bounded. Past it, new rules count together
/// under [`OTHER_SERIES`].
pub const MAX_SERIES: usize = 10_000;

/// The series that rules past [`MAX_SERIES`] count under.
pub const OTHER_SERIES: &str = "(other)";

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
            (
                "shadow_mode",
                "Units over the limit answered OK (shadow mode)",
                &metrics.shadow_mode,
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
        self.with_series(rule, |series| {
            series.shadow_mode.inc_by(cost);
        });
    }

    /// Counts a decision under `rule` of `cost` units that took `elapsed` (when timed).
    pub fn record(&self, rule: &str, status: &Status, cost: u64, elapsed: Option<Duration>) {
        self.with_series(rule, |series| series.count(status, cost, elapsed));
    }

    /// Calls `count` with the series of `rule`: one read lock when it exists; made the first
    /// time (under [`OTHER_SERIES`] once there are [`MAX_SERIES`]).
    fn with_series(&self, rule: &str, count: impl FnOnce(&RuleSeries)) {
        if let Some(series) = self.series.read().get(rule) {
            count(series);
            return;
        }
        let mut all = self.series.write();
        let name = if all.len() < MAX_SERIES || all.contains_key(rule) {
            rule
        } else {
            OTHER_SERIES
        };
        let series = all
            .entry(name.to_owned())
            .or_insert_with(|| self.series_of(name));
        count(series);
    }

    /// The series of `rule` in the families.
    fn series_of(&self, rule: &str) -> RuleSeries {
        let label = RuleLabel {
            rule: rule.to_owned(),
        };
        RuleSeries {
            total_hits: self.total_hits.get_or_create(&label).clone(),
            over_limit: self.over_limit.get_or_create(&label).clone(),
            near_limit: self.near_limit.get_or_create(&label).clone(),
            blocked: self.blocked.get_or_create(&label).clone(),
            whitelisted: self.whitelisted.get_or_create(&label).clone(),
            shadow_mode: self.shadow_mode.get_or_create(&label).clone(),
            latency: self.latency.get_or_create(&label).clone(),
        }
    }
}

/// A registry (prefix `ratethrottle`) with the decision metrics and the store's health.
pub struct PrometheusMetrics {
    registry: std::sync::Arc<Registry>,
    decisions: DecisionMetrics,
    watched: Watched,
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
        let watched = Watched::default();
        registry.register_collector(Box::new(watched.clone()));
        PrometheusMetrics {
            registry: std::sync::Arc::new(registry),
            decisions,
            watched,
        }
    }

    /// Adds the figures of `ddos` (`ddos_analyzed`, `ddos_suspicious`, `ddos_blocks`,
    /// `ddos_false_positives_prevented`, `ddos_tracked_clients`, `ddos_trusted_clients`).
    pub fn watch_ddos(&self, ddos: std::sync::Arc<DdosProtection>) {
        self.watched.0.write().push(Box::new(ddos));
    }

    /// Adds the figures of `adaptive` (`adaptive_checks`, `adaptive_anomalies`,
    /// `adaptive_limits_adjusted`, `adaptive_profiles`, `adaptive_low_trust_clients`,
    /// `adaptive_mean_trust`).
    pub fn watch_adaptive<S: Store>(&self, adaptive: std::sync::Arc<AdaptiveLimiter<S>>) {
        self.watched.0.write().push(Box::new(adaptive));
    }

    /// Adds the figures of `policy`'s DDoS protection and adaptive limiter, where it has them.
    pub fn watch_policy<S: Store, R: crate::RequestView>(&self, policy: &crate::Policy<S, R>) {
        if let Some(ddos) = policy.ddos() {
            self.watch_ddos(std::sync::Arc::clone(ddos));
        }
        if let Some(adaptive) = policy.adaptive() {
            self.watch_adaptive(std::sync::Arc::clone(adaptive));
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

/// A figure read at each scrape.
#[derive(Debug, Clone, Copy)]
enum Figure {
    /// A count since the start: name (without `_total`), help, value.
    Counter(&'static str, &'static str, u64),
    /// A level now.
    Gauge(&'static str, &'static str, f64),
}

/// Writes `figures` as metrics.
fn encode_figures(encoder: &mut DescriptorEncoder<'_>, figures: &[Figure]) -> fmt::Result {
    for figure in figures {
        match *figure {
            Figure::Counter(name, help, value) => {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    counter.metric_type(),
                )?)?;
            }
            Figure::Gauge(name, help, value) => {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
    }
    Ok(())
}

/// Something whose figures a scrape reads.
trait Source: Send + Sync {
    fn figures(&self) -> Vec<Figure>;
}

/// The sources watched after the registry was made (DDoS protection, adaptive limiters).
#[derive(Clone, Default)]
struct Watched(std::sync::Arc<parking_lot::RwLock<Vec<Box<dyn Source>>>>);

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched").finish_non_exhaustive()
    }
}

impl Collector for Watched {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for source in self.0.read().iter() {
            encode_figures(&mut encoder, &source.figures())?;
        }
        Ok(())
    }
}

impl Source for DdosProtection {
    fn figures(&self) -> Vec<Figure> {
        let s = self.statistics();
        vec![
            Figure::Counter(
                "ddos_analyzed",
                "Requests DDoS protection scored",
                s.total_analyzed,
            ),
            Figure::Counter(
                "ddos_suspicious",
                "Requests DDoS protection found suspicious",
                s.suspicious_detected,
            ),
            Figure::Counter(
                "ddos_blocks",
                "Blocks DDoS protection called for",
                s.auto_blocked,
            ),
            Figure::Counter(
                "ddos_false_positives_prevented",
                "Clients exempted after a long good record",
                s.false_positives_prevented,
            ),
            Figure::Gauge(
                "ddos_tracked_clients",
                "Clients DDoS protection follows",
                s.tracked_identifiers as f64,
            ),
            Figure::Gauge(
                "ddos_trusted_clients",
                "Followed clients exempt after a long good record",
                s.trusted_identifiers as f64,
            ),
        ]
    }
}

impl<S: Store> Source for AdaptiveLimiter<S> {
    fn figures(&self) -> Vec<Figure> {
        let s = self.statistics();
        vec![
            Figure::Counter("adaptive_checks", "Adaptive checks", s.total_requests),
            Figure::Counter(
                "adaptive_anomalies",
                "Adaptive checks at an anomalous rate",
                s.anomalies_detected,
            ),
            Figure::Counter(
                "adaptive_limits_adjusted",
                "Adaptive checks at a limit other than the base limit",
                s.limits_adjusted,
            ),
            Figure::Gauge(
                "adaptive_profiles",
                "Client profiles kept",
                s.profiles as f64,
            ),
            Figure::Gauge(
                "adaptive_low_trust_clients",
                "Clients whose trust is below 0.3",
                s.low_trust as f64,
            ),
            Figure::Gauge(
                "adaptive_mean_trust",
                "The mean trust of the profiles kept",
                s.mean_trust,
            ),
        ]
    }
}

impl<T: Source + ?Sized> Source for std::sync::Arc<T> {
    fn figures(&self) -> Vec<Figure> {
        T::figures(self)
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
        let figures = [
            Figure::Counter(
                "store_errors",
                "Checks the store failed to decide",
                m.store_errors,
            ),
            Figure::Counter(
                "store_circuit_opens",
                "Times the store's circuit opened",
                m.store_circuit_opens,
            ),
            Figure::Counter(
                "degraded_decisions",
                "Checks answered by the fault policy",
                m.degraded_requests,
            ),
            Figure::Gauge(
                "store_circuit_open",
                "1 while the store's circuit is open",
                f64::from(u8::from(m.store_circuit_open)),
            ),
            Figure::Gauge("rules", "Rules in force", m.active_rules as f64),
        ];
        encode_figures(&mut encoder, &figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_past_the_bound_count_together() {
        let limiter = Limiter::in_memory();
        let metrics = PrometheusMetrics::new(&limiter);
        limiter
            .add_rule(ratethrottle::Rule::new(
                "api",
                1000,
                Duration::from_secs(60),
            ))
            .unwrap();
        let status = limiter.check_now("client", "api", 1).unwrap().unwrap();
        for n in 0..MAX_SERIES + 5 {
            metrics
                .decisions()
                .record(&format!("rule-{n}"), &status, 2, None);
        }
        metrics.decisions().record_shadow("one more", 3);
        let text = metrics.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("ratethrottle_total_hits_total{"))
            .count();
        assert_eq!(series, MAX_SERIES + 1);
        assert!(text.contains("ratethrottle_total_hits_total{rule=\"(other)\"} 10\n"));
        assert!(text.contains("ratethrottle_shadow_mode_total{rule=\"(other)\"} 3\n"));
        assert!(text.contains("ratethrottle_total_hits_total{rule=\"rule-0\"} 2\n"));
    }
}
