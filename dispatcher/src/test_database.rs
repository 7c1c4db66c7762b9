//! For unit tests: a migrated SQLite database with messages published to endpoints.

use junction_schema::database::{DatabaseConfig, DatabaseUrl};
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::endpoints::{self, NewEndpoint};
use junction_webhooks::event_types::{self, NewEventType};
use junction_webhooks::publish::{self, DEFAULT_MAX_PAYLOAD_BYTES, PublishEvent};
use sea_orm::DatabaseConnection;

/// A database in `dir` with one tenant, an endpoint per URL, and `messages` events
/// published to all of them.
pub async fn published(
    dir: &tempfile::TempDir,
    endpoint_urls: &[&str],
    messages: usize,
) -> DatabaseConnection {
    let url = format!("sqlite://{}/dispatcher.db", dir.path().display());
    let db = junction_schema::database::connect(&DatabaseConfig {
        url: DatabaseUrl::parse(&url).unwrap(),
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    junction_migrations::up(&db).await.unwrap();
    let tenant = junction_schema::tenants::create(&db, "t").await.unwrap();
    let event = NewEventType {
        name: "order.created".into(),
        description: String::new(),
        schema: None,
    };
    event_types::create(&db, &tenant.id, event).await.unwrap();
    let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    for url in endpoint_urls {
        endpoints::create(&db, &policy, &tenant.id, NewEndpoint::new(*url))
            .await
            .unwrap();
    }
    for n in 0..messages {
        let event = PublishEvent {
            event_type: "order.created".into(),
            payload: serde_json::json!({"n": n}),
            channels: vec![],
            idempotency_key: None,
            traceparent: None,
        };
        publish::publish(&db, &tenant.id, event, DEFAULT_MAX_PAYLOAD_BYTES)
            .await
            .unwrap();
    }
    db
}
