//! The extension's cost on a trivial query: async-graphql executing `{ items(first: 1) { id } }`
//! with `GraphqlThrottle` (operation rate, caps, a points budget charged and refunded, the cost
//! extension; memory store) against the same schema without it: in process, and over HTTP
//! (async-graphql-axum on loopback, a reqwest client in the same process).
//!
//! ```text
//! cargo bench -p ratethrottle-graphql --features async-graphql --bench extension
//! ```

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};
use criterion::{Criterion, criterion_group, criterion_main};
use ratethrottle::Limiter;
use ratethrottle_graphql::{Analyzer, Budget, GraphqlClient, GraphqlLimits, GraphqlThrottle};

#[derive(SimpleObject)]
struct Item {
    id: i32,
}

struct Query;

#[Object]
impl Query {
    async fn items(&self, first: i32) -> Vec<Item> {
        (0..first).map(|id| Item { id }).collect()
    }
}

fn extension(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare = Schema::build(Query, EmptyMutation, EmptySubscription).finish();
    let limits = GraphqlLimits {
        queries_per_minute: u64::MAX / 4,
        budget: Some(Budget {
            points: 1 << 40,
            restore_per_second: 1 << 30,
        }),
        ..GraphqlLimits::default()
    };
    let throttle =
        GraphqlThrottle::with_limits(&Limiter::in_memory(), &limits, Analyzer::default()).unwrap();
    let guarded = Schema::build(Query, EmptyMutation, EmptySubscription)
        .extension(throttle)
        .finish();
    let query = "{ items(first: 1) { id } }";
    let request = || async_graphql::Request::new(query).data(GraphqlClient("bench".into()));
    let response = runtime.block_on(guarded.execute(request()));
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    assert!(response.extensions.contains_key("cost"));
    let mut group = c.benchmark_group("trivial query");
    group.bench_function("async-graphql alone", |b| {
        b.iter(|| runtime.block_on(bare.execute(request())))
    });
    group.bench_function("with GraphqlThrottle", |b| {
        b.iter(|| runtime.block_on(guarded.execute(request())))
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let serve = |schema: Schema<Query, EmptyMutation, EmptySubscription>| {
        runtime.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/",
                    axum::routing::post(
                        |axum::extract::State(schema): axum::extract::State<
                            Schema<Query, EmptyMutation, EmptySubscription>,
                        >,
                         request: async_graphql_axum::GraphQLRequest| async move {
                            async_graphql_axum::GraphQLResponse::from(
                                schema
                                    .execute(request.into_inner().data(GraphqlClient("b".into())))
                                    .await,
                            )
                        },
                    ),
                )
                .with_state(schema);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{address}/")
        })
    };
    let (bare_url, guarded_url) = (serve(bare), serve(guarded));
    let client = reqwest::Client::new();
    let body = format!(r#"{{"query":"{query}"}}"#);
    let ask = |url: &str| {
        runtime.block_on(async {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap()
        })
    };
    let mut group = c.benchmark_group("trivial query over HTTP");
    group.bench_function("async-graphql alone", |b| b.iter(|| ask(&bare_url)));
    group.bench_function("with GraphqlThrottle", |b| b.iter(|| ask(&guarded_url)));
    group.finish();
}

criterion_group!(benches, extension);
criterion_main!(benches);
