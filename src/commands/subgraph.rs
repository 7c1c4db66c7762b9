//! `junction subgraph NAME`: one subgraph alone, behind the router's signed identity.

use std::sync::Arc;

use anyhow::Context;
use junction_gateway::health;
use junction_queue::QueueBackend;
use junction_schema::envelope::DeliveryEvent;
use junction_schema::identity::{IdentityKey, IdentityVerifier};
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::graphql::{self, WebhooksState};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tower_http::trace::TraceLayer;

use crate::cli::SubgraphName;
use crate::commands::{Failure, connect_migrated, serve::database_probe};
use crate::config::Config;
use crate::shutdown::Shutdown;

pub async fn run(
    config: Config,
    name: SubgraphName,
    listen: Option<std::net::SocketAddr>,
) -> Result<(), Failure> {
    if let SubgraphName::Connectors = name {
        return Err(Failure::not_built(
            &format!("subgraph {name}"),
            "the connectors subgraph arrives with its own issue",
        ));
    }
    let Some(key) = config.identity.signing_key.clone() else {
        return Err(Failure::Usage(
            "identity.signing_key must be set (the same on the router and every subgraph) when a subgraph runs alone"
                .into(),
        ));
    };
    let db = connect_migrated(&config).await?;
    let verifier = Arc::new(verifier(key, &config));
    let app = match name {
        SubgraphName::Deliveries => {
            // Live events: from the Kafka events topic, else none (no dispatcher in reach).
            let events = match config.queue.backend {
                QueueBackend::Kafka => Some(
                    junction_queue::kafka::events::feed(&config.queue.kafka)
                        .await
                        .context("following delivery events on Kafka")?,
                ),
                QueueBackend::Embedded => None,
            };
            deliveries_router(&db, verifier, events)
        }
        _ => webhooks_router(&config, &db, verifier),
    }
    .merge(health::routes(vec![database_probe(db.clone())]))
    .layer(TraceLayer::new_for_http());
    let listen = listen.unwrap_or(match name {
        SubgraphName::Deliveries => std::net::SocketAddr::from(([127, 0, 0, 1], 4002)),
        _ => config.webhooks.listen,
    });
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr().context("listener address")?,
        subgraph = %name,
        "Junction is serving"
    );
    junction_gateway::server::serve(
        listener,
        app,
        Shutdown::on_signal().wait(),
        config.gateway.shutdown_grace,
    )
    .await
    .context("serving HTTP")?;
    db.close().await.context("closing the database")?;
    tracing::info!("stopped");
    Ok(())
}

fn verifier(key: IdentityKey, config: &Config) -> IdentityVerifier {
    let mut keys = vec![key];
    keys.extend(config.identity.previous_signing_keys.iter().cloned());
    IdentityVerifier::new(keys, config.identity.max_age)
        .with_max_body_bytes(config.identity.max_body_bytes)
}

/// The webhooks subgraph's routes, for a process of its own or for `junction serve`.
pub fn webhooks_router(
    config: &Config,
    db: &DatabaseConnection,
    verifier: Arc<IdentityVerifier>,
) -> axum::Router {
    let state = Arc::new(WebhooksState {
        db: db.clone(),
        policy: AddressPolicy::new(config.dispatcher.allowed_networks.clone()),
        max_payload_bytes: config.webhooks.max_payload_bytes,
        rotation_grace: config.webhooks.secret_rotation_grace,
    });
    let schema = graphql::schema_sharing(Arc::clone(&state));
    junction_webhooks::http::router(schema, state, verifier)
}

/// The deliveries subgraph's routes; replays go through the queue's outbox (which the
/// configured backend takes from), and live subscriptions take `events` (the dispatcher's,
/// when it runs in this process).
pub fn deliveries_router(
    db: &DatabaseConnection,
    verifier: Arc<IdentityVerifier>,
    events: Option<broadcast::Sender<DeliveryEvent>>,
) -> axum::Router {
    let schema =
        junction_deliveries::graphql::schema(junction_deliveries::graphql::DeliveriesState {
            db: db.clone(),
            events,
        });
    junction_deliveries::http::router(schema, verifier)
}
