//! GraphQL cost and depth analysis for rate limiting, that fragments cannot fool.
//!
//! - **Fragments are priced as what they expand to.** Named and inline fragments are followed;
//!   each named fragment is priced once and reused (memoized), so a chain of fragments that
//!   expands 2^20 times is analysed in linear time, with its true (saturating) cost. Unknown
//!   fragments and fragment cycles are errors, as the GraphQL spec requires.
//! - **Lists multiply.** A field's `first`/`last`/`limit`/`take` argument (a literal or a
//!   variable) multiplies what it selects, nested lists compound, each multiplier capped at
//!   `max_list_size`; a list without such an argument counts `default_list_size`.
//! - **The original's pricing** (ratethrottle 1.4.0's `ComplexityAnalyzer`): a field costs its
//!   cost (1, or `field_costs`) × its depth × the multipliers above it × its own multiplier;
//!   `depth_weighted: false` drops the depth factor (a plain sum, for points budgets).
//! - **With a schema** ([`Schema`]), lists are known exactly and `type_costs` price fields by
//!   their type; without one, a field with arguments counts as a list (1.4.0's heuristic).
//! - **Input caps before parsing** ([`InputLimits`]): size, tokens, nesting. Malformed input
//!   is an error, never a panic.
//!
//! ```
//! use ratethrottle_graphql::{Analyzer, Pricing};
//!
//! let analyzer = Analyzer::new(Pricing { depth_weighted: false, ..Pricing::default() });
//! let query = "query { users(first: 100) { ...Card } }  fragment Card on User { name email }";
//! let analysis = analyzer.analyze(query, None, &()).unwrap();
//! assert_eq!(analysis.cost, 100 * (1 + 2)); // users ×100, each with its two fields
//! assert_eq!(analysis.depth, 2);
//! assert_eq!(analysis.fields, ["email", "name", "users"]);
//! ```

use std::collections::HashMap;

#[cfg(feature = "async-graphql")]
mod extension;
mod input;
mod limits;
mod parse;

#[cfg(feature = "async-graphql")]
pub use extension::{GraphqlClient, GraphqlThrottle};

pub use input::InputLimits;
pub use limits::{Budget, GraphqlLimits};
pub use parse::Document;
use parse::{Item, Operation, Size};

/// Why a query could not be analysed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The query text is over [`InputLimits::max_bytes`].
    #[error("the query is {bytes} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The cap.
        max: usize,
    },
    /// The query has more than [`InputLimits::max_tokens`] tokens.
    #[error("the query has more than {max} tokens")]
    TooManyTokens {
        /// The cap.
        max: usize,
    },
    /// Braces, parentheses or brackets nest deeper than [`InputLimits::max_nesting`].
    #[error("the query nests deeper than {max} levels")]
    TooDeep {
        /// The cap.
        max: usize,
    },
    /// Not a GraphQL document.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// No operation named so in the document.
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// Several operations and no operation name.
    #[error("the document has several operations: give the operation name")]
    AmbiguousOperation,
    /// A spread of a fragment the document does not define.
    #[error("unknown fragment {0:?}")]
    UnknownFragment(String),
    /// A fragment spreads itself, directly or through others.
    #[error("fragment {0:?} spreads itself (a cycle)")]
    FragmentCycle(String),
    /// Fragments spread inside fragments deeper than [`Analyzer::max_fragment_depth`].
    #[error("fragments nest deeper than {0} levels")]
    FragmentsTooDeep(usize),
}

/// Whether introspection fields (`__schema`, `__type`, `__typename`) are priced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Introspection {
    /// Priced as any other field.
    #[default]
    Priced,
    /// Free, and not counted in the depth.
    Exempt,
}

/// How fields are priced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pricing {
    /// The cost of a field without a cost of its own (1).
    pub default_field_cost: u64,
    /// Costs by field, as `"Type.field"` (with a schema, or under a type condition) or
    /// `"field"`.
    pub field_costs: HashMap<String, u64>,
    /// Costs of fields by their type's name (with a [`Schema`]).
    pub type_costs: HashMap<String, u64>,
    /// A list's size when no argument gives it (10).
    pub default_list_size: u64,
    /// The largest multiplier one list argument may give (1,000).
    pub max_list_size: u64,
    /// The arguments giving a list's size (`first`, `last`, `limit`, `take`; any case).
    pub list_arguments: Vec<String>,
    /// Whether a field's cost is multiplied by its depth, as 1.4.0 does (true).
    pub depth_weighted: bool,
    /// Whether introspection is priced (it is).
    pub introspection: Introspection,
}

