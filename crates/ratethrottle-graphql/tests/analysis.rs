//! The analyser: exact costs for a table of queries, fragment attacks, cycles, variables, and
//! malformed, huge and deeply nested input.

use std::collections::HashMap;

use proptest::prelude::*;
use ratethrottle_graphql::{
    AnalysisError, Analyzer, FieldType, Introspection, OperationKind, Pricing, Schema,
};
use serde_json::json;

fn plain() -> Analyzer {
    Analyzer::new(Pricing {
        depth_weighted: false,
        ..Pricing::default()
    })
}

#[test]
fn a_table_of_queries_costs_what_the_original_formula_gives() {
    // field cost × depth × the list multipliers above it × its own; a field with arguments
    // but no list argument counts as a list of 10 (1.4.0's heuristic without a schema).
    let table = [
        ("{ a }", 1, 1),
        ("{ a b c }", 3, 1),
        ("{ a { b c } }", 1 + 2 + 2, 2),
        ("{ users(first: 5) { name } }", 5 + 2 * 5, 2),
        ("{ users(LIMIT: \"7\") { name } }", 7 + 2 * 7, 2),
        ("{ user(id: 1) { name } }", 10 + 2 * 10, 2),
        // Nested lists compound (1.4.0 multiplied by the parent's list only: 2 + 12 + 9).
        (
            "{ a(first: 2) { b(first: 3) { c } } }",
            2 + 2 * 2 * 3 + 3 * 2 * 3,
            3,
        ),
        ("query Q { ...F } fragment F on Query { a b }", 2, 1),
        ("{ a { ... on A { b } ... { c } } }", 1 + 2 + 2, 2),
        ("mutation { create(input: {x: 1}) { id } }", 10 + 2 * 10, 2),
    ];
    for (query, expected_cost, expected_depth) in table {
        let analysis = Analyzer::default().analyze(query, None, &()).unwrap();
        assert_eq!(
            (analysis.cost, analysis.depth),
            (expected_cost, expected_depth),
            "{query}"
        );
    }
    assert_eq!(plain().analyze("{ a { b c } }", None, &()).unwrap().cost, 3);
}

#[test]
fn a_fragment_is_priced_as_what_it_expands_to() {
    let fields: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
    let query = format!(
        "{{ ...Big }} fragment Big on Query {{ {} }}",
        fields.join(" ")
    );
    let analysis = plain().analyze(&query, None, &()).unwrap();
    assert_eq!(analysis.cost, 1000, "1.4.0 priced it 10");
    assert_eq!(analysis.fields.len(), 1000);
    // Nested inside a list, at depth 2.
    let query = format!(
        "{{ items(first: 50) {{ ...Big }} }} fragment Big on Item {{ {} }}",
        fields.join(" ")
    );
    let analysis = Analyzer::default().analyze(&query, None, &()).unwrap();
    assert_eq!(analysis.cost, 50 + 50 * 1000 * 2);
    assert_eq!(analysis.depth, 2);
}

/// `fragment F{i} on Query { ...F{i-1} ...F{i-1} }`, `levels` of them over `base`.
fn doubling_chain(levels: usize, base: &str) -> String {
    let mut query = format!("{{ ...F{levels} }} fragment F0 on Query {{ {base} }}");
    for i in 1..=levels {
        query += &format!(" fragment F{i} on Query {{ ...F{j} ...F{j} }}", j = i - 1);
    }
    query
}

#[test]
fn exponential_fragment_fan_out_is_analysed_in_linear_time() {
    let analysis = plain()
        .analyze(&doubling_chain(20, "a"), None, &())
        .unwrap();
    assert_eq!(analysis.cost, 1 << 20, "2^20 expansions of one field");
    assert_eq!(analysis.depth, 1);
    let analysis = Analyzer::default()
        .analyze(&doubling_chain(20, "a(first: 3) { b }"), None, &())
        .unwrap();
    assert_eq!(analysis.cost, (1 << 20) * (3 + 3 * 2));
    // 2^60 expansions of a list of lists: the true cost is beyond u64; it saturates.
    let analysis = Analyzer::default()
        .analyze(
            &doubling_chain(60, "a(first: 1000) { b(first: 1000) { c } }"),
            None,
            &(),
        )
        .unwrap();
    assert_eq!(analysis.cost, u64::MAX);
}

