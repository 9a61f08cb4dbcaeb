//! Analysing a realistic 10 KB query (a storefront page: aliased product lists with nested
//! variants, reviews and authors through named fragments, variables for page sizes).
//!
//! ```text
//! cargo bench -p ratethrottle-graphql --bench analyze
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use ratethrottle_graphql::{Analyzer, Document};
use serde_json::json;
use std::hint::black_box;

/// The query: sections of the page, aliased, until it is at least 10 KB.
fn storefront() -> String {
    let fragments = r#"
fragment Money on MoneyV2 { amount currencyCode }
fragment UserBrief on User { id name avatar(size: 64) { url width height } }
fragment Variant on ProductVariant {
  id title sku availableForSale quantityAvailable
  price { ...Money } compareAtPrice { ...Money }
  selectedOptions { name value }
  image { url altText width height }
}
fragment ProductCard on Product {
  id handle title vendor productType tags createdAt updatedAt
  priceRange { minVariantPrice { ...Money } maxVariantPrice { ...Money } }
  featuredImage { url altText width height }
  variants(first: $variants) { edges { cursor node { ...Variant } } pageInfo { hasNextPage endCursor } }
  reviews(first: 5) { edges { node { id rating title body createdAt author { ...UserBrief } } } }
}
"#;
    let mut sections = String::new();
    let mut i = 0;
    while sections.len() + fragments.len() < 10 * 1024 {
        sections += &format!(
            "  section{i}: collection(handle: \"c{i}\") {{ id title description \
             products(first: $products, sortKey: BEST_SELLING) {{ edges {{ cursor node {{ ...ProductCard }} }} \
             pageInfo {{ hasNextPage endCursor }} }} }}\n"
        );
        i += 1;
    }
    format!(
        "query Storefront($products: Int = 12, $variants: Int = 5) {{\n  shop {{ name primaryDomain {{ url }} }}\n{sections}}}\n{fragments}"
    )
}

fn analyze(c: &mut Criterion) {
    let query = storefront();
    assert!(query.len() >= 10 * 1024, "{} bytes", query.len());
    let analyzer = Analyzer::default();
    let variables = json!({"products": 24});
    let analysis = analyzer.analyze(&query, None, &variables).unwrap();
    println!(
        "storefront query: {} bytes, cost {}, depth {}, {} fields",
        query.len(),
        analysis.cost,
        analysis.depth,
        analysis.fields.len()
    );
    c.bench_function("analyze 10 KB storefront query (parse + price)", |b| {
        b.iter(|| {
            analyzer
                .analyze(black_box(&query), None, &variables)
                .unwrap()
        })
    });
    let document = Document::parse(&query).unwrap();
    c.bench_function("price the parsed storefront query", |b| {
        b.iter(|| {
            analyzer
                .analyze_document(black_box(&document), None, &variables, None)
                .unwrap()
        })
    });
    c.bench_function("async-graphql-parser: parse only (the reference)", |b| {
        b.iter(|| async_graphql_parser::parse_query(black_box(&query)).unwrap())
    });
    c.bench_function("parse only", |b| {
        b.iter(|| Document::parse(black_box(&query)).unwrap())
    });
}

criterion_group!(benches, analyze);
criterion_main!(benches);
