//! The classic four-subgraph federation shape (accounts, products, inventory, reviews),
//! written with async-graphql for the tests, each on its own loopback port: third-party
//! subgraphs as far as the router is concerned. Each counts the requests it gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::atomic::AtomicI32;

use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

/// Shared by every subgraph's mutations, so their order of execution shows.
static TICKS: AtomicI32 = AtomicI32::new(0);

fn tick() -> i32 {
    TICKS.fetch_add(1, Ordering::SeqCst) + 1
}
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::routing::post;

#[derive(Clone)]
pub struct Subgraph {
    pub url: String,
    requests: Arc<AtomicUsize>,
    /// The `x-request-id` of the last request, if it had one.
    last_request_id: Arc<std::sync::Mutex<Option<String>>>,
}

impl Subgraph {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn last_request_id(&self) -> Option<String> {
        self.last_request_id.lock().unwrap().clone()
    }
}

pub struct Subgraphs {
    pub accounts: Subgraph,
    pub products: Subgraph,
    pub inventory: Subgraph,
    pub reviews: Subgraph,
}

impl Subgraphs {
    /// Each subgraph on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on_ports(0).await
    }

    /// On `first`, `first + 1`, ... (or free ports when `first` is 0).
    pub async fn start_on_ports(first: u16) -> Self {
        let port = |n: u16| if first == 0 { 0 } else { first + n };
        Self {
            accounts: serve(
                Schema::build(accounts::Query, accounts::Mutation, EmptySubscription)
                    .enable_federation()
                    .finish(),
                port(0),
            )
            .await,
            products: serve(
                Schema::build(products::Query, EmptyMutation, EmptySubscription)
                    .enable_federation()
                    .finish(),
                port(1),
            )
            .await,
            inventory: serve(
                Schema::build(inventory::Query, EmptyMutation, EmptySubscription)
                    .enable_federation()
                    .finish(),
                port(2),
            )
            .await,
            reviews: serve(
                Schema::build(reviews::Query, reviews::Mutation, EmptySubscription)
                    .enable_federation()
                    .finish(),
                port(3),
            )
            .await,
        }
    }

    /// The checked-in supergraph with these subgraphs' addresses.
    pub fn supergraph(&self) -> String {
        include_str!("../../../gateway/federation/tests/supergraphs/classic.graphql")
            .replace("{{accounts}}", &self.accounts.url)
            .replace("{{products}}", &self.products.url)
            .replace("{{inventory}}", &self.inventory.url)
            .replace("{{reviews}}", &self.reviews.url)
    }

    pub fn total_requests(&self) -> usize {
        [
            &self.accounts,
            &self.products,
            &self.inventory,
            &self.reviews,
        ]
        .iter()
        .map(|s| s.requests())
        .sum()
    }
}

pub async fn serve<Q, M, S>(schema: Schema<Q, M, S>, port: u16) -> Subgraph
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let last_request_id = Arc::new(std::sync::Mutex::new(None));
    let last = Arc::clone(&last_request_id);
    let app = axum::Router::new()
        .route(
            "/graphql",
            post(
                move |State(schema): State<Schema<Q, M, S>>,
                      headers: axum::http::HeaderMap,
                      request: GraphQLRequest| {
                    let counter = Arc::clone(&counter);
                    *last.lock().unwrap() = headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        GraphQLResponse::from(schema.execute(request.into_inner()).await)
                    }
                },
            ),
        )
        .with_state(schema);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Subgraph {
        url,
        requests,
        last_request_id,
    }
}

pub mod accounts {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct User {
        pub id: ID,
        pub name: Option<String>,
        pub username: Option<String>,
    }

    fn users() -> Vec<User> {
        vec![
            User {
                id: "1".into(),
                name: Some("Ada Lovelace".into()),
                username: Some("@ada".into()),
            },
            User {
                id: "2".into(),
                name: Some("Alan Turing".into()),
                username: Some("@complete".into()),
            },
        ]
    }

    pub struct Mutation;

    #[Object]
    impl Mutation {
        async fn tick_accounts(&self) -> i32 {
            tick()
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn me(&self) -> Option<User> {
            users().into_iter().next()
        }

        async fn user(&self, id: ID) -> Option<User> {
            users().into_iter().find(|u| u.id == id)
        }

        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> Option<User> {
            users().into_iter().find(|u| u.id == id)
        }
    }
}

pub mod products {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub upc: String,
        pub name: Option<String>,
        pub price: Option<i32>,
        pub weight: Option<i32>,
        pub internal_sku: Option<String>,
    }

    pub fn all() -> Vec<Product> {
        let product = |upc: &str, name: &str, price, weight| Product {
            upc: upc.into(),
            name: Some(name.into()),
            price: Some(price),
            weight: Some(weight),
            internal_sku: Some(format!("SKU-{upc}")),
        };
        vec![
            product("1", "Table", 899, 100),
            product("2", "Couch", 1299, 1000),
            product("3", "Chair", 54, 50),
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn top_products(&self, #[graphql(default = 5)] first: i32) -> Vec<Product> {
            all().into_iter().take(first.max(0) as usize).collect()
        }

        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
            all().into_iter().find(|p| p.upc == upc)
        }
    }
}

