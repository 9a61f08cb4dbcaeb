//! The extension in a real async-graphql server on axum, queried over loopback with reqwest.

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::{EmptySubscription, Object, Schema, SimpleObject};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use ratethrottle::Limiter;
use ratethrottle::clock::ManualClock;
use ratethrottle::store::Store;
use ratethrottle_graphql::{
    Analyzer, Budget, GraphqlClient, GraphqlLimits, GraphqlThrottle, Pricing,
};
use serde_json::{Value, json};

#[derive(SimpleObject)]
struct Item {
    id: i32,
}

#[derive(SimpleObject)]
struct Author {
    name: String,
}

#[derive(SimpleObject)]
struct Post {
    title: String,
    author: Author,
}

struct Query;

#[Object]
impl Query {
    /// Exactly `first` items.
    async fn items(&self, first: i32) -> Vec<Item> {
        (0..first).map(|id| Item { id }).collect()
    }

    /// At most 3 posts, whatever was asked for: the actual cost is below the requested one.
    async fn posts(&self, first: i32) -> Vec<Post> {
        (0..first.min(3))
            .map(|i| Post {
                title: format!("post {i}"),
                author: Author { name: "ann".into() },
            })
            .collect()
    }

    async fn nested(&self) -> Option<Box<Nested>> {
        Some(Box::new(Nested))
    }
}

struct Nested;

#[Object]
impl Nested {
    async fn nested(&self) -> Option<Box<Nested>> {
        Some(Box::new(Nested))
    }

    async fn leaf(&self) -> i32 {
        1
    }
}

struct Mutation;

#[Object]
impl Mutation {
    async fn create_post(&self, title: String) -> Post {
        Post {
            title,
            author: Author { name: "me".into() },
        }
    }
}

type BlogSchema = Schema<Query, Mutation, EmptySubscription>;

async fn graphql(
    State(schema): State<BlogSchema>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let client = headers
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    schema
        .execute(request.into_inner().data(GraphqlClient(client)))
        .await
        .into()
}

fn limits() -> GraphqlLimits {
    GraphqlLimits {
        max_depth: 6,
        max_complexity: 100_000,
        field_limits: [("createPost".to_owned(), 2)].into(),
        budget: Some(Budget {
            points: 1000,
            restore_per_second: 50,
        }),
        ..GraphqlLimits::default()
    }
}

/// A plain sum: each field 1, lists by their size.
fn analyzer() -> Analyzer {
    Analyzer::new(Pricing {
        depth_weighted: false,
        ..Pricing::default()
    })
}

async fn serve<S: Store>(limiter: &Limiter<S>, limits: &GraphqlLimits, fresh: bool) -> SocketAddr {
    serve_with(limiter, limits, fresh, analyzer()).await
}