#[test]
fn cycles_unknown_fragments_and_ambiguous_operations_are_errors() {
    let analyzer = Analyzer::default();
    let errors = [
        (
            "{ ...A } fragment A on Query { ...B } fragment B on Query { a ...A }",
            AnalysisError::FragmentCycle("A".into()),
        ),
        (
            "{ ...A } fragment A on Query { a { ...A } }",
            AnalysisError::FragmentCycle("A".into()),
        ),
        (
            "{ ...Missing }",
            AnalysisError::UnknownFragment("Missing".into()),
        ),
        (
            "query A { a } query B { b }",
            AnalysisError::AmbiguousOperation,
        ),
    ];
    for (query, expected) in errors {
        assert_eq!(analyzer.analyze(query, None, &()), Err(expected), "{query}");
    }
    assert_eq!(
        analyzer.analyze("query A { a } query B { b c }", Some("C"), &()),
        Err(AnalysisError::UnknownOperation("C".into()))
    );
    let b = analyzer
        .analyze("query A { a } query B { b c }", Some("B"), &())
        .unwrap();
    assert_eq!((b.cost, b.operation_name.as_deref()), (2, Some("B")));
    let chain = (0..70)
        .map(|i| format!("fragment F{i} on Query {{ ...F{} }}", i + 1))
        .collect::<Vec<_>>()
        .join(" ");
    let query = format!("{{ ...F0 }} {chain} fragment F70 on Query {{ a }}");
    assert_eq!(
        analyzer.analyze(&query, None, &()),
        Err(AnalysisError::FragmentsTooDeep(64))
    );
}

#[test]
fn variables_drive_the_multipliers_with_defaults_and_a_cap() {
    let query = "query Items($n: Int = 4) { items(first: $n) { id } }";
    let analyzer = plain();
    let with =
        |variables: serde_json::Value| analyzer.analyze(query, None, &variables).unwrap().cost;
    assert_eq!(with(json!({})), 4 * 2, "the default value");
    assert_eq!(with(json!({"n": 7})), 7 * 2);
    assert_eq!(with(json!({"n": "9"})), 9 * 2);
    assert_eq!(
        with(json!({"n": 10_000_000})),
        1000 * 2,
        "capped at max_list_size"
    );
    assert_eq!(with(json!({"n": -5})), 0);
    let no_default = "query($n: Int) { items(first: $n) { id } }";
    assert_eq!(
        analyzer.analyze(no_default, None, &()).unwrap().cost,
        10 * 2
    );
}

#[test]
fn field_and_type_costs_and_introspection() {
    let mut pricing = Pricing {
        depth_weighted: false,
        field_costs: HashMap::from([("search".to_owned(), 50), ("User.posts".to_owned(), 5)]),
        type_costs: HashMap::from([("Post".to_owned(), 3), ("String".to_owned(), 0)]),
        ..Pricing::default()
    };
    let analyzer = Analyzer::new(pricing.clone());
    assert_eq!(
        analyzer.analyze("{ search a }", None, &()).unwrap().cost,
        51
    );
    assert_eq!(
        analyzer
            .analyze("{ me { ... on User { posts } } }", None, &())
            .unwrap()
            .cost,
        1 + 5
    );
    struct Blog;
    impl Schema for Blog {
        fn root_type(&self, _: OperationKind) -> Option<String> {
            Some("Query".into())
        }
        fn field_type(&self, parent: &str, field: &str) -> Option<FieldType> {
            let (name, is_list) = match (parent, field) {
                ("Query", "me") => ("User", false),
                ("Query", "post") => ("Post", false),
                ("User", "posts") => ("Post", true),
                ("Post", "title") => ("String", false),
                _ => return None,
            };
            Some(FieldType {
                name: name.into(),
                is_list,
            })
        }
    }
    let query = "{ me { posts { title } } post(id: 3) { title } }";
    let analysis = analyzer
        .analyze_with(query, None, &(), Some(&Blog))
        .unwrap();
    // me 1 + posts (User.posts: 5, a list of 10, titles free) 10 × 5 + post (Post: 3, one).
    assert_eq!(analysis.cost, 1 + 10 * 5 + 3);
    pricing.introspection = Introspection::Exempt;
    let query = "{ __schema { types { name } } a }";
    assert_eq!(
        Analyzer::new(pricing)
            .analyze(query, None, &())
            .unwrap()
            .cost,
        1
    );
    assert_eq!(plain().analyze(query, None, &()).unwrap().cost, 4);
}

