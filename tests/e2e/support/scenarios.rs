//! Federation scenarios for the causes of issue #22, each with subgraphs written for it.
//!
//! `Shop` (@requires): `store` owns products (name, price, weight) and lists them; `shipping`
//! computes `shippingCost` from `price weight` (`@requires`) and also returns a product of its
//! own (`cheapest`), so the required fields must be fetched from `store` for an entity the
//! requiring subgraph already returned; `tax` computes `total` from `price shippingCost`, a
//! required field itself computed through `@requires` (chained).
//!
//! `Parts` (choosing where to go): `parts` lists products with their category (a value type
//! holding only `id` there); `details` knows the same category type with `details` too, and
//! reaches it only through `Product`'s key, so `category.details` needs a hop through the
//! parent entity.
//!
//! `Feed` (@requires with arguments, @inaccessible): `posts` lists posts with their comments
//! (`comments(limit:)`) and a visibility whose value `DRAFT` is `@inaccessible`; `authors`
//! answers a post's `author` from `comments(limit: 3) { authorId }` (`@requires` with an
//! argument), refusing any other number of comments, so a client's own `comments(limit: 1)` in
//! the same selection must not be taken for the required one.

use async_graphql::{
    EmptyMutation, EmptySubscription, Enum, ID, InputObject, Object, Schema, SimpleObject,
};

use super::federation::{Subgraph, federation_sdl, serve, sources};

pub struct Shop {
    pub store: Subgraph,
    pub shipping: Subgraph,
    pub tax: Subgraph,
}

