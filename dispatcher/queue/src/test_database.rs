//! For unit tests: a migrated database (SQLite, or PostgreSQL where a test is about it) with
//! messages published to endpoints.
//!
//! The queue's and the worker's unit tests both include this file (the worker by `#[path]`:
//! it publishes through `junction-webhooks`, which depends on the queue, so it cannot be a
//! part of the queue's library); each uses part of it.
#![allow(dead_code)]

use junction_schema::database::{DatabaseConfig, DatabaseUrl};
use junction_schema::webhook_url::AddressPolicy;
use junction_webhooks::endpoints::{self, NewEndpoint};
use junction_webhooks::event_types::{self, NewEventType};
use junction_webhooks::publish::{self, DEFAULT_MAX_PAYLOAD_BYTES, PublishEvent};
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// A database in `dir` with one tenant, an endpoint per URL, and `messages` events
/// published to all of them.
pub async fn published(
    dir: &tempfile::TempDir,
    endpoint_urls: &[&str],
    messages: usize,
) -> DatabaseConnection {
    let url = format!("sqlite://{}/dispatcher.db", dir.path().display());
    published_at(&url, endpoint_urls, messages).await
}

/// The same on a fresh database of the PostgreSQL server `TEST_POSTGRES_URL` names (as for
/// the workspace's end-to-end suite, which `tests/run` starts).
pub async fn published_on_postgres(endpoint_urls: &[&str], messages: usize) -> DatabaseConnection {
    published_on_postgres_at(endpoint_urls, messages).await.0
}

/// `published_on_postgres`, with the database's URL, for a test that connects to it again.
pub async fn published_on_postgres_at(
    endpoint_urls: &[&str],
    messages: usize,
) -> (DatabaseConnection, String) {
    let admin_url = std::env::var("TEST_POSTGRES_URL")
        .expect("TEST_POSTGRES_URL names the PostgreSQL server for PostgreSQL-only tests");
    let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
    let name = format!("junction_dispatcher_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (server, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{server}/{name}");
    (published_at(&url, endpoint_urls, messages).await, url)
}

async fn published_at(url: &str, endpoint_urls: &[&str], messages: usize) -> DatabaseConnection {
    let db = junction_schema::database::connect(&DatabaseConfig {
        url: DatabaseUrl::parse(url).unwrap(),
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