#[test]
fn the_operation_kind_and_fields_are_reported() {
    let analysis = Analyzer::default()
        .analyze(
            "subscription S { onPost { id author { name } } }",
            None,
            &(),
        )
        .unwrap();
    assert_eq!(analysis.operation, OperationKind::Subscription);
    assert_eq!(analysis.operation_name.as_deref(), Some("S"));
    assert_eq!(analysis.fields, ["author", "id", "name", "onPost"]);
}

#[test]
fn malformed_huge_and_deeply_nested_input_is_refused_cleanly() {
    let analyzer = Analyzer::default();
    assert!(matches!(
        analyzer.analyze("{ a ", None, &()),
        Err(AnalysisError::Syntax(_))
    ));
    assert!(matches!(
        analyzer.analyze("", None, &()),
        Err(AnalysisError::Syntax(_))
    ));
    assert!(matches!(
        analyzer.analyze(&"{ a }".repeat(30_000), None, &()),
        Err(AnalysisError::TooLarge { .. })
    ));
    assert!(matches!(
        analyzer.analyze(&format!("{{ {} }}", "a ".repeat(20_000)), None, &()),
        Err(AnalysisError::TooManyTokens { .. })
    ));
    let deep = format!("{}{}", "{ a ".repeat(100), "}".repeat(100));
    assert_eq!(
        analyzer.analyze(&deep, None, &()),
        Err(AnalysisError::TooDeep { max: 64 })
    );
    let list = format!("{{ a(x: {}1{}) }}", "[".repeat(1000), "]".repeat(1000));
    assert_eq!(
        analyzer.analyze(&list, None, &()),
        Err(AnalysisError::TooDeep { max: 64 })
    );
    // Within the caps, 60 levels deep parses and prices.
    let deep = format!("{}{}", "{ a ".repeat(60), "}".repeat(60));
    assert_eq!(analyzer.analyze(&deep, None, &()).unwrap().depth, 60);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_analyser_never_panics(text in "\\PC{0,300}") {
        let _ = Analyzer::default().analyze(&text, None, &());
    }

    #[test]
    fn the_analyser_never_panics_on_graphql_like_input(
        text in "[{}()\\[\\]a-c .:$!@#\"\\\\0-9,\n]{0,400}|(query|fragment|on|\\.\\.\\.|[{}a-c ]){0,80}"
    ) {
        let _ = Analyzer::default().analyze(&text, None, &());
        let _ = plain().analyze(&text, Some("a"), &json!({"a": 3}));
    }
}

#[test]
fn the_actual_cost_counts_what_the_response_holds() {
    let analyzer = plain();
    let query = "query { first: users(first: 10) { name ...Extra } me { name } gone { name } }
                 fragment Extra on User { email }";
    let requested = analyzer.analyze(query, None, &()).unwrap().cost;
    assert_eq!(requested, 10 * 3 + 2 + 2);
    let data = json!({
        "first": [{"name": "a", "email": "x"}, {"name": "b", "email": "y"}],
        "me": {"name": "c"},
        "gone": null
    });
    // first: 2 users × (1 + name + email) = 6; me: 2; gone: 1 (resolved, null).
    assert_eq!(analyzer.actual_cost(query, None, &data).unwrap(), 6 + 2 + 1);
    assert_eq!(analyzer.actual_cost(query, None, &json!(null)).unwrap(), 0);
    // Depth-weighted as the requested cost is.
    let weighted = Analyzer::default();
    let data = json!({"a": [{"b": 1}, {"b": 2}, {"b": 3}]});
    assert_eq!(
        weighted
            .actual_cost("{ a(first: 9) { b } }", None, &data)
            .unwrap(),
        3 + 3 * 2
    );
    // A fan-out of fragments over the data is priced once per fragment and object.
    let actual = plain()
        .actual_cost(&doubling_chain(40, "a"), None, &json!({"a": 1}))
        .unwrap();
    assert_eq!(actual, 1 << 40);
}