pub mod inventory {
    use super::*;

    pub struct Product {
        upc: String,
        price: Option<i32>,
        weight: Option<i32>,
    }

    #[Object(extends)]
    impl Product {
        async fn upc(&self) -> &str {
            &self.upc
        }

        #[graphql(external)]
        async fn price(&self) -> Option<i32> {
            self.price
        }

        #[graphql(external)]
        async fn weight(&self) -> Option<i32> {
            self.weight
        }

        /// The warehouse of product 3 is offline: an error, on a nullable field.
        async fn in_stock(&self) -> async_graphql::Result<Option<bool>> {
            if self.upc == "3" {
                return Err("warehouse offline".into());
            }
            Ok(Some(self.upc != "2"))
        }

        /// Asks a slow warehouse system: takes three seconds.
        async fn restock_estimate(&self) -> Option<i32> {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            Some(7)
        }

        /// The same failure on a non-null field: the null propagates to the product.
        async fn stock_level(&self) -> async_graphql::Result<i32> {
            if self.upc == "3" {
                return Err("warehouse offline".into());
            }
            Ok(if self.upc == "2" { 0 } else { 12 })
        }

        /// Free for expensive things, else half the weight: needs price and weight, which
        /// live in the products subgraph.
        #[graphql(requires = "price weight")]
        async fn shipping_estimate(&self) -> Option<i32> {
            let (price, weight) = (self.price?, self.weight?);
            Some(if price > 1000 { 0 } else { weight / 2 })
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product_by_upc(
            &self,
            #[graphql(key)] upc: String,
            price: Option<i32>,
            weight: Option<i32>,
        ) -> Product {
            Product { upc, price, weight }
        }
    }
}

pub mod reviews {
    use super::*;

    #[derive(Clone)]
    pub struct Review {
        id: &'static str,
        body: &'static str,
        product: &'static str,
        author: &'static str,
    }

    fn all() -> Vec<Review> {
        vec![
            Review {
                id: "1",
                body: "Love it!",
                product: "1",
                author: "1",
            },
            Review {
                id: "2",
                body: "Too expensive.",
                product: "2",
                author: "1",
            },
            Review {
                id: "3",
                body: "Could be better.",
                product: "3",
                author: "2",
            },
            Review {
                id: "4",
                body: "Prefer something else.",
                product: "1",
                author: "2",
            },
        ]
    }

    fn username(id: &str) -> &'static str {
        if id == "1" { "@ada" } else { "@complete" }
    }

    #[Object]
    impl Review {
        async fn id(&self) -> ID {
            ID(self.id.into())
        }

        async fn body(&self) -> &str {
            self.body
        }

        #[graphql(provides = "username")]
        async fn author(&self) -> User {
            User {
                id: self.author.into(),
            }
        }

        async fn product(&self) -> Product {
            Product {
                upc: self.product.into(),
            }
        }
    }

    pub struct User {
        id: String,
    }

    #[Object(extends)]
    impl User {
        async fn id(&self) -> ID {
            ID(self.id.clone())
        }

        #[graphql(external)]
        async fn username(&self) -> &str {
            username(&self.id)
        }

        async fn reviews(&self) -> Vec<Review> {
            all().into_iter().filter(|r| r.author == self.id).collect()
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

        async fn reviews(&self) -> Vec<Review> {
            all()
                .into_iter()
                .filter(|r| r.product == self.upc)
                .collect()
        }
    }

    pub struct Mutation;

    #[Object]
    impl Mutation {
        async fn tick_reviews(&self) -> i32 {
            tick()
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> User {
            User { id: id.0 }
        }

        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Product {
            Product { upc }
        }

        #[graphql(entity)]
        async fn find_review_by_id(&self, id: ID) -> Option<Review> {
            all().into_iter().find(|r| r.id == id.0)
        }
    }
}

/// Subgraphs as `junction compose` sees them: name, address, and SDL (as `_service` gives it).
pub fn sources(
    subgraphs: Vec<(&str, &Subgraph, String)>,
) -> Vec<junction_federation::compose::SubgraphSource> {
    subgraphs
        .into_iter()
        .map(
            |(name, subgraph, sdl)| junction_federation::compose::SubgraphSource {
                name: name.into(),
                url: subgraph.url.clone(),
                sdl,
            },
        )
        .collect()
}

/// A schema's SDL with the federation directives, as its `_service { sdl }` answers.
pub fn federation_sdl<Q, M, S>(schema: &Schema<Q, M, S>) -> String
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    schema.sdl_with_options(
        async_graphql::SDLExportOptions::new()
            .federation()
            .compose_directive(),
    )
}
