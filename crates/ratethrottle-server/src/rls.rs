//! The Envoy rate limit service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`)
//! over the limiter, configured as envoyproxy/ratelimit is: a YAML document per domain, its
//! descriptors (`key`, `value`, nesting, wildcard values) with a `rate_limit` each (`unit`,
//! `requests_per_unit`, `name`, `unlimited`, `replaces`), `shadow_mode` and `detailed_metric`.
//! Beyond the reference: any of the six strategies (`strategy`), `burst`, `block_duration`
//! (seconds), and several limits on one descriptor (`rate_limits: [...]`); negative hits
//! (`is_negative_hits`) give units back.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as PbUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit as PbRateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use ratethrottle::store::Store;
use ratethrottle::{HeaderValues, Limiter, Rule, Status, Strategy};
use serde::Deserialize;

use crate::DecisionMetrics;

/// A mistake in a rate limit configuration.
#[derive(Debug)]
pub struct RlsConfigError(pub String);

impl std::fmt::Display for RlsConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RlsConfigError {}

/// One domain's document, as envoyproxy/ratelimit reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainDocument {
    domain: String,
    #[serde(default)]
    descriptors: Vec<DescriptorDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescriptorDocument {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<LimitDocument>,
    /// Several limits on one descriptor (not in the reference).
    #[serde(default)]
    rate_limits: Vec<LimitDocument>,
    #[serde(default)]
    shadow_mode: bool,
    #[serde(default)]
    detailed_metric: bool,
    #[serde(default)]
    descriptors: Vec<DescriptorDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitDocument {
    #[serde(default, deserialize_with = "unit_named")]
    unit: Option<(PbUnit, Duration)>,
    #[serde(default, deserialize_with = "at_least_one")]
    requests_per_unit: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    replaces: Vec<Replaced>,
    /// One of the six strategies (fixed_window, as the reference, by default).
    #[serde(default, deserialize_with = "strategy_named")]
    strategy: Option<Strategy>,
    #[serde(default)]
    burst: Option<u64>,
    /// Seconds a client is blocked after going over (none by default).
    #[serde(default)]
    block_duration: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replaced {
    name: String,
}

/// A compiled descriptor node.
#[derive(Debug)]
struct Node {
    key: String,
    value: Match,
    limits: Vec<Limit>,
    shadow: bool,
    detailed: bool,
    children: Vec<Node>,
}

#[derive(Debug, PartialEq)]
enum Match {
    /// Any value (no value in the configuration): a counter per value.
    Any,
    /// Values starting with this (a value ending in `*`).
    Prefix(String),
    /// This value.
    Exact(String),
}

#[derive(Debug, Clone)]
struct Limit {
    /// The limiter rule enforcing it (none: unlimited).
    rule: Option<String>,
    name: Option<String>,
    unit: PbUnit,
    per_unit: u64,
    replaces: Vec<String>,
}

/// The domains of a rate limit service, their rules added to the limiter.
#[derive(Debug, Default)]
pub struct RlsConfig {
    domains: BTreeMap<String, Vec<Node>>,
    rules: Vec<Rule>,
}

// Values checked as they are read, so that an error names its line and column.

fn unit_named<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<(PbUnit, Duration)>, D::Error> {
    let unit = String::deserialize(deserializer)?;
    unit_of(&unit).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unit {unit:?}: give second, minute, hour, day or week"
        ))
    })
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    match u64::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom(
            "requests_per_unit must be at least 1",
        )),
        n => Ok(Some(n)),
    }
}

fn strategy_named<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Strategy>, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse()
        .map(Some)
        .map_err(|e: ratethrottle::RuleError| serde::de::Error::custom(e))
}

fn unit_of(text: &str) -> Option<(PbUnit, Duration)> {
    let secs = |n: u64| Duration::from_secs(n);
    Some(match text.to_ascii_lowercase().as_str() {
        "second" => (PbUnit::Second, secs(1)),
        "minute" => (PbUnit::Minute, secs(60)),
        "hour" => (PbUnit::Hour, secs(3600)),
        "day" => (PbUnit::Day, secs(86_400)),
        "week" => (PbUnit::Week, secs(7 * 86_400)),
        _ => return None,
    })
}

