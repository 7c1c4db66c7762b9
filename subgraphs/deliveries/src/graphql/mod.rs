//! The GraphQL face of the deliveries subgraph (Apollo Federation v2).

mod objects;
mod operations;

use std::sync::Arc;

use async_graphql::{EmptySubscription, SDLExportOptions, Schema};
use junction_dispatcher::Queue;
use sea_orm::DatabaseConnection;

pub use operations::{Mutation, Query};

pub type DeliveriesSchema = Schema<Query, Mutation, EmptySubscription>;

#[derive(Clone)]
pub struct DeliveriesState {
    pub db: DatabaseConnection,
    /// Where replays go: the queue the dispatcher takes from.
    pub queue: Arc<dyn Queue>,
}

pub fn schema(state: DeliveriesState) -> DeliveriesSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(Arc::new(state))
        .limit_depth(16)
        .limit_complexity(2_000)
        .finish()
}

pub fn sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .finish()
        .sdl_with_options(SDLExportOptions::new().federation().compose_directive())
}

#[cfg(test)]
mod tests {
    /// The SDL under `schema/graphql/` is what the code generates.
    #[test]
    fn checked_in_sdl_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../schema/graphql/deliveries.graphql");
        junction_subgraph_kit::assert_sdl_checked_in(&super::sdl(), &path);
    }
}
