//! `NativeGraphQL`: the analyser of `ratethrottle-graphql` under `ratethrottle.graphQL`.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use ratethrottle_graphql::{Analyzer, Pricing, Variables};

/// Integer variables of an operation, from a Python dict.
struct IntegerVariables(HashMap<String, i64>);

impl Variables for IntegerVariables {
    fn integer(&self, name: &str) -> Option<i64> {
        self.0.get(name).copied()
    }
}

/// The analyser with its pricing.
#[pyclass(frozen, module = "ratethrottle._native")]
pub(crate) struct NativeGraphQL {
    analyzer: Analyzer,
}

#[pymethods]
impl NativeGraphQL {
    /// An analyser: `field_costs` by field (or `Type.field`), lists of `default_list_size`
    /// unless an argument says, each capped at `max_list_size`; `depth_weighted` as 1.4.0.
    #[new]
    #[pyo3(signature = (default_list_size = 10, field_costs = None, max_list_size = 1000, depth_weighted = true, introspection = true))]
    fn new(
        default_list_size: u64,
        field_costs: Option<HashMap<String, u64>>,
        max_list_size: u64,
        depth_weighted: bool,
        introspection: bool,
    ) -> Self {
        let pricing = Pricing {
            default_list_size,
            field_costs: field_costs.unwrap_or_default(),
            max_list_size,
            depth_weighted,
            introspection: if introspection {
                ratethrottle_graphql::Introspection::Priced
            } else {
                ratethrottle_graphql::Introspection::Exempt
            },
            ..Pricing::default()
        };
        NativeGraphQL {
            analyzer: Analyzer::new(pricing),
        }
    }

    /// `(operation kind, cost, depth, field names)` of the operation `operation_name` of
    /// `query`; `ValueError` with the reason when it cannot be analysed (syntax, unknown or
    /// cyclic fragments, an ambiguous or unknown operation, a query over the caps).
    #[pyo3(signature = (query, operation_name = None, variables = None))]
    fn analyze(
        &self,
        py: Python<'_>,
        query: &str,
        operation_name: Option<&str>,
        variables: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(&'static str, u64, u32, Vec<String>)> {
        let mut integers = HashMap::new();
        for (name, value) in variables.into_iter().flat_map(|v| v.iter()) {
            let (Ok(name), number) = (name.cast::<PyString>(), value.extract::<i64>()) else {
                continue;
            };
            let number = number.ok().or_else(|| {
                let text = value.cast::<PyString>().ok()?;
                text.to_str().ok()?.trim().parse().ok()
            });
            if let Some(number) = number {
                integers.insert(name.to_str()?.to_owned(), number);
            }
        }
        let variables = IntegerVariables(integers);
        let analysis = py
            .detach(|| self.analyzer.analyze(query, operation_name, &variables))
            .map_err(|error| PyValueError::new_err(error.to_string()))?;
        Ok((
            analysis.operation.as_str(),
            analysis.cost,
            analysis.depth,
            analysis.fields,
        ))
    }
}
