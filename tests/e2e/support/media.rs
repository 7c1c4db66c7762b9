//! A third federation scenario, for interfaces: `library` serves `interface Media` with its
//! implementations `Book` and `Movie`; `reviews` adds `reviewCount` to both entities and to the
//! interface, so a field asked on the interface lives in another subgraph, per implementation;
//! `stats` knows `Media` only as an `@interfaceObject` (no idea of books or movies) and adds
//! `playCount` to every kind of media.

use async_graphql::{
    EmptyMutation, EmptySubscription, ID, Interface, Object, Schema, SimpleObject,
};

use super::federation::{Subgraph, federation_sdl, serve, sources};

pub struct Media {
    pub library: Subgraph,
    pub reviews: Subgraph,
    pub stats: Subgraph,
}

fn stats_schema() -> Schema<stats::Query, EmptyMutation, EmptySubscription> {
    Schema::build(stats::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn library_schema() -> Schema<library::Query, EmptyMutation, EmptySubscription> {
    Schema::build(library::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn reviews_schema() -> Schema<reviews::Query, EmptyMutation, EmptySubscription> {
    Schema::build(reviews::Query, EmptyMutation, EmptySubscription)
        .register_output_type::<reviews::Media>()
        .enable_federation()
        .finish()
}

impl Media {
    pub async fn start() -> Self {
        Self {
            library: serve(library_schema(), 0).await,
            reviews: serve(reviews_schema(), 0).await,
            stats: serve(stats_schema(), 0).await,
        }
    }

    pub fn sources(&self) -> Vec<junction_federation::compose::SubgraphSource> {
        sources(vec![
            ("library", &self.library, federation_sdl(&library_schema())),
            ("reviews", &self.reviews, federation_sdl(&reviews_schema())),
            ("stats", &self.stats, federation_sdl(&stats_schema())),
        ])
    }
}

pub mod library {
    use super::*;

    #[derive(SimpleObject)]
    pub struct Book {
        pub id: ID,
        pub title: String,
    }

    #[derive(SimpleObject)]
    pub struct Movie {
        pub id: ID,
        pub title: String,
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&ID"), field(name = "title", ty = "&String"))]
    pub enum Media {
        Book(Book),
        Movie(Movie),
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn media(&self) -> Vec<Media> {
            vec![
                Media::Book(Book {
                    id: "b1".into(),
                    title: "Dune".into(),
                }),
                Media::Movie(Movie {
                    id: "m1".into(),
                    title: "Alien".into(),
                }),
            ]
        }

        #[graphql(entity)]
        async fn find_book_by_id(&self, id: ID) -> Option<Book> {
            (id.0 == "b1").then(|| Book {
                id,
                title: "Dune".into(),
            })
        }

        #[graphql(entity)]
        async fn find_movie_by_id(&self, id: ID) -> Option<Movie> {
            (id.0 == "m1").then(|| Movie {
                id,
                title: "Alien".into(),
            })
        }
    }
}

pub mod reviews {
    use super::*;

    fn count(id: &ID) -> i32 {
        if id.0 == "b1" { 12 } else { 3 }
    }

    pub struct Book {
        id: ID,
    }

    #[Object]
    impl Book {
        async fn id(&self) -> &ID {
            &self.id
        }

        async fn review_count(&self) -> i32 {
            count(&self.id)
        }
    }

    pub struct Movie {
        id: ID,
    }

    #[Object]
    impl Movie {
        async fn id(&self) -> &ID {
            &self.id
        }

        async fn review_count(&self) -> i32 {
            count(&self.id)
        }
    }

    #[derive(Interface)]
    #[graphql(
        field(name = "id", ty = "&ID"),
        field(name = "review_count", ty = "i32")
    )]
    pub enum Media {
        Book(Book),
        Movie(Movie),
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_book_by_id(&self, id: ID) -> Book {
            Book { id }
        }

        #[graphql(entity)]
        async fn find_movie_by_id(&self, id: ID) -> Movie {
            Movie { id }
        }
    }
}

pub mod stats {
    use super::*;

    /// Any kind of media, by its id: this subgraph does not know the kinds.
    #[derive(SimpleObject)]
    #[graphql(interface_object)]
    pub struct Media {
        pub id: ID,
        pub play_count: i32,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_media_by_id(&self, id: ID) -> Media {
            let play_count = if id.0 == "b1" { 100 } else { 40 };
            Media { id, play_count }
        }
    }
}
