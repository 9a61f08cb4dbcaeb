//! The limits of GraphQL operations in plain numbers, and the rules enforcing them.

use std::collections::BTreeMap;
use std::time::Duration;

use ratethrottle::{Rule, Strategy};

/// A points budget: `points` at most, restoring `restore_per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The most points a client holds (Shopify's `maximumAvailable`).
    pub points: u64,
    /// Points restored per second (`restoreRate`).
    pub restore_per_second: u64,
}

/// The limits in plain numbers, as the original's `GraphQLLimits` (its defaults) plus the
/// budget; [`GraphqlLimits::rules`] are the limiter rules enforcing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphqlLimits {
    /// Queries per minute per client (1000).
    pub queries_per_minute: u64,
    /// Mutations per minute per client (100).
    pub mutations_per_minute: u64,
    /// Subscriptions per minute per client (50).
    pub subscriptions_per_minute: u64,
    /// The most complex operation accepted (1000).
    pub max_complexity: u64,
    /// The deepest operation accepted (15).
    pub max_depth: u32,
    /// Calls per minute of single fields, by field name.
    pub field_limits: BTreeMap<String, u64>,
    /// A points budget per client (none).
    pub budget: Option<Budget>,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        GraphqlLimits {
            queries_per_minute: 1000,
            mutations_per_minute: 100,
            subscriptions_per_minute: 50,
            max_complexity: 1000,
            max_depth: 15,
            field_limits: BTreeMap::new(),
            budget: None,
        }
    }
}

impl GraphqlLimits {
    /// The rule of each kind of operation.
    pub const QUERY_RULE: &'static str = "graphql_queries";
    /// The rule of mutations.
    pub const MUTATION_RULE: &'static str = "graphql_mutations";
    /// The rule of subscriptions.
    pub const SUBSCRIPTION_RULE: &'static str = "graphql_subscriptions";
    /// The budget's rule (a token bucket).
    pub const BUDGET_RULE: &'static str = "graphql_points";

    /// The rule of a field's limit: `graphql_field_<name>`.
    pub fn field_rule(field: &str) -> String {
        format!("graphql_field_{field}")
    }

    /// The rules enforcing these limits: per minute, sliding_counter, no block; the budget a
    /// token bucket of `points` restoring `restore_per_second`.
    pub fn rules(&self) -> Vec<Rule> {
        let minute = Duration::from_secs(60);
        let per_minute =
            |name: &str, limit: u64| Rule::new(name, limit, minute).block_duration(Duration::ZERO);
        let mut rules = vec![
            per_minute(Self::QUERY_RULE, self.queries_per_minute),
            per_minute(Self::MUTATION_RULE, self.mutations_per_minute),
            per_minute(Self::SUBSCRIPTION_RULE, self.subscriptions_per_minute),
        ];
        for (field, &limit) in &self.field_limits {
            rules.push(per_minute(&Self::field_rule(field), limit));
        }
        if let Some(budget) = self.budget {
            rules.push(
                Rule::new(
                    Self::BUDGET_RULE,
                    budget.restore_per_second,
                    Duration::from_secs(1),
                )
                .strategy(Strategy::TokenBucket)
                .burst(budget.points)
                .block_duration(Duration::ZERO),
            );
        }
        rules
    }
}