impl Pricing {
    /// The cost of the field `name` of `parent` (when known), of type `ty` (when known).
    fn field_cost(&self, name: &str, parent: Option<&str>, ty: Option<&FieldType>) -> u64 {
        let typed = || {
            let parent = parent.filter(|_| !self.field_costs.is_empty())?;
            self.field_costs.get(&format!("{parent}.{name}"))
        };
        typed()
            .or_else(|| self.field_costs.get(name))
            .or_else(|| ty.and_then(|t| self.type_costs.get(&t.name)))
            .copied()
            .unwrap_or(self.default_field_cost)
    }
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            default_field_cost: 1,
            field_costs: HashMap::new(),
            type_costs: HashMap::new(),
            default_list_size: 10,
            max_list_size: 1000,
            list_arguments: ["first", "last", "limit", "take"]
                .map(str::to_owned)
                .to_vec(),
            depth_weighted: true,
            introspection: Introspection::Priced,
        }
    }
}

/// A field's type, as a [`Schema`] knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldType {
    /// The named type (`User` for `[User!]!`).
    pub name: String,
    /// Whether it is a list.
    pub is_list: bool,
}

/// What the analyser may know of the schema.
pub trait Schema {
    /// The root type of `operation` (`Query`, `Mutation`, `Subscription`).
    fn root_type(&self, operation: OperationKind) -> Option<String>;
    /// The type of `parent.field`.
    fn field_type(&self, parent: &str, field: &str) -> Option<FieldType>;
}

/// Where variables' values come from.
pub trait Variables {
    /// The integer value of `$name`, if it has one.
    fn integer(&self, name: &str) -> Option<i64>;
}

impl Variables for () {
    fn integer(&self, _name: &str) -> Option<i64> {
        None
    }
}

impl Variables for serde_json::Map<String, serde_json::Value> {
    fn integer(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl Variables for serde_json::Value {
    fn integer(&self, name: &str) -> Option<i64> {
        self.as_object()?.integer(name)
    }
}

/// The kind of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// `query`.
    Query,
    /// `mutation`.
    Mutation,
    /// `subscription`.
    Subscription,
}

impl OperationKind {
    /// `"query"`, `"mutation"` or `"subscription"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Query => "query",
            OperationKind::Mutation => "mutation",
            OperationKind::Subscription => "subscription",
        }
    }
}

/// What an operation costs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Analysis {
    /// Its kind.
    pub operation: OperationKind,
    /// Its name, if it has one.
    pub operation_name: Option<String>,
    /// Its cost (saturating at `u64::MAX`).
    pub cost: u64,
    /// Its depth: 1 for `{ a }`, 2 for `{ a { b } }`, fragments followed.
    pub depth: u32,
    /// The names of the fields it selects, fragments followed, sorted, each once.
    pub fields: Vec<String>,
}

/// The analyser: pricing and caps. Cheap to share; analyses do not change it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Analyzer {
    /// How fields are priced.
    pub pricing: Pricing,
    /// Caps on the query text.
    pub input: InputLimits,
    /// How deeply fragments may spread fragments (64).
    pub max_fragment_depth: usize,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(Pricing::default())
    }
}

impl Analyzer {
    /// An analyser with `pricing` and the default caps.
    pub fn new(pricing: Pricing) -> Self {
        Analyzer {
            pricing,
            input: InputLimits::default(),
            max_fragment_depth: 64,
        }
    }

    /// Analyses the operation `operation_name` (or the only one) of `query`.
    pub fn analyze(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: &dyn Variables,
    ) -> Result<Analysis, AnalysisError> {
        self.analyze_with(query, operation_name, variables, None)
    }

    /// [`analyze`](Self::analyze) knowing the schema.
    pub fn analyze_with(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: &dyn Variables,
        schema: Option<&dyn Schema>,
    ) -> Result<Analysis, AnalysisError> {
        let document = Document::parse_within(query, self.input)?;
        self.analyze_document(&document, operation_name, variables, schema)
    }

