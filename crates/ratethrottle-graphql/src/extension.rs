//! [`GraphqlThrottle`]: an async-graphql extension that decides each operation once, before
//! it runs: operation rates per client, depth and complexity caps, per-field rates, and a
//! points budget charged the requested cost up front and refunded down to the actual cost
//! after execution, with a Shopify-style `extensions.cost` on every response.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextRequest,
};
use async_graphql::{ErrorExtensionValues, Name, Request, Response, ServerError, ServerResult};
use ratethrottle::store::{MemoryStore, Store};
use ratethrottle::{HeaderValues, Limiter, RuleHandle, Status};

use crate::{AnalysisError, Analyzer, GraphqlLimits, OperationKind, Variables};

/// The client a request counts for: insert it into the request's data
/// (`request.data(GraphqlClient(ip))`); requests without one count as `"anonymous"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphqlClient(pub String);

/// The extension: `Schema::build(..).extension(throttle)`. Cheap to clone (shared).
pub struct GraphqlThrottle<S: Store = MemoryStore> {
    shared: Arc<Shared<S>>,
}

impl<S: Store> Clone for GraphqlThrottle<S> {
    fn clone(&self) -> Self {
        GraphqlThrottle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Store> std::fmt::Debug for GraphqlThrottle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlThrottle")
            .field("max_depth", &self.shared.max_depth)
            .field("max_complexity", &self.shared.max_complexity)
            .field("budget", &self.shared.budget.as_ref().map(RuleHandle::name))
            .finish_non_exhaustive()
    }
}

struct Shared<S: Store> {
    analyzer: Analyzer,
    operations: [Option<RuleHandle<S>>; 3],
    max_depth: u32,
    max_complexity: u64,
    fields: BTreeMap<String, RuleHandle<S>>,
    budget: Option<RuleHandle<S>>,
}

impl<S: Store> GraphqlThrottle<S> {
    /// The extension enforcing `limits`, adding their rules to `limiter` and pricing with
    /// `analyzer`.
    pub fn with_limits(
        limiter: &Limiter<S>,
        limits: &GraphqlLimits,
        analyzer: Analyzer,
    ) -> Result<Self, ratethrottle::Error> {
        for rule in limits.rules() {
            limiter.add_rule(rule)?;
        }
        Self::over(limiter, limits, analyzer)
    }

    /// The extension enforcing `limits` with their rules already in `limiter` (a
    /// configuration's).
    pub fn over(
        limiter: &Limiter<S>,
        limits: &GraphqlLimits,
        analyzer: Analyzer,
    ) -> Result<Self, ratethrottle::Error> {
        let handle = |name: &str| limiter.rule_handle(name);
        let fields = limits
            .field_limits
            .keys()
            .map(|field| Ok((field.clone(), handle(&GraphqlLimits::field_rule(field))?)))
            .collect::<Result<_, ratethrottle::Error>>()?;
        Ok(GraphqlThrottle {
            shared: Arc::new(Shared {
                analyzer,
                operations: [
                    Some(handle(GraphqlLimits::QUERY_RULE)?),
                    Some(handle(GraphqlLimits::MUTATION_RULE)?),
                    Some(handle(GraphqlLimits::SUBSCRIPTION_RULE)?),
                ],
                max_depth: limits.max_depth,
                max_complexity: limits.max_complexity,
                fields,
                budget: limits
                    .budget
                    .map(|_| handle(GraphqlLimits::BUDGET_RULE))
                    .transpose()?,
            }),
        })
    }
}

impl<S: Store> ExtensionFactory for GraphqlThrottle<S> {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Throttle {
            shared: Arc::clone(&self.shared),
            charged: Mutex::new(None),
        })
    }
}

/// One request's extension: what it charged, for the refund and the cost extension.
struct Throttle<S: Store> {
    shared: Arc<Shared<S>>,
    charged: Mutex<Option<Charged>>,
}

struct Charged {
    client: String,
    query: String,
    operation_name: Option<String>,
    requested: u64,
    /// The budget's status after the charge (or its refusal), when there is a budget.
    status: Option<Status>,
    /// Whether the budget was charged (a refund is due for what goes unused).
    taken: bool,
    /// The status whose headers the response carries.
    headers: Option<Status>,
}

/// The operation's variables, as the analyser reads them.
struct RequestVariables<'a>(&'a async_graphql::Variables);

