//! The outbox relay's index holds only what is still to be sent. A full index on
//! `(status, relayed_at)` took a new entry at every update of a delivery (the relay marking
//! it sent, then each attempt); a partial one on `created_at WHERE relayed_at IS NULL` takes
//! one at publish and none after, and is ordered the way the relay reads.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Status,
    RelayedAt,
    CreatedAt,
}

const FULL: &str = "idx_deliveries_unrelayed";
const PARTIAL: &str = "idx_deliveries_unrelayed_by_age";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(FULL).table(Deliveries::Table).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(PARTIAL)
                    .table(Deliveries::Table)
                    .col(Deliveries::CreatedAt)
                    .and_where(Expr::col(Deliveries::RelayedAt).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(PARTIAL)
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(FULL)
                    .table(Deliveries::Table)
                    .col(Deliveries::Status)
                    .col(Deliveries::RelayedAt)
                    .to_owned(),
            )
            .await
    }
}