    /// Analyses a parsed document (its text's caps are not checked).
    pub fn analyze_document(
        &self,
        document: &Document<'_>,
        operation_name: Option<&str>,
        variables: &dyn Variables,
        schema: Option<&dyn Schema>,
    ) -> Result<Analysis, AnalysisError> {
        let operation = select(document, operation_name)?;
        let defaults = operation.defaults.iter().copied().collect();
        let mut walk = Walk {
            analyzer: self,
            document,
            variables,
            defaults,
            schema,
            fragments: foldhash::HashMap::default(),
            fragment_depth: 0,
            fields: foldhash::HashSet::default(),
        };
        let root = schema.and_then(|s| s.root_type(operation.kind));
        let priced = walk.selection_set(&operation.selection, root.as_deref())?;
        let cost = if self.pricing.depth_weighted {
            priced.unweighted.saturating_add(priced.weight_below)
        } else {
            priced.unweighted
        };
        Ok(Analysis {
            operation: operation.kind,
            operation_name: operation.name.map(str::to_owned),
            cost: u64::try_from(cost).unwrap_or(u64::MAX),
            depth: priced.depth,
            fields: {
                let mut fields: Vec<String> = walk.fields.into_iter().map(str::to_owned).collect();
                fields.sort_unstable();
                fields
            },
        })
    }
}

impl Analyzer {
    /// What the operation `operation_name` of `query` actually cost, given the response
    /// `data` its resolvers produced: the same pricing, with each field counted as often as it
    /// appears in the data (a list by its length, a missing or null object's selections not
    /// at all). For a refund of what was charged up front and not used.
    pub fn actual_cost<D: ResponseData>(
        &self,
        query: &str,
        operation_name: Option<&str>,
        data: &D,
    ) -> Result<u64, AnalysisError> {
        self.actual_cost_with(query, operation_name, data, None)
    }

    /// [`actual_cost`](Self::actual_cost) knowing the schema (for `type_costs` and
    /// `Type.field` costs, as [`analyze_with`](Self::analyze_with) prices them).
    pub fn actual_cost_with<D: ResponseData>(
        &self,
        query: &str,
        operation_name: Option<&str>,
        data: &D,
        schema: Option<&dyn Schema>,
    ) -> Result<u64, AnalysisError> {
        let document = Document::parse_within(query, self.input)?;
        let operation = select(&document, operation_name)?;
        let mut walk = Actual {
            pricing: &self.pricing,
            document: &document,
            schema,
            fragment_depth: 0,
            max_fragment_depth: self.max_fragment_depth,
            seen: foldhash::HashMap::default(),
        };
        let root = schema.and_then(|s| s.root_type(operation.kind));
        let cost = walk.items(&operation.selection, data, 1, root.as_deref())?;
        Ok(u64::try_from(cost).unwrap_or(u64::MAX))
    }
}

/// Pricing against response data.
struct Actual<'a> {
    pricing: &'a Pricing,
    document: &'a Document<'a>,
    schema: Option<&'a dyn Schema>,
    fragment_depth: usize,
    max_fragment_depth: usize,
    /// Each fragment's price on each object of the data at each depth, once (a fragment
    /// spread twice in a fan-out is not walked twice).
    seen: foldhash::HashMap<(&'a str, usize, u64), u128>,
}

/// A value of a GraphQL response's data, as [`Analyzer::actual_cost`] reads it.
pub trait ResponseData: Sized {
    /// The field `key` of an object (`None` for anything else, or a missing field).
    fn field(&self, key: &str) -> Option<&Self>;
    /// Whether it is an object.
    fn is_object(&self) -> bool;
    /// The elements of a list.
    fn elements(&self) -> Option<&[Self]>;
}

impl ResponseData for serde_json::Value {
    fn field(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }

    fn is_object(&self) -> bool {
        self.is_object()
    }

