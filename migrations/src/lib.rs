//! Every table of Junction, as sea-orm migrations that run on SQLite and PostgreSQL alike.
//!
//! `junction serve` applies pending migrations at start; `junction migrate up|down|status`
//! does it by hand. Migrations are append-only: a released one is never edited.

use sea_orm_migration::prelude::*;

mod m20261126_000001_tenants_and_api_keys;
mod m20261126_000002_webhooks;
mod m20261126_000003_replay_jobs;
mod m20261127_000004_outbox_relay;
mod m20261127_000005_partial_unrelayed_index;
mod m20261127_000006_outbox_table;
mod m20261127_000007_partial_due_index;
mod m20261127_000008_created_at_indexes;
mod m20261127_000009_dead_letter_indexes;
mod m20261127_000010_attempts_without_delivery_key;
mod m20261203_000011_per_endpoint_due_index;
mod m20261203_000012_earlier_attempts;
mod m20261203_000013_connectors;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_tenants_and_api_keys::Migration),
            Box::new(m20261126_000002_webhooks::Migration),
            Box::new(m20261126_000003_replay_jobs::Migration),
            Box::new(m20261127_000004_outbox_relay::Migration),
            Box::new(m20261127_000005_partial_unrelayed_index::Migration),
            Box::new(m20261127_000006_outbox_table::Migration),
            Box::new(m20261127_000007_partial_due_index::Migration),
            Box::new(m20261127_000008_created_at_indexes::Migration),
            Box::new(m20261127_000009_dead_letter_indexes::Migration),
            Box::new(m20261127_000010_attempts_without_delivery_key::Migration),
            Box::new(m20261203_000011_per_endpoint_due_index::Migration),
            Box::new(m20261203_000012_earlier_attempts::Migration),
            Box::new(m20261203_000013_connectors::Migration),
        ]
    }
}

/// The name of every migration this binary knows, oldest first.
pub fn names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// One migration and whether the database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// The state of every known migration, in order. Read-only: never creates tables, so it is
/// safe in readiness probes.
pub async fn status<C: ConnectionTrait>(db: &C) -> Result<Vec<MigrationState>, DbErr> {
    Ok(Migrator::get_migration_with_status_read_only(db)
        .await?
        .iter()
        .map(|m| MigrationState {
            name: m.name().to_owned(),
            applied: m.status() == sea_orm_migration::MigrationStatus::Applied,
        })
        .collect())
}

/// Applies every pending migration; returns the names applied.
pub async fn up(db: &sea_orm::DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let pending: Vec<String> = Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Migrator::up(db, None).await?;
    Ok(pending)
}

/// Rolls back the last `steps` applied migrations; returns the names rolled back.
pub async fn down(db: &sea_orm::DatabaseConnection, steps: u32) -> Result<Vec<String>, DbErr> {
    let applied: Vec<String> = Migrator::get_applied_migrations(db)
        .await?
        .iter()
        .rev()
        .take(steps as usize)
        .map(|m| m.name().to_owned())
        .collect();
    Migrator::down(db, Some(steps)).await?;
    Ok(applied)
}