fn store_schema() -> Schema<store::Query, EmptyMutation, EmptySubscription> {
    Schema::build(store::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn shipping_schema() -> Schema<shipping::Query, EmptyMutation, EmptySubscription> {
    Schema::build(shipping::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn tax_schema() -> Schema<tax::Query, EmptyMutation, EmptySubscription> {
    Schema::build(tax::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

impl Shop {
    pub async fn start() -> Self {
        Self {
            store: serve(store_schema(), 0).await,
            shipping: serve(shipping_schema(), 0).await,
            tax: serve(tax_schema(), 0).await,
        }
    }

    pub fn sources(&self) -> Vec<junction_federation::compose::SubgraphSource> {
        sources(vec![
            ("store", &self.store, federation_sdl(&store_schema())),
            (
                "shipping",
                &self.shipping,
                federation_sdl(&shipping_schema()),
            ),
            ("tax", &self.tax, federation_sdl(&tax_schema())),
        ])
    }
}

pub mod store {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub id: ID,
        pub name: Option<String>,
        pub price: Option<i32>,
        pub weight: Option<i32>,
    }

    pub fn all() -> Vec<Product> {
        vec![
            Product {
                id: "p1".into(),
                name: Some("Lamp".into()),
                price: Some(30),
                weight: Some(4),
            },
            Product {
                id: "p2".into(),
                name: Some("Desk".into()),
                price: Some(250),
                weight: Some(40),
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn products(&self) -> Vec<Product> {
            all()
        }

        #[graphql(entity)]
        async fn find_product_by_id(&self, id: ID) -> Option<Product> {
            all().into_iter().find(|p| p.id == id)
        }
    }
}

pub mod shipping {
    use super::*;

    pub struct Product {
        id: ID,
        price: Option<i32>,
        weight: Option<i32>,
    }

    #[Object]
    impl Product {
        async fn id(&self) -> &ID {
            &self.id
        }

        #[graphql(external)]
        async fn price(&self) -> Option<i32> {
            self.price
        }

        #[graphql(external)]
        async fn weight(&self) -> Option<i32> {
            self.weight
        }

        /// Free from 100 up, else twice the weight: refuses to guess without both.
        #[graphql(requires = "price weight")]
        async fn shipping_cost(&self) -> async_graphql::Result<i32> {
            match (self.price, self.weight) {
                (Some(price), _) if price >= 100 => Ok(0),
                (Some(_), Some(weight)) => Ok(weight * 2),
                _ => Err("price and weight were not sent".into()),
            }
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        /// A product this subgraph returns itself: only its id is known here.
        async fn cheapest(&self) -> Product {
            Product {
                id: "p1".into(),
                price: None,
                weight: None,
            }
        }

        #[graphql(entity)]
        async fn find_product_by_id(
            &self,
            #[graphql(key)] id: ID,
            price: Option<i32>,
            weight: Option<i32>,
        ) -> Product {
            Product { id, price, weight }
        }
    }
}

pub mod tax {
    use super::*;

    pub struct Product {
        id: ID,
        price: Option<i32>,
        shipping_cost: Option<i32>,
    }

    #[Object]
    impl Product {
        async fn id(&self) -> &ID {
            &self.id
        }

        #[graphql(external)]
        async fn price(&self) -> Option<i32> {
            self.price
        }

        #[graphql(external)]
        async fn shipping_cost(&self) -> Option<i32> {
            self.shipping_cost
        }

        /// What the customer pays: price and shipping.
        #[graphql(requires = "price shippingCost")]
        async fn total(&self) -> async_graphql::Result<i32> {
            match (self.price, self.shipping_cost) {
                (Some(price), Some(shipping)) => Ok(price + shipping),
                _ => Err("price and shippingCost were not sent".into()),
            }
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product_by_id(
            &self,
            #[graphql(key)] id: ID,
            price: Option<i32>,
            shipping_cost: Option<i32>,
        ) -> Product {
            Product {
                id,
                price,
                shipping_cost,
            }
        }
    }
}

pub struct Parts {
    pub parts: Subgraph,
    pub details: Subgraph,
}

fn parts_schema() -> Schema<parts::Query, EmptyMutation, EmptySubscription> {
    Schema::build(parts::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn details_schema() -> Schema<details::Query, EmptyMutation, EmptySubscription> {
    Schema::build(details::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

impl Parts {
    pub async fn start() -> Self {
        Self {
            parts: serve(parts_schema(), 0).await,
            details: serve(details_schema(), 0).await,
        }
    }

    pub fn sources(&self) -> Vec<junction_federation::compose::SubgraphSource> {
        sources(vec![
            ("parts", &self.parts, federation_sdl(&parts_schema())),
            ("details", &self.details, federation_sdl(&details_schema())),
        ])
    }
}

pub mod parts {
    use super::*;

    #[derive(SimpleObject, Clone)]
    #[graphql(shareable)]
    pub struct Category {
        pub id: ID,
    }

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub id: ID,
        pub name: String,
        #[graphql(shareable)]
        pub category: Category,
    }

    fn all() -> Vec<Product> {
        vec![
            Product {
                id: "bolt".into(),
                name: "Bolt".into(),
                category: Category { id: "c1".into() },
            },
            Product {
                id: "gear".into(),
                name: "Gear".into(),
                category: Category { id: "c2".into() },
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn parts(&self) -> Vec<Product> {
            all()
        }

        #[graphql(entity)]
        async fn find_product_by_id(&self, id: ID) -> Option<Product> {
            all().into_iter().find(|p| p.id == id)
        }
    }
}

pub mod details {
    use super::*;

    #[derive(SimpleObject, Clone)]
    #[graphql(shareable)]
    pub struct Category {
        pub id: ID,
        pub details: String,
    }

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub id: ID,
        #[graphql(shareable)]
        pub category: Category,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product_by_id(&self, id: ID) -> Option<Product> {
            let (category, details) = match id.as_str() {
                "bolt" => ("c1", "fasteners, steel"),
                "gear" => ("c2", "transmission, brass"),
                _ => return None,
            };
            Some(Product {
                id,
                category: Category {
                    id: category.into(),
                    details: details.into(),
                },
            })
        }
    }
}

pub struct Feed {
    pub posts: Subgraph,
    pub authors: Subgraph,
}

fn posts_schema() -> Schema<posts::Query, EmptyMutation, EmptySubscription> {
    Schema::build(posts::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn authors_schema() -> Schema<authors::Query, EmptyMutation, EmptySubscription> {
    Schema::build(authors::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

impl Feed {
    pub async fn start() -> Self {
        Self {
            posts: serve(posts_schema(), 0).await,
            authors: serve(authors_schema(), 0).await,
        }
    }

    pub fn sources(&self) -> Vec<junction_federation::compose::SubgraphSource> {
        sources(vec![
            ("posts", &self.posts, federation_sdl(&posts_schema())),
            ("authors", &self.authors, federation_sdl(&authors_schema())),
        ])
    }
}

pub mod posts {
    use super::*;

    #[derive(Enum, Copy, Clone, Eq, PartialEq)]
    pub enum Visibility {
        Public,
        /// Internal to the posts service: hidden from the API.
        #[graphql(inaccessible)]
        Draft,
    }

    #[derive(SimpleObject, Clone)]
    #[graphql(shareable)]
    pub struct Comment {
        pub id: ID,
        pub author_id: ID,
    }

    #[derive(Clone)]
    pub struct Post {
        pub id: ID,
        pub visibility: Visibility,
        pub comments: Vec<Comment>,
    }

    #[Object]
    impl Post {
        async fn id(&self) -> &ID {
            &self.id
        }

        async fn visibility(&self) -> Option<Visibility> {
            Some(self.visibility)
        }

        #[graphql(shareable)]
        async fn comments(&self, limit: i32) -> Vec<Comment> {
            let limit = usize::try_from(limit).unwrap_or(0);
            self.comments.iter().take(limit).cloned().collect()
        }
    }

    fn comment(id: &str, author: &str) -> Comment {
        Comment {
            id: id.into(),
            author_id: author.into(),
        }
    }

    pub fn all() -> Vec<Post> {
        vec![
            Post {
                id: "p1".into(),
                visibility: Visibility::Public,
                comments: vec![
                    comment("c1", "a2"),
                    comment("c2", "a1"),
                    comment("c3", "a2"),
                    comment("c4", "a1"),
                ],
            },
            Post {
                id: "p2".into(),
                visibility: Visibility::Draft,
                comments: vec![
                    comment("c5", "a1"),
                    comment("c6", "a1"),
                    comment("c7", "a2"),
                ],
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn feed(&self) -> Vec<Post> {
            all()
        }

        #[graphql(entity)]
        async fn find_post_by_id(&self, id: ID) -> Option<Post> {
            all().into_iter().find(|p| p.id == id)
        }
    }
}

pub mod authors {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct Author {
        pub id: ID,
    }

    #[derive(SimpleObject, Clone)]
    #[graphql(shareable)]
    pub struct Comment {
        pub id: ID,
        pub author_id: ID,
    }

    /// A required comment as the router sends it: only what the requires field set names.
    #[derive(InputObject, Clone)]
    pub struct RequiredComment {
        pub author_id: ID,
    }

    pub struct Post {
        id: ID,
        comments: Option<Vec<RequiredComment>>,
    }

    #[Object]
    impl Post {
        async fn id(&self) -> &ID {
            &self.id
        }

        #[graphql(external)]
        async fn comments(&self, limit: i32) -> Vec<Comment> {
            let _ = limit;
            Vec::new()
        }

        /// The post's author is whoever wrote most of its first three comments.
        #[graphql(requires = "comments(limit: 3) { authorId }")]
        async fn author(&self) -> async_graphql::Result<Author> {
            let comments = self.comments.as_deref().unwrap_or_default();
            if comments.len() != 3 {
                return Err(format!("expected 3 comments, got {}", comments.len()).into());
            }
            let a1 = comments.iter().filter(|c| c.author_id == "a1").count();
            let id = if a1 >= 2 { "a1" } else { "a2" };
            Ok(Author { id: id.into() })
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_post_by_id(
            &self,
            #[graphql(key)] id: ID,
            comments: Option<Vec<RequiredComment>>,
        ) -> Post {
            Post { id, comments }
        }
    }
}
