//! A second federation scenario, for abstract types and keys: a `search` subgraph returns a
//! union whose members live in other subgraphs and that it can refer to but not resolve
//! (`@key(resolvable: false)`); `movies` has a composite key; `books` has two keys, and
//! `ratings` knows books only by the key `search` does not have, so the router must go
//! through `books` to get there.

use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject, Union};

use super::federation::{Subgraph, federation_sdl, serve, sources};

pub struct Catalog {
    pub search: Subgraph,
    pub books: Subgraph,
    pub movies: Subgraph,
    pub ratings: Subgraph,
}

fn search_schema() -> Schema<search::Query, EmptyMutation, EmptySubscription> {
    Schema::build(search::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn books_schema() -> Schema<books::Query, EmptyMutation, EmptySubscription> {
    Schema::build(books::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn movies_schema() -> Schema<movies::Query, EmptyMutation, EmptySubscription> {
    Schema::build(movies::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn ratings_schema() -> Schema<ratings::Query, EmptyMutation, EmptySubscription> {
    Schema::build(ratings::Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

impl Catalog {
    pub async fn start() -> Self {
        Self {
            search: serve(search_schema(), 0).await,
            books: serve(books_schema(), 0).await,
            movies: serve(movies_schema(), 0).await,
            ratings: serve(ratings_schema(), 0).await,
        }
    }

    /// Each subgraph's SDL, as `junction compose` would fetch it.
    pub fn sources(&self) -> Vec<junction_federation::compose::SubgraphSource> {
        sources(vec![
            ("search", &self.search, federation_sdl(&search_schema())),
            ("books", &self.books, federation_sdl(&books_schema())),
            ("movies", &self.movies, federation_sdl(&movies_schema())),
            ("ratings", &self.ratings, federation_sdl(&ratings_schema())),
        ])
    }

    pub fn total_requests(&self) -> usize {
        [&self.search, &self.books, &self.movies, &self.ratings]
            .iter()
            .map(|s| s.requests())
            .sum()
    }
}

pub mod search {
    use super::*;

    /// Known here only by its ISBN: the search index cannot load a book.
    #[derive(SimpleObject)]
    #[graphql(unresolvable = "isbn")]
    pub struct Book {
        pub isbn: String,
    }

    #[derive(SimpleObject)]
    #[graphql(unresolvable = "id studio")]
    pub struct Movie {
        pub id: ID,
        pub studio: String,
    }

    #[derive(Union)]
    pub enum SearchResult {
        Book(Book),
        Movie(Movie),
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn search(&self) -> Vec<SearchResult> {
            vec![
                SearchResult::Book(Book {
                    isbn: "978-0".into(),
                }),
                SearchResult::Movie(Movie {
                    id: "m1".into(),
                    studio: "ghibli".into(),
                }),
                SearchResult::Book(Book {
                    isbn: "978-1".into(),
                }),
            ]
        }
    }
}

pub mod books {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct Book {
        pub isbn: String,
        pub id: ID,
        pub title: String,
    }

    fn all() -> Vec<Book> {
        vec![
            Book {
                isbn: "978-0".into(),
                id: "b0".into(),
                title: "Dune".into(),
            },
            Book {
                isbn: "978-1".into(),
                id: "b1".into(),
                title: "Solaris".into(),
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_book_by_isbn(&self, isbn: String) -> Option<Book> {
            all().into_iter().find(|b| b.isbn == isbn)
        }

        #[graphql(entity)]
        async fn find_book_by_id(&self, id: ID) -> Option<Book> {
            all().into_iter().find(|b| b.id == id)
        }
    }
}

pub mod movies {
    use super::*;

    #[derive(SimpleObject)]
    pub struct Movie {
        pub id: ID,
        pub studio: String,
        pub title: String,
        pub director: String,
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_movie_by_id_and_studio(&self, id: ID, studio: String) -> Option<Movie> {
            (id.0 == "m1" && studio == "ghibli").then(|| Movie {
                id,
                studio,
                title: "Spirited Away".into(),
                director: "Hayao Miyazaki".into(),
            })
        }
    }
}

pub mod ratings {
    use super::*;

    pub struct Book {
        id: ID,
    }

    #[Object]
    impl Book {
        async fn id(&self) -> &ID {
            &self.id
        }

        async fn rating(&self) -> i32 {
            if self.id.0 == "b0" { 5 } else { 4 }
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_book_by_id(&self, id: ID) -> Book {
            Book { id }
        }
    }
}