    fn elements(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
}

impl<'a> Actual<'a> {
    fn items<D: ResponseData>(
        &mut self,
        items: &'a [Item<'a>],
        data: &D,
        depth: u64,
        parent: Option<&str>,
    ) -> Result<u128, AnalysisError> {
        if !data.is_object() {
            return Ok(0);
        }
        let mut total = 0u128;
        for item in items {
            let part = match item {
                Item::Field {
                    name,
                    alias,
                    selection,
                    ..
                } => {
                    if name.starts_with("__") && self.pricing.introspection == Introspection::Exempt
                    {
                        continue;
                    }
                    let Some(value) = data.field(alias.unwrap_or(name)) else {
                        continue;
                    };
                    let weight = if self.pricing.depth_weighted {
                        depth
                    } else {
                        1
                    };
                    let ty = self
                        .schema
                        .zip(parent)
                        .and_then(|(schema, parent)| schema.field_type(parent, name));
                    let cost = self.pricing.field_cost(name, parent, ty.as_ref());
                    let each = u128::from(cost) * u128::from(weight);
                    let child = ty.as_ref().map(|t| t.name.as_str());
                    match value.elements() {
                        Some(elements) => {
                            let mut part = each.saturating_mul(elements.len() as u128);
                            for element in elements {
                                let below = self.items(selection, element, depth + 1, child)?;
                                part = part.saturating_add(below);
                            }
                            part
                        }
                        None => {
                            each.saturating_add(self.items(selection, value, depth + 1, child)?)
                        }
                    }
                }
                Item::Inline { on, selection } => {
                    self.items(selection, data, depth, on.or(parent))?
                }
                Item::Spread(name) => {
                    let key = (*name, std::ptr::from_ref(data) as usize, depth);
                    if let Some(&part) = self.seen.get(&key) {
                        part
                    } else {
                        let fragment =
                            self.document.fragments.get(name).ok_or_else(|| {
                                AnalysisError::UnknownFragment((*name).to_owned())
                            })?;
                        if self.fragment_depth >= self.max_fragment_depth {
                            return Err(AnalysisError::FragmentsTooDeep(self.max_fragment_depth));
                        }
                        self.fragment_depth += 1;
                        let part = self.items(&fragment.selection, data, depth, Some(fragment.on));
                        self.fragment_depth -= 1;
                        let part = part?;
                        self.seen.insert(key, part);
                        part
                    }
                }
            };
            total = total.saturating_add(part);
        }
        Ok(total)
    }
}

/// The operation to analyse.
fn select<'d, 'a>(
    document: &'d Document<'a>,
    operation_name: Option<&str>,
) -> Result<&'d Operation<'a>, AnalysisError> {
    match (&document.operations[..], operation_name) {
        ([only], None) => Ok(only),
        // An anonymous operation is the document's only one: any name selects it.
        ([only], Some(_)) if only.name.is_none() => Ok(only),
        (_, Some(name)) => document
            .operations
            .iter()
            .find(|o| o.name == Some(name))
            .ok_or_else(|| AnalysisError::UnknownOperation(name.to_owned())),
        (_, None) => Err(AnalysisError::AmbiguousOperation),
    }
}

/// A selection set's price, relative to the depth and multiplier it is selected at: at depth
/// `d` under multiplier `m` it costs `m × (d × unweighted + weight_below)` depth-weighted, and
/// `m × unweighted` plain. Both are linear in `m` and `d`, which is what lets a fragment be
/// priced once and reused wherever it is spread.
#[derive(Clone, Copy, Debug, Default)]
struct Priced {
    /// Σ over its fields of multiplier × (cost + what the field selects, unweighted).
    unweighted: u128,
    /// The extra cost of the fields below its top level from their depth.
    weight_below: u128,
    /// Its depth (0 when it selects nothing).
    depth: u32,
}

impl Priced {
    /// Adds what a fragment (inline or named) selects at the same depth and multiplier.
    fn merge(&mut self, other: Priced) {
        self.unweighted = self.unweighted.saturating_add(other.unweighted);
        self.weight_below = self.weight_below.saturating_add(other.weight_below);
        self.depth = self.depth.max(other.depth);
    }
}

/// A fragment being priced, or its price.
enum Memo {
    Pricing,
    Priced(Priced),
}

/// One analysis.
struct Walk<'a> {
    analyzer: &'a Analyzer,
    document: &'a Document<'a>,
    variables: &'a dyn Variables,
    defaults: foldhash::HashMap<&'a str, i64>,
    schema: Option<&'a dyn Schema>,
    fragments: foldhash::HashMap<&'a str, Memo>,
    fragment_depth: usize,
    /// The field names selected (each fragment's once, when it is first priced).
    fields: foldhash::HashSet<&'a str>,
}

