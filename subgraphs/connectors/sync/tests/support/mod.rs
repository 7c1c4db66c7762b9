//! What the engine's tests share: a fresh database (SQLite, or PostgreSQL when
//! `TEST_POSTGRES_URL` names a server), the SDK's local HTTP source and a manifest for it,
//! and connectors wrapped to stall, wait, watch or refuse.

#![allow(dead_code)]

pub mod wrappers;

use std::sync::Arc;

use junction_connector_sdk::http::{AddressPolicy, HttpClient, HttpOptions};
use junction_connector_sdk::{Connector, Manifest, ManifestConnector};
use junction_connector_sync::connections::{self, NewConnection};
use junction_connector_sync::{Catalog, ConnectorsConfig, SyncRunner};
use junction_schema::database::{DatabaseConfig, DatabaseUrl};
use junction_schema::entities::{connection, connector_record, message, sync_run};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};

// The SDK's test source, shared as the worker shares the queue's test database: by path.
#[path = "../../../sdk/tests/source/mod.rs"]
pub mod source;

pub use source::{Chaos, Source};

/// Runs each listed `async fn name(db: TestDatabase)` on SQLite and on PostgreSQL. The
/// PostgreSQL half fails, loudly, when no server is configured.
#[macro_export]
macro_rules! on_both_databases {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$test($crate::support::TestDatabase::sqlite()).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$test($crate::support::TestDatabase::postgres().await).await
                }
            }
        )*
    };
}

pub struct TestDatabase {
    pub url: String,
    _dir: tempfile::TempDir,
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sync.db", dir.path().display());
        Self { url, _dir: dir }
    }

    pub async fn postgres() -> Self {
        let admin_url = std::env::var("TEST_POSTGRES_URL").expect(
            "TEST_POSTGRES_URL names the PostgreSQL server for the PostgreSQL half of these tests",
        );
        let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
        let name = format!("junction_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (server, _) = admin_url.rsplit_once('/').unwrap();
        Self {
            url: format!("{server}/{name}"),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A new connection pool (as another process would have).
    pub async fn connect(&self) -> DatabaseConnection {
        junction_schema::database::connect(&DatabaseConfig {
            url: DatabaseUrl::parse(&self.url).unwrap(),
            ..DatabaseConfig::default()
        })
        .await
        .unwrap()
    }
}

/// The manifest of the source's cursor route: bearer auth, pages of 5 after the last
/// record's id, incremental by `created` through `since`; quick retries.
pub const MANIFEST: &str = r#"
name: test-source
version: 0.1.0
config_schema:
  type: object
  required: [base_url]
  properties:
    base_url: {type: string}
base_url: "{{ config.base_url }}/v1"
auth:
  bearer:
    token: "{{ credentials.token }}"
retry:
  max_retries: 2
  initial_backoff: 5ms
  max_backoff: 20ms
streams:
  - name: items
    path: /cursor/items
    records: $.data
    primary_key: id
    schema:
      type: object
      required: [id, created, name, amount]
      properties:
        id: {type: string}
        created: {type: integer}
    pagination:
      cursor:
        param: starting_after
        from: {last_record: id}
        has_more: $.has_more
        limit_param: limit
        limit: 5
    incremental:
      cursor_field: created
      param: since
      format: unix_seconds
"#;

/// Records per page of [`MANIFEST`].
pub const PAGE: usize = 5;

pub fn client() -> HttpClient {
    HttpClient::new(HttpOptions {
        policy: AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ..HttpOptions::default()
    })
    .unwrap()
}

/// The manifest connector of the test source.
pub fn connector() -> Arc<dyn Connector> {
    Arc::new(ManifestConnector::new(
        Manifest::parse("test-source.yaml", MANIFEST).unwrap(),
        &client(),
    ))
}

pub fn catalog_of(connector: Arc<dyn Connector>) -> Arc<Catalog> {
    let mut catalog = Catalog::empty();
    catalog.add(connector, "test").unwrap();
    Arc::new(catalog)
}

/// Quick back-off, a short poll, small batches.
pub fn config() -> ConnectorsConfig {
    ConnectorsConfig {
        poll_interval: std::time::Duration::from_millis(50),
        transient_retries: 2,
        retry_backoff: std::time::Duration::from_millis(10),
        ..ConnectorsConfig::default()
    }
}

/// A migrated database with one tenant; the tenant's id.
pub async fn migrated(db: &DatabaseConnection) -> String {
    junction_migrations::up(db).await.unwrap();
    junction_schema::tenants::create(db, "t").await.unwrap().id
}

/// An endpoint of `tenant` that takes every event.
pub async fn endpoint(db: &DatabaseConnection, tenant: &str) -> String {
    use junction_webhooks::endpoints::{self, NewEndpoint};
    let policy =
        junction_schema::webhook_url::AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    endpoints::create(
        db,
        &policy,
        tenant,
        NewEndpoint::new("http://127.0.0.1:9/hook"),
    )
    .await
    .unwrap()
    .endpoint
    .id
}

/// A connection to `source`, with `config` added to the base URL (a tag for wrappers).
pub async fn connection_to(
    db: &DatabaseConnection,
    catalog: &Catalog,
    tenant: &str,
    source: &Source,
    token: &str,
    extra: serde_json::Value,
) -> connection::Model {
    let mut config = serde_json::json!({"base_url": source.base_url()});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    connections::create(
        db,
        catalog,
        tenant,
        NewConnection {
            connector: "test-source".into(),
            config,
            credentials: [("token".to_owned(), token.to_owned())].into(),
            schedule: std::time::Duration::from_secs(30),
            streams: vec![],
        },
    )
    .await
    .unwrap()
}

pub fn runner(db: &DatabaseConnection, catalog: Arc<Catalog>) -> SyncRunner {
    SyncRunner::new(db.clone(), catalog, config())
}

pub async fn records(db: &DatabaseConnection, connection_id: &str) -> Vec<connector_record::Model> {
    connector_record::Entity::find()
        .filter(connector_record::Column::ConnectionId.eq(connection_id))
        .order_by_asc(connector_record::Column::RecordKey)
        .all(db)
        .await
        .unwrap()
}

pub async fn runs(db: &DatabaseConnection, connection_id: &str) -> Vec<sync_run::Model> {
    sync_run::Entity::find()
        .filter(sync_run::Column::ConnectionId.eq(connection_id))
        .order_by_asc(sync_run::Column::Id)
        .all(db)
        .await
        .unwrap()
}

/// Messages of `event_type`.
pub async fn events(db: &DatabaseConnection, event_type: &str) -> Vec<message::Model> {
    message::Entity::find()
        .filter(message::Column::EventType.eq(event_type))
        .order_by_asc(message::Column::Id)
        .all(db)
        .await
        .unwrap()
}

pub async fn count<E>(db: &DatabaseConnection) -> u64
where
    E: EntityTrait,
    E::Model: Sync,
{
    E::find().count(db).await.unwrap()
}

/// Waits until `check` holds, for up to 20 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