impl Variables for RequestVariables<'_> {
    fn integer(&self, name: &str) -> Option<i64> {
        match self.0.get(&Name::new(name))? {
            async_graphql::Value::Number(n) => n.as_i64(),
            async_graphql::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl crate::ResponseData for async_graphql::Value {
    fn field(&self, key: &str) -> Option<&Self> {
        match self {
            async_graphql::Value::Object(object) => object.get(key),
            _ => None,
        }
    }

    fn is_object(&self) -> bool {
        matches!(self, async_graphql::Value::Object(_))
    }

    fn elements(&self) -> Option<&[Self]> {
        match self {
            async_graphql::Value::List(elements) => Some(elements),
            _ => None,
        }
    }
}

/// The schema's types, for the analyser: exact list types, and `type_costs`.
impl crate::Schema for async_graphql::registry::Registry {
    fn root_type(&self, operation: OperationKind) -> Option<String> {
        match operation {
            OperationKind::Query => Some(self.query_type.clone()),
            OperationKind::Mutation => self.mutation_type.clone(),
            OperationKind::Subscription => self.subscription_type.clone(),
        }
    }

    fn field_type(&self, parent: &str, field: &str) -> Option<crate::FieldType> {
        use async_graphql::registry::MetaTypeName;
        let meta = self.types.get(parent)?.field_by_name(field)?;
        Some(crate::FieldType {
            name: MetaTypeName::concrete_typename(&meta.ty).to_owned(),
            is_list: MetaTypeName::create(&meta.ty).unwrap_non_null().is_list(),
        })
    }
}

/// An error with 1.4.0's code, and `retryAfter` (seconds) when known.
fn refusal(code: &str, message: String, status: Option<&Status>) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    if let Some(after) = status.and_then(Status::retry_after_secs) {
        extensions.set("retryAfter", after);
    }
    error.extensions = Some(extensions);
    error
}

fn kind_index(kind: OperationKind) -> usize {
    match kind {
        OperationKind::Query => 0,
        OperationKind::Mutation => 1,
        OperationKind::Subscription => 2,
    }
}

impl<S: Store> Throttle<S> {
    fn remember(&self, charged: Charged) {
        if let Ok(mut slot) = self.charged.lock() {
            *slot = Some(charged);
        }
    }

    /// Decides the request: `Err` refuses it.
    async fn decide(
        &self,
        request: &Request,
        registry: &async_graphql::registry::Registry,
    ) -> Result<(), ServerError> {
        let shared = &*self.shared;
        let variables = RequestVariables(&request.variables);
        let operation_name = request.operation_name.as_deref();
        let analysis = match shared.analyzer.analyze_with(
            &request.query,
            operation_name,
            &variables,
            Some(registry),
        ) {
            Ok(analysis) => analysis,
            Err(
                error @ (AnalysisError::TooLarge { .. }
                | AnalysisError::TooManyTokens { .. }
                | AnalysisError::TooDeep { .. }
                | AnalysisError::FragmentsTooDeep(_)),
            ) => {
                return Err(refusal(
                    "COMPLEXITY_LIMIT_EXCEEDED",
                    format!("Query refused: {error}"),
                    None,
                ));
            }
            // Not a valid document: async-graphql reports it as the spec says.
            Err(_) => return Ok(()),
        };
        let client = request
            .data
            .get(&TypeId::of::<GraphqlClient>())
            .and_then(|data| data.downcast_ref::<GraphqlClient>())
            .map_or("anonymous", |client| client.0.as_str())
            .to_owned();
        let mut charged = Charged {
            client,
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            requested: analysis.cost,
            status: None,
            taken: false,
            headers: None,
        };
        let result = self.enforce(&analysis, &mut charged).await;
        self.remember(charged);
        result
    }

    async fn enforce(
        &self,
        analysis: &crate::Analysis,
        charged: &mut Charged,
    ) -> Result<(), ServerError> {
        let shared = &*self.shared;
        let client = charged.client.clone();
        let internal = |error: ratethrottle::Error| {
            refusal(
                "INTERNAL_SERVER_ERROR",
                format!("rate limit unavailable: {error}"),
                None,
            )
        };
        let kind = analysis.operation.as_str();
        if let Some(rule) = &shared.operations[kind_index(analysis.operation)] {
            let status = rule.check(&client).await.map_err(internal)?;
            let allowed = status.allowed;
            charged.headers = Some(status.clone());
            if !allowed {
                let after = status.retry_after_secs().unwrap_or(0);
                return Err(refusal(
                    "RATE_LIMIT_EXCEEDED",
                    format!("Rate limit exceeded for {kind}. Retry after {after} seconds."),
                    Some(&status),
                ));
            }
        }
        if analysis.depth > shared.max_depth {
            return Err(refusal(
                "DEPTH_LIMIT_EXCEEDED",
                format!(
                    "Query too deep. Depth: {}, Limit: {}",
                    analysis.depth, shared.max_depth
                ),
                None,
            ));
        }
        if analysis.cost > shared.max_complexity {
            return Err(refusal(
                "COMPLEXITY_LIMIT_EXCEEDED",
                format!(
                    "Query too complex. Complexity: {}, Limit: {}",
                    analysis.cost, shared.max_complexity
                ),
                None,
            ));
        }
        for field in &analysis.fields {
            let Some(rule) = shared.fields.get(field) else {
                continue;
            };
            let status = rule.check(&client).await.map_err(internal)?;
            if !status.allowed {
                let after = status.retry_after_secs().unwrap_or(0);
                let message = format!(
                    "Rate limit exceeded for field '{field}'. Retry after {after} seconds."
                );
                return Err(refusal("FIELD_RATE_LIMIT_EXCEEDED", message, Some(&status)));
            }
        }
        let Some(budget) = &shared.budget else {
            return Ok(());
        };
        if analysis.cost == 0 {
            charged.status = budget.peek(&client).await.ok();
            return Ok(());
        }
        match budget.check_n(&client, analysis.cost).await {
            Ok(status) if status.allowed => {
                charged.taken = true;
                charged.headers = Some(status.clone());
                charged.status = Some(status);
                Ok(())
            }
            Ok(status) => {
                charged.headers = Some(status.clone());
                charged.status = Some(status.clone());
                Err(refusal(
                    "RATE_LIMIT_EXCEEDED",
                    format!(
                        "Throttled: the query costs {} points, {} are available.",
                        analysis.cost, status.remaining
                    ),
                    Some(&status),
                ))
            }
            // More than the budget ever holds.
            Err(ratethrottle::Error::InvalidCost { capacity, .. }) => {
                charged.status = budget.peek(&client).await.ok();
                Err(refusal(
                    "COMPLEXITY_LIMIT_EXCEEDED",
                    format!(
                        "The query costs {} points, more than the budget of {capacity} holds.",
                        analysis.cost
                    ),
                    None,
                ))
            }
            Err(error) => Err(internal(error)),
        }
    }

    /// After execution: the refund down to the actual cost, the cost extension, the headers.
    async fn settle(&self, response: &mut Response, registry: &async_graphql::registry::Registry) {
        let Some(mut charged) = self.charged.lock().ok().and_then(|mut slot| slot.take()) else {
            return;
        };
        let shared = &*self.shared;
        let actual = shared
            .analyzer
            .actual_cost_with(
                &charged.query,
                charged.operation_name.as_deref(),
                &response.data,
                Some(registry),
            )
            .unwrap_or(charged.requested)
            .min(charged.requested);
        if let Some(budget) = shared.budget.as_ref().filter(|_| charged.taken) {
            let unused = charged.requested - actual;
            if unused > 0
                && let Ok(status) = budget.refund(&charged.client, unused).await
            {
                charged.headers = Some(status.clone());
                charged.status = Some(status);
            }
        }
        let actual = if charged.taken { actual } else { 0 };
        let mut cost = BTreeMap::new();
        cost.insert(Name::new("requestedQueryCost"), charged.requested.into());
        cost.insert(Name::new("actualQueryCost"), actual.into());
        if let (Some(budget), Some(status)) = (&shared.budget, &charged.status) {
            let rule = budget.limiter().rule(budget.name());
            let restore = rule
                .as_ref()
                .map_or(0.0, |r| r.limit as f64 / r.window.as_secs_f64());
            let mut throttle = BTreeMap::new();
            let maximum = rule.map_or(status.limit, |r| r.capacity());
            throttle.insert(Name::new("maximumAvailable"), maximum.into());
            throttle.insert(Name::new("currentlyAvailable"), status.remaining.into());
            throttle.insert(Name::new("restoreRate"), restore.into());
            cost.insert(
                Name::new("throttleStatus"),
                async_graphql::Value::Object(throttle.into_iter().collect()),
            );
        }
        response.extensions.insert(
            "cost".to_owned(),
            async_graphql::Value::Object(cost.into_iter().collect()),
        );
        if let Some(status) = charged.headers {
            let values = status.header_values();
            for (name, value) in values.iter() {
                let name = HeaderValues::lower_case(name).map(http::HeaderName::from_static);
                if let (Some(name), Ok(value)) = (name, http::HeaderValue::from_str(value)) {
                    response.http_headers.insert(name, value);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: Store> Extension for Throttle<S> {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        self.settle(&mut response, &ctx.schema_env.registry).await;
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.decide(&request, &ctx.schema_env.registry).await?;
        next.run(ctx, request).await
    }
}