impl RlsConfig {
    /// Reads the domain document of each file.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Self, RlsConfigError> {
        let mut config = RlsConfig::default();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .map_err(|e| RlsConfigError(format!("{}: {e}", path.display())))?;
            config.add(&text, &path.display().to_string())?;
        }
        Ok(config)
    }

    /// Adds the domain document `text` (`origin` names it in errors).
    pub fn add(&mut self, text: &str, origin: &str) -> Result<(), RlsConfigError> {
        let document: DomainDocument = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            RlsConfigError(format!("{origin}{at}: {e}"))
        })?;
        if document.domain.is_empty() {
            return Err(RlsConfigError(format!(
                "{origin}: the domain must not be empty"
            )));
        }
        if self.domains.contains_key(&document.domain) {
            return Err(RlsConfigError(format!(
                "{origin}: the domain {:?} is configured twice",
                document.domain
            )));
        }
        let mut nodes = Vec::new();
        for descriptor in document.descriptors {
            nodes.push(self.compile(&document.domain, "", descriptor, origin)?);
        }
        self.domains.insert(document.domain, nodes);
        Ok(())
    }

    fn compile(
        &mut self,
        domain: &str,
        parent: &str,
        descriptor: DescriptorDocument,
        origin: &str,
    ) -> Result<Node, RlsConfigError> {
        let value = match descriptor.value {
            None => Match::Any,
            Some(v) if v.is_empty() => Match::Any,
            Some(v) if v.ends_with('*') => Match::Prefix(v.trim_end_matches('*').to_owned()),
            Some(v) => Match::Exact(v),
        };
        let path = format!(
            "{parent}{}{}={}",
            if parent.is_empty() { "" } else { "/" },
            descriptor.key,
            match &value {
                Match::Any => "*".to_owned(),
                Match::Prefix(p) => format!("{p}*"),
                Match::Exact(v) => v.clone(),
            }
        );
        let documents = descriptor
            .rate_limit
            .into_iter()
            .chain(descriptor.rate_limits);
        let mut limits = Vec::new();
        for (i, limit) in documents.enumerate() {
            let fault = |what: &str| RlsConfigError(format!("{origin}: {domain} {path}: {what}"));
            let (unit, window) = match limit.unit {
                Some(unit) => unit,
                None if limit.unlimited => (PbUnit::Unknown, Duration::from_secs(1)),
                None => return Err(fault("a rate_limit needs a unit")),
            };
            let per_unit = limit.requests_per_unit.unwrap_or(0);
            let rule = if limit.unlimited {
                None
            } else {
                if per_unit == 0 {
                    return Err(fault("requests_per_unit must be at least 1"));
                }
                let name = format!("rls:{domain}:{path}#{i}");
                let strategy = limit.strategy.unwrap_or(Strategy::FixedWindow);
                let mut rule = Rule::new(&name, per_unit, window)
                    .strategy(strategy)
                    .block_duration(Duration::from_secs(limit.block_duration.unwrap_or(0)));
                if let Some(burst) = limit.burst {
                    rule = rule.burst(burst);
                }
                rule.validate().map_err(|e| fault(&e.to_string()))?;
                self.rules.push(rule);
                Some(name)
            };
            limits.push(Limit {
                rule,
                name: limit.name,
                unit,
                per_unit,
                replaces: limit.replaces.into_iter().map(|r| r.name).collect(),
            });
        }
        let mut children = Vec::new();
        for child in descriptor.descriptors {
            children.push(self.compile(domain, &path, child, origin)?);
        }
        Ok(Node {
            key: descriptor.key,
            value,
            limits,
            shadow: descriptor.shadow_mode,
            detailed: descriptor.detailed_metric,
            children,
        })
    }

    /// The rules enforcing the configured limits (for the limiter).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The configured domains.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }
}

