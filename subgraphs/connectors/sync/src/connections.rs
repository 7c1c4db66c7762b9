//! Connections: create (checked against the connector's spec and streams), read, pause,
//! resume, delete. Every function is scoped by tenant: another tenant's connection is not
//! found.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use junction_connector_sdk::{Connection, Connector, Credentials};
use junction_schema::entities::{connection, sync_run};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionSession, TransactionTrait,
};

use crate::{Catalog, SyncError};

/// The shortest schedule: a source is not asked more often than this.
pub const MIN_SCHEDULE: Duration = Duration::from_secs(30);

/// What a new connection needs.
#[derive(Clone, Debug)]
pub struct NewConnection {
    pub connector: String,
    pub config: serde_json::Value,
    /// Secret values by name (`token`, `api_key`, ...), as the connector's manifest names them.
    pub credentials: BTreeMap<String, String>,
    /// Between scheduled syncs; at least [`MIN_SCHEDULE`].
    pub schedule: Duration,
    /// The streams to sync; empty for all the connector discovers.
    pub streams: Vec<String>,
}

impl NewConnection {
    /// As the connector receives it.
    pub fn connection(&self) -> Connection {
        Connection::new(
            self.config.clone(),
            self.credentials.iter().collect::<Credentials>(),
        )
    }
}

/// The connector of `row`, as a connector receives it.
pub fn to_connection(row: &connection::Model) -> Connection {
    let credentials: Credentials = row
        .credentials
        .as_object()
        .map(|values| {
            values
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Connection::new(row.config.clone(), credentials)
}

/// The stream names a connection syncs.
pub fn stream_names(row: &connection::Model) -> Vec<String> {
    junction_queue::subscribers::json_strings(&row.streams)
}

/// Asks the connector whether `input` works (its configuration and credentials), with the
/// connector's own message when not. Contacts the source.
pub async fn check(catalog: &Catalog, input: &NewConnection) -> Result<(), SyncError> {
    let connector = known(catalog, &input.connector)?;
    connector.check(&input.connection()).await?;
    Ok(())
}

fn known(catalog: &Catalog, name: &str) -> Result<std::sync::Arc<dyn Connector>, SyncError> {
    catalog
        .get(name)
        .ok_or_else(|| SyncError::BadInput(format!("unknown connector {name:?}")))
}

/// Stores a connection after checking its connector, schedule, configuration and streams
/// (without contacting the source: see [`check`]). Its first sync is due at once.
pub async fn create(
    db: &impl ConnectionTrait,
    catalog: &Catalog,
    tenant_id: &str,
    input: NewConnection,
) -> Result<connection::Model, SyncError> {
    let connector = known(catalog, &input.connector)?;
    if input.schedule < MIN_SCHEDULE {
        return Err(SyncError::BadInput(format!(
            "schedule must be at least {} seconds",
            MIN_SCHEDULE.as_secs()
        )));
    }
    connector
        .spec()
        .validate_config(&input.config)
        .map_err(|e| SyncError::BadInput(format!("config: {}", e.message())))?;
    let discovered: Vec<String> = connector
        .discover(&input.connection())
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let streams = if input.streams.is_empty() {
        discovered
    } else {
        if let Some(unknown) = input.streams.iter().find(|s| !discovered.contains(s)) {
            return Err(SyncError::BadInput(format!(
                "connector {} has no stream {unknown:?}; it has {}",
                input.connector,
                discovered.join(", ")
            )));
        }
        let mut chosen = input.streams.clone();
        chosen.dedup();
        chosen
    };
    let now = Utc::now();
    let row = connection::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(tenant_id.to_owned()),
        connector: Set(input.connector),
        config: Set(input.config),
        credentials: Set(serde_json::json!(input.credentials)),
        schedule_seconds: Set(i64::try_from(input.schedule.as_secs()).unwrap_or(i64::MAX)),
        streams: Set(serde_json::json!(streams)),
        status: Set(connection::ACTIVE.to_owned()),
        next_sync_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(db).await?)
}

pub async fn get(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
) -> Result<connection::Model, SyncError> {
    connection::Entity::find_by_id(id)
        .filter(connection::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or_else(|| SyncError::NotFound(format!("no connection {id:?}")))
}

/// One page of the tenant's connections, oldest first, after the connection `after`.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<connection::Model>, SyncError> {
    let mut query = connection::Entity::find().filter(connection::Column::TenantId.eq(tenant_id));
    // Ids are UUIDv7: their order is creation order.
    if let Some(after) = after {
        query = query.filter(connection::Column::Id.gt(after));
    }
    Ok(query
        .order_by_asc(connection::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// Stops scheduled syncs: queued runs are cancelled, a running one is asked to stop.
pub async fn pause(
    db: &(impl ConnectionTrait + TransactionTrait),
    tenant_id: &str,
    id: &str,
) -> Result<connection::Model, SyncError> {
    let txn = db.begin().await?;
    let current = get(&txn, tenant_id, id).await?;
    let now = Utc::now();
    let mut active = current.into_active_model();
    active.status = Set(connection::PAUSED.to_owned());
    active.updated_at = Set(now);
    let paused = active.update(&txn).await?;
    sync_run::Entity::update_many()
        .col_expr(sync_run::Column::Status, Expr::value(sync_run::CANCELLED))
        .col_expr(sync_run::Column::FinishedAt, Expr::value(now))
        .col_expr(sync_run::Column::UpdatedAt, Expr::value(now))
        .filter(sync_run::Column::ConnectionId.eq(id))
        .filter(sync_run::Column::Status.eq(sync_run::QUEUED))
        .exec(&txn)
        .await?;
    sync_run::Entity::update_many()
        .col_expr(sync_run::Column::CancelRequested, Expr::value(true))
        .col_expr(sync_run::Column::UpdatedAt, Expr::value(now))
        .filter(sync_run::Column::ConnectionId.eq(id))
        .filter(sync_run::Column::Status.eq(sync_run::RUNNING))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(paused)
}

/// Back on schedule, with a sync due at once.
pub async fn resume(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    id: &str,
) -> Result<connection::Model, SyncError> {
    let current = get(db, tenant_id, id).await?;
    let now = Utc::now();
    let mut active = current.into_active_model();
    active.status = Set(connection::ACTIVE.to_owned());
    active.next_sync_at = Set(now);
    active.updated_at = Set(now);
    Ok(active.update(db).await?)
}

/// Deletes the connection with its credentials, stream state, runs and records (the
/// database cascades). A worker running it notices at its next commit and stops.
pub async fn delete(db: &impl ConnectionTrait, tenant_id: &str, id: &str) -> Result<(), SyncError> {
    let deleted = connection::Entity::delete_many()
        .filter(connection::Column::Id.eq(id))
        .filter(connection::Column::TenantId.eq(tenant_id))
        .exec(db)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(SyncError::NotFound(format!("no connection {id:?}")));
    }
    Ok(())
}
