//! The GraphQL face of the deliveries subgraph (Apollo Federation v2).

mod access;
mod live;
mod objects;
mod operations;

use std::sync::Arc;

use async_graphql::{SDLExportOptions, Schema};
use junction_schema::envelope::DeliveryEvent;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

pub use live::Subscription;
pub use operations::{Mutation, Query};

pub type DeliveriesSchema = Schema<Query, Mutation, Subscription>;

#[derive(Clone)]
pub struct DeliveriesState {
    /// Also where replays go: through the queue's outbox, which every backend takes from.
    pub db: DatabaseConnection,
    /// Where live subscriptions take their events; `None` without a dispatcher in reach.
    pub events: Option<broadcast::Sender<DeliveryEvent>>,
}

pub fn schema(state: DeliveriesState) -> DeliveriesSchema {
    Schema::build(Query, Mutation, Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .data(Arc::new(state))
        .limit_depth(16)
        .limit_complexity(2_000)
        .finish()
}

pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
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