impl<'a> Walk<'a> {
    fn selection_set(
        &mut self,
        items: &'a [Item<'a>],
        parent: Option<&str>,
    ) -> Result<Priced, AnalysisError> {
        let mut priced = Priced::default();
        for item in items {
            match item {
                Item::Field {
                    name,
                    sizes,
                    has_arguments,
                    selection,
                    ..
                } => self.field(name, sizes, *has_arguments, selection, parent, &mut priced)?,
                Item::Inline { on, selection } => {
                    let inner = self.selection_set(selection, on.or(parent))?;
                    priced.merge(inner);
                }
                Item::Spread(name) => {
                    let inner = self.fragment(name)?;
                    priced.merge(inner);
                }
            }
        }
        Ok(priced)
    }

    fn field(
        &mut self,
        name: &'a str,
        sizes: &[(&'a str, Size<'a>)],
        has_arguments: bool,
        selection: &'a [Item<'a>],
        parent: Option<&str>,
        priced: &mut Priced,
    ) -> Result<(), AnalysisError> {
        let pricing = &self.analyzer.pricing;
        if name.starts_with("__") && pricing.introspection == Introspection::Exempt {
            return Ok(());
        }
        let ty = self
            .schema
            .zip(parent)
            .and_then(|(schema, parent)| schema.field_type(parent, name));
        let cost = pricing.field_cost(name, parent, ty.as_ref());
        let multiplier = match self.list_size(sizes) {
            Some(size) => size,
            None => match &ty {
                Some(ty) if !ty.is_list => 1,
                Some(_) => pricing.default_list_size,
                None if !has_arguments => 1,
                None => pricing.default_list_size,
            },
        };
        let below = if selection.is_empty() {
            Priced::default()
        } else {
            let child_type = ty.as_ref().map(|t| t.name.as_str());
            self.selection_set(selection, child_type)?
        };
        let multiplier = u128::from(multiplier);
        let unweighted = u128::from(cost).saturating_add(below.unweighted);
        let weight_below = below.unweighted.saturating_add(below.weight_below);
        priced.unweighted = priced
            .unweighted
            .saturating_add(multiplier.saturating_mul(unweighted));
        priced.weight_below = priced
            .weight_below
            .saturating_add(multiplier.saturating_mul(weight_below));
        priced.depth = priced.depth.max(below.depth.saturating_add(1));
        self.fields.insert(name);
        Ok(())
    }

    /// The list size a field's arguments give, capped, if one does.
    fn list_size(&self, sizes: &[(&str, Size<'_>)]) -> Option<u64> {
        let pricing = &self.analyzer.pricing;
        sizes.iter().find_map(|&(name, value)| {
            if !pricing
                .list_arguments
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name))
            {
                return None;
            }
            let size = match value {
                Size::Variable(var) => self
                    .variables
                    .integer(var)
                    .or_else(|| self.defaults.get(var).copied()),
                Size::Literal(value) => Some(value),
                Size::Other => None,
            }?;
            Some(u64::try_from(size).unwrap_or(0).min(pricing.max_list_size))
        })
    }

    fn fragment(&mut self, name: &'a str) -> Result<Priced, AnalysisError> {
        match self.fragments.get(name) {
            Some(Memo::Priced(priced)) => return Ok(*priced),
            Some(Memo::Pricing) => return Err(AnalysisError::FragmentCycle(name.to_owned())),
            None => {}
        }
        let (&key, definition) = self
            .document
            .fragments
            .get_key_value(name)
            .ok_or_else(|| AnalysisError::UnknownFragment(name.to_owned()))?;
        if self.fragment_depth >= self.analyzer.max_fragment_depth {
            return Err(AnalysisError::FragmentsTooDeep(
                self.analyzer.max_fragment_depth,
            ));
        }
        self.fragments.insert(key, Memo::Pricing);
        self.fragment_depth += 1;
        let priced = self.selection_set(&definition.selection, Some(definition.on));
        self.fragment_depth -= 1;
        let priced = priced?;
        self.fragments.insert(key, Memo::Priced(priced));
        Ok(priced)
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
