//! Subscriptions through `junction gateway` to subgraphs it did not write (async-graphql, in
//! this process): events completed with another subgraph's fields, both WebSocket protocols
//! and server-sent events, the protocol's error cases, per-client limits, and the upstream
//! connection closed when the client stops or goes away.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::futures_util::Stream;
use async_graphql::{Context, EmptyMutation, ID, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::{GraphQL, GraphQLSubscription};
use futures_util::StreamExt;
use serde_json::{Value, json};
use support::Junction;
use support::federation::federation_sdl;
use support::graphql_ws::{LEGACY_WS, Received, TRANSPORT_WS, WsClient};
use tokio::sync::broadcast;

mod products {
    use super::*;

    #[derive(SimpleObject)]
    pub struct Product {
        pub upc: String,
        pub name: String,
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn product(&self, upc: String) -> Product {
            Product {
                name: format!("Product {upc}"),
                upc,
            }
        }

        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Product {
            Product {
                name: format!("Product {upc}"),
                upc,
            }
        }
    }
}

mod reviews {
    use super::*;

    #[derive(Clone, Debug)]
    pub struct Review {
        pub id: String,
        pub body: String,
        pub upc: String,
    }

    #[Object]
    impl Review {
        async fn id(&self) -> ID {
            ID(self.id.clone())
        }

        async fn body(&self) -> &str {
            &self.body
        }

        async fn product(&self) -> Product {
            Product {
                upc: self.upc.clone(),
            }
        }
    }

    pub struct Product {
        upc: String,
    }

    #[Object(extends)]
    impl Product {
        async fn upc(&self) -> &str {
            &self.upc
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn review_count(&self) -> i32 {
            0
        }

        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Product {
            Product { upc }
        }
    }

    /// The live subscriptions, counted while their streams exist.
    #[derive(Clone, Default)]
    pub struct Live(pub Arc<AtomicUsize>);

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub struct Subscription;

    #[Subscription]
    impl Subscription {
        /// New reviews, of one product or all.
        async fn review_added(
            &self,
            ctx: &Context<'_>,
            upc: Option<String>,
        ) -> impl Stream<Item = Review> + use<> {
            let reviews = ctx
                .data_unchecked::<broadcast::Sender<Review>>()
                .subscribe();
            let live = ctx.data_unchecked::<Live>().0.clone();
            live.fetch_add(1, Ordering::SeqCst);
            let counted = Counted(live);
            futures_util::stream::unfold((reviews, counted), |(mut reviews, counted)| async move {
                let review = reviews.recv().await.ok()?;
                Some((review, (reviews, counted)))
            })
            .filter(move |r| std::future::ready(upc.as_ref().is_none_or(|u| u == &r.upc)))
        }
    }
}

struct Setup {
    gateway: Junction,
    reviews: broadcast::Sender<reviews::Review>,
    live: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, None).await
    }

    /// `reviews_url` overrides where the router finds the reviews subgraph.
    async fn start_with(env: &[(&str, &str)], reviews_url: Option<&str>) -> Self {
        let products = Schema::build(
            products::Query,
            EmptyMutation,
            async_graphql::EmptySubscription,
        )
        .enable_federation()
        .finish();
        let (sender, _) = broadcast::channel(64);
        let live = reviews::Live::default();
        let reviews_schema = Schema::build(reviews::Query, EmptyMutation, reviews::Subscription)
            .enable_federation()
            .enable_subscription_in_federation()
            .data(sender.clone())
            .data(live.clone())
            .finish();
        let sources = vec![
            junction_federation::compose::SubgraphSource {
                name: "products".into(),
                url: serve(products.clone()).await,
                sdl: federation_sdl(&products),
            },
            junction_federation::compose::SubgraphSource {
                name: "reviews".into(),
                url: match reviews_url {
                    Some(url) => url.to_owned(),
                    None => serve(reviews_schema.clone()).await,
                },
                sdl: federation_sdl(&reviews_schema),
            },
        ];
        let supergraph = junction_federation::compose::compose(&sources).expect("composes");
        let (gateway, dir) = Junction::gateway(&supergraph, env);
        Self {
            gateway,
            reviews: sender,
            live: live.0,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        self.gateway.url("/graphql")
    }

    /// Waits until the reviews subgraph holds `n` live subscriptions.
    async fn live_upstreams(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.live.load(Ordering::SeqCst) != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the subgraph holds {} subscriptions, not {n}",
                self.live.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn review(&self, id: &str, upc: &str) {
        self.reviews
            .send(reviews::Review {
                id: id.into(),
                body: format!("review {id}"),
                upc: upc.into(),
            })
            .expect("a subscriber");
    }
}

/// A subgraph on a loopback port: POST for queries, WebSocket upgrades for subscriptions.
async fn serve<Q, M, S>(schema: Schema<Q, M, S>) -> String
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post_service(GraphQL::new(schema.clone()))
            .get_service(GraphQLSubscription::new(schema)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

const REVIEWS: &str =
    "subscription($upc: String) { reviewAdded(upc: $upc) { id body product { upc name } } }";

fn review_event(id: &str, upc: &str) -> Value {
    json!({"data": {"reviewAdded": {
        "id": id,
        "body": format!("review {id}"),
        "product": {"upc": upc, "name": format!("Product {upc}")},
    }}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_joined_and_the_upstream_closes_when_the_client_goes_away() {
    let setup = Setup::start(&[]).await;
    let mut client = WsClient::connect(&setup.url(), TRANSPORT_WS, json!({})).await;
    client.subscribe("1", REVIEWS, json!({"upc": "p1"})).await;
    setup.live_upstreams(1).await;

    setup.review("r0", "p2"); // filtered out by the subgraph
    setup.review("r1", "p1");
    setup.review("r2", "p1");
    for id in ["r1", "r2"] {
        let event = client.message().await;
        assert_eq!(
            event,
            json!({"id": "1", "type": "next", "payload": review_event(id, "p1")})
        );
    }

    client.close().await;
    setup.live_upstreams(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_one_operation_stops_only_its_upstream() {
    let setup = Setup::start(&[]).await;
    let mut client = WsClient::connect(&setup.url(), TRANSPORT_WS, json!({})).await;
    client.subscribe("a", REVIEWS, json!({})).await;
    client.subscribe("b", REVIEWS, json!({})).await;
    setup.live_upstreams(2).await;

    client.complete("a").await;
    setup.live_upstreams(1).await;
    setup.review("r1", "p1");
    let event = client.message().await;
    assert_eq!(event["id"], "b", "{event}");
    assert_eq!(event["payload"], review_event("r1", "p1"));

    // The id is free again once completed.
    client.subscribe("a", REVIEWS, json!({})).await;
    setup.live_upstreams(2).await;
    setup.review("r2", "p1");
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..2 {
        let event = client.message().await;
        assert_eq!(event["payload"], review_event("r2", "p1"));
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["a", "b"]);

    // Queries and mutations run over the socket too: one result, then complete.
    client
        .subscribe("q", "{ product(upc: \"p9\") { name } }", json!({}))
        .await;
    assert_eq!(
        client.message().await,
        json!({"id": "q", "type": "next", "payload": {"data": {"product": {"name": "Product p9"}}}})
    );
    assert_eq!(
        client.message().await,
        json!({"id": "q", "type": "complete"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_graphql_ws_protocol() {
    let setup = Setup::start(&[]).await;
    let mut client = WsClient::connect(&setup.url(), LEGACY_WS, json!({})).await;
    client.subscribe("1", REVIEWS, json!({})).await;
    setup.live_upstreams(1).await;
    setup.review("r1", "p3");
    assert_eq!(
        client.message().await,
        json!({"id": "1", "type": "data", "payload": review_event("r1", "p3")})
    );
    client.complete("1").await;
    assert_eq!(
        client.message().await,
        json!({"id": "1", "type": "complete"})
    );
    setup.live_upstreams(0).await;

    // connection_terminate closes the socket.
    client.send(json!({"type": "connection_terminate"})).await;
    assert!(matches!(client.receive().await, Received::Closed(1000, _)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events() {
    let setup = Setup::start(&[]).await;
    let http = reqwest::Client::new();
    let mut response = http
        .post(setup.url())
        .header("accept", "text/event-stream")
        .json(&json!({"query": REVIEWS, "variables": {"upc": "p1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    setup.live_upstreams(1).await;
    setup.review("r1", "p1");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let event = text.trim_start_matches(":\n\n"); // a keep-alive may come first
    let data = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    assert!(event.starts_with("event: next\n"), "{event}");
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        review_event("r1", "p1")
    );

    // The client going away ends the upstream subscription.
    drop(response);
    setup.live_upstreams(0).await;

    // A query as an event stream: one `next`, then `complete`.
    let text = http
        .post(setup.url())
        .header("accept", "text/event-stream")
        .json(&json!({"query": "{ product(upc: \"p2\") { name } }"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text,
        "event: next\ndata: {\"data\":{\"product\":{\"name\":\"Product p2\"}}}\n\nevent: complete\ndata:\n\n"
    );

    // A subscription without a stream to send it on is refused.
    let refused = http
        .post(setup.url())
        .json(&json!({"query": REVIEWS}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_with_their_codes() {
    let setup = Setup::start(&[("JUNCTION_GATEWAY__SUBSCRIPTIONS__INIT_TIMEOUT", "300ms")]).await;
    let url = setup.url();

    // No connection_init in time.
    let mut client = WsClient::open(&url, TRANSPORT_WS).await;
    assert!(matches!(client.receive().await, Received::Closed(4408, _)));

    // An operation before the acknowledgement.
    let mut client = WsClient::open(&url, TRANSPORT_WS).await;
    client.subscribe("1", REVIEWS, json!({})).await;
    assert!(matches!(client.receive().await, Received::Closed(4401, _)));

    // connection_init twice.
    let mut client = WsClient::connect(&url, TRANSPORT_WS, json!({})).await;
    client.send(json!({"type": "connection_init"})).await;
    assert!(matches!(client.receive().await, Received::Closed(4429, _)));

    // Not a message of the protocol.
    let mut client = WsClient::connect(&url, TRANSPORT_WS, json!({})).await;
    client.send(json!("hello")).await;
    assert!(matches!(client.receive().await, Received::Closed(4400, _)));

    // An invalid operation is an `error` for its id; the connection stays.
    let mut client = WsClient::connect(&url, TRANSPORT_WS, json!({})).await;
    client
        .subscribe("bad", "subscription { reviewAdded { nope } }", json!({}))
        .await;
    let error = client.message().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "bad");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // The same id, running twice.
    client.subscribe("1", REVIEWS, json!({})).await;
    client.subscribe("1", REVIEWS, json!({})).await;
    match client.receive().await {
        Received::Closed(code, reason) => {
            assert_eq!(code, 4409);
            assert_eq!(reason, "Subscriber for 1 already exists");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    setup.live_upstreams(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_runs_a_bounded_number_of_operations() {
    let setup = Setup::start(&[("JUNCTION_GATEWAY__SUBSCRIPTIONS__MAX_PER_CLIENT", "2")]).await;
    let mut client = WsClient::connect(&setup.url(), TRANSPORT_WS, json!({})).await;
    client.subscribe("1", REVIEWS, json!({})).await;
    client.subscribe("2", REVIEWS, json!({})).await;
    client.subscribe("3", REVIEWS, json!({})).await;
    let refused = client.message().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "3");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    setup.live_upstreams(2).await;

    // Another (anonymous) connection is another client.
    let mut other = WsClient::connect(&setup.url(), TRANSPORT_WS, json!({})).await;
    other.subscribe("1", REVIEWS, json!({})).await;
    setup.live_upstreams(3).await;

    // A completed operation gives its slot back.
    client.complete("1").await;
    setup.live_upstreams(2).await;
    client.subscribe("3", REVIEWS, json!({})).await;
    setup.live_upstreams(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_subgraph_is_an_error_for_the_operation() {
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/graphql", dead.local_addr().unwrap());
    drop(dead);
    let setup = Setup::start_with(&[], Some(&url)).await;
    let mut client = WsClient::connect(&setup.url(), TRANSPORT_WS, json!({})).await;
    client.subscribe("1", REVIEWS, json!({})).await;
    let error = client.message().await;
    assert_eq!(
        error,
        json!({"id": "1", "type": "error", "payload": [{
            "message": "the reviews service is unreachable",
            "extensions": {"code": "SUBREQUEST_HTTP_ERROR", "service": "reviews"},
        }]})
    );
}

/// The rate limit holds over a socket as over HTTP: every operation spends the allowance,
/// and one over it gets a `RATE_LIMITED` error with the wait, and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_over_a_socket_spend_the_rate_limit() {
    let setup = Setup::start(&[
        ("JUNCTION_GATEWAY__RATE_LIMIT__REQUESTS_PER_SECOND", "0.01"),
        ("JUNCTION_GATEWAY__RATE_LIMIT__BURST", "2"),
    ])
    .await;
    let mut client = WsClient::connect(&setup.url(), TRANSPORT_WS, json!({})).await;
    client.subscribe("1", REVIEWS, json!({})).await;
    client.subscribe("2", REVIEWS, json!({})).await;
    setup.live_upstreams(2).await;
    client.subscribe("3", REVIEWS, json!({})).await;
    let refused = client.message().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "3");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    assert!(
        refused["payload"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            > 0
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    setup.live_upstreams(2).await;
}
