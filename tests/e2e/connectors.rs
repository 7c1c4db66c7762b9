//! Connector syncs in `junction serve`, on SQLite and PostgreSQL: a connection to a local
//! HTTP source (the SDK's test source, through a manifest from the configured folder) syncs
//! on its own, its records are stored, and each record reaches a webhook receiver as a
//! signed `connector.<connector>.<stream>.created` event. The connection is made through the
//! engine's API: the connectors subgraph that will make it through GraphQL comes later.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use junction_connector_sdk::http::{AddressPolicy, HttpClient, HttpOptions};
use junction_connector_sdk::{Manifest, ManifestConnector};
use junction_connector_sync::Catalog;
use junction_connector_sync::connections::{self, NewConnection};
use junction_schema::entities::{connector_record, sync_run};
use junction_schema::tenants;
use junction_webhooks::endpoints::{self, NewEndpoint};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use support::receiver::{Receiver, verify_v1};
use support::{Junction, TestDatabase};

#[path = "../../subgraphs/connectors/sdk/tests/source/mod.rs"]
#[allow(dead_code)]
mod source;

const MANIFEST: &str = r#"
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
streams:
  - name: items
    path: /cursor/items
    records: $.data
    primary_key: id
    schema: {type: object, required: [id, created]}
    pagination:
      cursor:
        param: starting_after
        from: {last_record: id}
        has_more: $.has_more
        limit_param: limit
        limit: 10
    incremental:
      cursor_field: created
      param: since
      format: unix_seconds
"#;

on_both_databases!(serve_syncs_connections_and_delivers_their_events);

async fn serve_syncs_connections_and_delivers_their_events(db: TestDatabase) {
    let folder = db.dir.path().join("connectors");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("test-source.yaml"), MANIFEST).unwrap();
    let source = source::Source::start(source::Chaos::default()).await;
    let receiver = Receiver::ok().await;

    let conn = db.migrated().await;
    let tenant = tenants::create(&conn, "acme").await.unwrap();
    let loopback =
        junction_schema::webhook_url::AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    let mut wanted = NewEndpoint::new(receiver.url());
    wanted.event_types = vec!["connector.test-source.items.created".into()];
    let endpoint = endpoints::create(&conn, &loopback, &tenant.id, wanted)
        .await
        .unwrap();
    let client = HttpClient::new(HttpOptions {
        policy: AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ..HttpOptions::default()
    })
    .unwrap();
    let mut catalog = Catalog::empty();
    catalog
        .add(
            Arc::new(ManifestConnector::new(
                Manifest::parse("test-source.yaml", MANIFEST).unwrap(),
                &client,
            )),
            "test",
        )
        .unwrap();
    let connection = connections::create(
        &conn,
        &catalog,
        &tenant.id,
        NewConnection {
            connector: "test-source".into(),
            config: serde_json::json!({"base_url": source.base_url()}),
            credentials: [("token".to_owned(), source::BEARER.to_owned())].into(),
            schedule: Duration::from_secs(30),
            streams: vec![],
        },
    )
    .await
    .unwrap();

    let folder = folder.display().to_string();
    let junction = Junction::serve_with(
        db.dir.path(),
        Some(&db.url),
        &[
            ("JUNCTION_CONNECTORS_MANIFESTS", folder.as_str()),
            ("JUNCTION_CONNECTORS_POLL_INTERVAL", "100ms"),
            ("JUNCTION_DISPATCHER_ALLOWED_NETWORKS", r#"["127.0.0.0/8"]"#),
        ],
    );

    // The connection was due: the first sync reads everything, and every record is a
    // signed webhook.
    let requests = receiver
        .wait_for(source::RECORDS, Duration::from_secs(30))
        .await;
    assert_eq!(requests.len(), source::RECORDS);
    let mut ids: Vec<String> = requests
        .iter()
        .map(|request| {
            assert!(verify_v1(&endpoint.verification_key, request));
            let body = request.json();
            assert_eq!(body["type"], "connector.test-source.items.created");
            assert_eq!(body["data"]["connection_id"], connection.id.as_str());
            body["data"]["record"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), source::RECORDS, "each record once");
    let stored = connector_record::Entity::find()
        .filter(connector_record::Column::ConnectionId.eq(connection.id.as_str()))
        .count(&conn)
        .await
        .unwrap();
    assert_eq!(stored, source::RECORDS as u64);
    let runs = sync_run::Entity::find()
        .filter(sync_run::Column::ConnectionId.eq(connection.id.as_str()))
        .all(&conn)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, sync_run::SUCCEEDED, "{:?}", runs[0].error);

    let (status, logs) = junction.stop_with("TERM");
    assert!(status.success(), "{status}; logs:\n{}", logs.join("\n"));
}
