//! The subgraph's HTTP surface, behind the signed-identity layer: `POST /graphql` for queries
//! and mutations, and `GET /graphql` upgraded to a WebSocket (graphql-transport-ws or the
//! legacy graphql-ws) for subscriptions. The identity is the one signed into the upgrade
//! request, so it holds for the life of the connection.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use junction_schema::Identity;
use junction_schema::identity::{Audience, IdentityVerifier, RequireIdentityLayer};

use crate::graphql::DeliveriesSchema;

/// A connection that neither sends nor answers anything for this long is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn router(schema: DeliveriesSchema, verifier: Arc<IdentityVerifier>) -> Router {
    Router::new()
        .route("/graphql", get(subscriptions).post(graphql))
        .with_state(schema)
        .layer(RequireIdentityLayer::new(
            verifier,
            Audience::subgraph(crate::SUBGRAPH_NAME),
        ))
}

async fn graphql(
    State(schema): State<DeliveriesSchema>,
    identity: Identity,
    request: GraphQLRequest,
) -> GraphQLResponse {
    schema
        .execute(request.into_inner().data(identity))
        .await
        .into()
}

async fn subscriptions(
    State(schema): State<DeliveriesSchema>,
    identity: Identity,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            let mut data = Data::default();
            data.insert(identity);
            GraphQLWebSocket::new(stream, schema, protocol)
                .with_data(data)
                .keepalive_timeout(KEEPALIVE_TIMEOUT)
                .serve()
        })
}