async fn serve_with<S: Store>(
    limiter: &Limiter<S>,
    limits: &GraphqlLimits,
    fresh: bool,
    analyzer: Analyzer,
) -> SocketAddr {
    let throttle = if fresh {
        GraphqlThrottle::with_limits(limiter, limits, analyzer).unwrap()
    } else {
        GraphqlThrottle::over(limiter, limits, analyzer).unwrap()
    };
    let schema = Schema::build(Query, Mutation, EmptySubscription)
        .extension(throttle)
        .finish();
    let app = axum::Router::new()
        .route("/graphql", post(graphql))
        .with_state(schema);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn ask(address: SocketAddr, client: &str, query: &str) -> (HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/graphql"))
        .header("x-client", client)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    (headers, response.json().await.unwrap())
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_points_budget_charges_up_front_and_refunds_what_went_unused() {
    let clock = ManualClock::new();
    let limiter = Limiter::builder().clock(clock.clone()).build();
    let address = serve(&limiter, &limits(), true).await;

    // 100 posts asked (4 points each: 400), 3 returned (12): 388 refunded.
    let query = "{ posts(first: 100) { title author { name } } }";
    let (headers, body) = ask(address, "alice", query).await;
    assert_eq!(body["data"]["posts"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["extensions"]["cost"],
        json!({
            "requestedQueryCost": 400,
            "actualQueryCost": 12,
            "throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 988, "restoreRate": 50.0}
        })
    );
    assert_eq!(headers["x-ratelimit-remaining"], "988");

    // 400 points each, used in full: 988 → 588 → 188; the third overdraws.
    let items = "{ items(first: 200) { id } }";
    for left in [588, 188] {
        let (_, body) = ask(address, "alice", items).await;
        assert_eq!(body["extensions"]["cost"]["actualQueryCost"], 400);
        assert_eq!(
            body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"],
            left
        );
    }
    let (headers, body) = ask(address, "alice", items).await;
    assert_eq!(code(&body), "RATE_LIMIT_EXCEEDED", "{body}");
    assert_eq!(body["data"], Value::Null);
    // 212 points are missing at 50 a second: 5 s.
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], 5);
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(
        body["extensions"]["cost"],
        json!({
            "requestedQueryCost": 400,
            "actualQueryCost": 0,
            "throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 188, "restoreRate": 50.0}
        })
    );
    // Another client has its own budget; time restores alice's.
    let (_, body) = ask(address, "bob", items).await;
    assert!(body["errors"].is_null(), "{body}");
    clock.advance(Duration::from_secs(5));
    let (_, body) = ask(address, "alice", items).await;
    assert!(body["errors"].is_null(), "{body}");
    // More than the budget ever holds is refused outright.
    let (_, body) = ask(address, "carol", "{ items(first: 600) { id } }").await;
    assert_eq!(code(&body), "COMPLEXITY_LIMIT_EXCEEDED", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_complexity_fields_and_fragments_are_enforced() {
    let limiter = Limiter::in_memory();
    let mut limits = limits();
    limits.max_complexity = 500;
    let address = serve(&limiter, &limits, true).await;
    let deep = "{ nested { nested { nested { nested { nested { nested { leaf } } } } } } }";
    let (_, body) = ask(address, "d", deep).await;
    assert_eq!(code(&body), "DEPTH_LIMIT_EXCEEDED", "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "Query too deep. Depth: 7, Limit: 6"
    );
    // A fragment cannot hide the work: 2^10 spreads of a 1-point field.
    let mut fan_out = "{ ...F10 } fragment F0 on Query { nested { leaf } }".to_owned();
    for i in 1..=10 {
        fan_out += &format!(" fragment F{i} on Query {{ ...F{j} ...F{j} }}", j = i - 1);
    }
    let (_, body) = ask(address, "d", &fan_out).await;
    assert_eq!(code(&body), "COMPLEXITY_LIMIT_EXCEEDED", "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "Query too complex. Complexity: 2048, Limit: 500"
    );
    let create = r#"mutation { createPost(title: "t") { title } }"#;
    for _ in 0..2 {
        let (_, body) = ask(address, "writer", create).await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let (_, body) = ask(address, "writer", create).await;
    assert_eq!(code(&body), "FIELD_RATE_LIMIT_EXCEEDED", "{body}");
    assert!(
        body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_gives_list_types_and_type_costs() {
    let analyzer = Analyzer::new(Pricing {
        depth_weighted: false,
        type_costs: [("Item".to_owned(), 5), ("Int".to_owned(), 0)].into(),
        ..Pricing::default()
    });
    let address = serve_with(&Limiter::in_memory(), &limits(), true, analyzer).await;
    // items: a list of Item (5 each), ids free; nested: not a list although it could be
    // mistaken for one, and its leaf free.
    let (_, body) = ask(address, "t", "{ items(first: 2) { id } nested { leaf } }").await;
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 2 * 5 + 1);
    assert_eq!(body["extensions"]["cost"]["actualQueryCost"], 2 * 5 + 1);
}

#[allow(dead_code, unreachable_pub)]
#[path = "../../ratethrottle-redis/tests/server.rs"]
mod server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_redis_budget_exactly() {
    let Some(redis) = server::RedisServer::shared() else {
        return;
    };
    let limits = GraphqlLimits {
        budget: Some(Budget {
            points: 1000,
            restore_per_second: 1,
        }),
        ..GraphqlLimits::default()
    };
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let [first, rest @ ..] = &limits.rules()[..] else {
            unreachable!()
        };
        let limiter = server::limiter_on(
            redis,
            "graphql-fleet",
            ratethrottle_redis::FaultPolicy::FailOpen,
            first.clone(),
        )
        .await;
        for rule in rest {
            limiter.add_rule(rule.clone()).unwrap();
        }
        addresses.push(serve(&limiter, &limits, false).await);
    }
    // 100 points each (50 items × 2), used in full: 10 fit in 1,000.
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let address = addresses[i % 2];
            tokio::spawn(
                async move { ask(address, "fleet", "{ items(first: 50) { id } }").await.1 },
            )
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        let body = call.await.unwrap();
        if body["errors"].is_null() {
            admitted += 1;
        } else {
            assert_eq!(code(&body), "RATE_LIMIT_EXCEEDED", "{body}");
        }
    }
    assert_eq!(
        admitted, 10,
        "32 queries of 100 points through two servers, one budget of 1,000"
    );
}
