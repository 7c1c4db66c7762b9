//! Junction's own subgraphs, assembled one way for `junction serve` (in process, on loopback
//! ports) and `junction subgraph NAME` (a process each).

use std::sync::Arc;

use junction_edge::health::ReadinessProbe;
use junction_schema::envelope::DeliveryEvent;
use junction_schema::identity::{IdentityKey, IdentityVerifier};
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::graphql::{self, WebhooksState};
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

use crate::config::Config;

/// Checks the router's signed identity on every request: `key` and the previous ones.
pub fn verifier(key: IdentityKey, config: &Config) -> IdentityVerifier {
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

/// Ready when the database answers and has every migration this binary knows.
pub fn database_probe(db: DatabaseConnection) -> ReadinessProbe {
    ReadinessProbe::new("database", move || {
        let db = db.clone();
        async move {
            db.ping().await.map_err(|e| format!("unreachable: {e}"))?;
            let states = junction_migrations::status(&db)
                .await
                .map_err(|e| format!("cannot read migrations: {e}"))?;
            let pending = states.iter().filter(|m| !m.applied).count();
            if pending > 0 {
                return Err(format!("{pending} migration(s) pending"));
            }
            Ok(())
        }
    })
}