/// The node a descriptor's entries lead to (exact values first, then prefixes, then any).
fn find<'n>(nodes: &'n [Node], entries: &[(String, String)]) -> Option<&'n Node> {
    let ((key, value), rest) = entries.split_first()?;
    let candidates = nodes.iter().filter(|n| &n.key == key);
    let best = candidates
        .filter_map(|n| {
            let rank = match &n.value {
                Match::Exact(v) if v == value => 0,
                Match::Prefix(p) if value.starts_with(p.as_str()) => 1,
                Match::Any => 2,
                _ => return None,
            };
            Some((rank, n))
        })
        .min_by_key(|&(rank, _)| rank)?
        .1;
    if rest.is_empty() {
        Some(best)
    } else {
        find(&best.children, rest)
    }
}

/// The service: `tonic` serves it with [`RateLimitServiceServer`].
pub struct Rls<S: Store> {
    limiter: Limiter<S>,
    config: Arc<RlsConfig>,
    metrics: DecisionMetrics,
}

impl<S: Store> std::fmt::Debug for Rls<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rls")
            .field("domains", &self.config.domains.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Rls<S> {
    /// The service over `limiter` (which must hold `config`'s rules).
    pub fn new(limiter: Limiter<S>, config: Arc<RlsConfig>, metrics: DecisionMetrics) -> Self {
        Rls {
            limiter,
            config,
            metrics,
        }
    }

    /// The tonic service.
    pub fn into_service(self) -> RateLimitServiceServer<Self> {
        RateLimitServiceServer::new(self)
    }

    /// The tonic service of a shared one.
    pub fn service(self: &Arc<Self>) -> RateLimitServiceServer<Self> {
        RateLimitServiceServer::from_arc(Arc::clone(self))
    }
}

fn pb_duration(d: Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[tonic::async_trait]
impl<S: Store> RateLimitService for Rls<S> {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        self.answer(request.into_inner())
            .await
            .map(tonic::Response::new)
    }
}

impl<S: Store> Rls<S> {
    /// The answer to `request` (for the gRPC service and the `/json` endpoint).
    pub async fn answer(
        &self,
        request: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        Ok(self.decide(request).await?.0)
    }

    /// The answer to `request`, and the status of its tightest limit (none when no limit
    /// applied).
    pub async fn decide(
        &self,
        request: RateLimitRequest,
    ) -> Result<(RateLimitResponse, Option<Status>), tonic::Status> {
        if request.domain.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "rate limit domain must not be empty",
            ));
        }
        if request.descriptors.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "rate limit descriptor list must not be empty",
            ));
        }
        let Some(roots) = self.config.domains.get(&request.domain) else {
            return Err(tonic::Status::not_found(format!(
                "unknown rate limit domain {:?}",
                request.domain
            )));
        };
        // The matched node of each descriptor, and the limit names replaced by matched ones.
        let mut matched = Vec::with_capacity(request.descriptors.len());
        let mut replaced = HashSet::new();
        for descriptor in &request.descriptors {
            let entries: Vec<(String, String)> = descriptor
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            if entries.is_empty() {
                return Err(tonic::Status::invalid_argument(
                    "a rate limit descriptor must have at least one entry",
                ));
            }
            let node = find(roots, &entries);
            for limit in node.iter().flat_map(|n| &n.limits) {
                replaced.extend(limit.replaces.iter().cloned());
            }
            matched.push((descriptor, entries, node));
        }
        let mut response = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..RateLimitResponse::default()
        };
        let mut tightest: Option<Status> = None;
        for (descriptor, entries, node) in matched {
            let status = self
                .decide_descriptor(
                    &request,
                    descriptor,
                    &entries,
                    node,
                    &replaced,
                    &mut tightest,
                )
                .await?;
            if status.code == Code::OverLimit as i32 {
                response.overall_code = Code::OverLimit as i32;
            }
            response.statuses.push(status);
        }
        if let Some(status) = &tightest {
            for (name, value) in status.header_values().iter() {
                if let Some(name) = HeaderValues::lower_case(name)
                    .filter(|n| n.starts_with("x-ratelimit") || *n == "retry-after")
                {
                    response.response_headers_to_add.push(HeaderValue {
                        key: name.to_owned(),
                        value: value.to_owned(),
                        ..HeaderValue::default()
                    });
                }
            }
        }
        Ok((response, tightest))
    }

    /// One descriptor's status: each of its limits decided, the tightest reported.
    async fn decide_descriptor(
        &self,
        request: &RateLimitRequest,
        descriptor: &RateLimitDescriptor,
        entries: &[(String, String)],
        node: Option<&Node>,
        replaced: &HashSet<String>,
        tightest: &mut Option<Status>,
    ) -> Result<DescriptorStatus, tonic::Status> {
        let ok = DescriptorStatus {
            code: Code::Ok as i32,
            ..DescriptorStatus::default()
        };
        let Some(node) = node else {
            return Ok(ok);
        };
        let hits = descriptor
            .hits_addend
            .as_ref()
            .map(|h| h.value)
            .unwrap_or(u64::from(request.hits_addend))
            .max(1);
        let identifier: String = entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\u{1f}");
        let mut answer: Option<(DescriptorStatus, u64)> = None;
        for limit in &node.limits {
            if limit.name.as_ref().is_some_and(|n| replaced.contains(n)) {
                continue;
            }
            let current = PbRateLimit {
                name: limit.name.clone().unwrap_or_default(),
                requests_per_unit: u32::try_from(limit.per_unit).unwrap_or(u32::MAX),
                unit: limit.unit as i32,
            };
            let Some(rule) = &limit.rule else {
                // Unlimited: OK, and nothing tighter.
                answer.get_or_insert((
                    DescriptorStatus {
                        current_limit: Some(current),
                        ..ok.clone()
                    },
                    u64::MAX,
                ));
                continue;
            };
            let started = Instant::now();
            let decided = if descriptor.is_negative_hits {
                self.limiter.refund(&identifier, rule, hits).await
            } else {
                self.limiter.check_n(&identifier, rule, hits).await
            };
            let status = match decided {
                Ok(status) => status,
                Err(ratethrottle::Error::InvalidCost { .. }) => {
                    // More hits than the limit ever admits.
                    let mut status = self
                        .limiter
                        .peek(&identifier, rule)
                        .await
                        .map_err(internal)?;
                    status.allowed = false;
                    status
                }
                Err(error) => return Err(internal(error)),
            };
            let over = !status.allowed && !descriptor.is_negative_hits;
            let label = if node.detailed {
                format!("{rule}|{identifier}")
            } else {
                rule.clone()
            };
            self.metrics
                .record(&label, &status, hits, Some(started.elapsed()));
            if over && node.shadow {
                self.metrics.record_shadow(&label, hits);
            }
            let code = if over && !node.shadow {
                Code::OverLimit
            } else {
                Code::Ok
            };
            let remaining = status.remaining;
            let this = DescriptorStatus {
                code: code as i32,
                current_limit: Some(current),
                limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                duration_until_reset: Some(pb_duration(status.reset_after)),
                ..DescriptorStatus::default()
            };
            let tighter = match &answer {
                None => true,
                Some((kept, kept_remaining)) => {
                    (code == Code::OverLimit && kept.code != Code::OverLimit as i32)
                        || (kept.code == this.code && remaining < *kept_remaining)
                }
            };
            if tighter {
                answer = Some((this, remaining));
            }
            if tightest
                .as_ref()
                .is_none_or(|t| (!status.allowed && t.allowed) || status.remaining < t.remaining)
            {
                *tightest = Some(status);
            }
        }
        Ok(answer.map_or(ok, |(status, _)| status))
    }
}

fn internal(error: ratethrottle::Error) -> tonic::Status {
    if error.is_store_unavailable() {
        tonic::Status::unavailable(error.to_string())
    } else {
        tonic::Status::internal(error.to_string())
    }
}
