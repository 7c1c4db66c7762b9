//! The embedded queue's index holds pending deliveries only. Indexed by `(status,
//! next_attempt_at)`, it kept an entry for every delivery ever made and took a new one at
//! every settlement; `next_attempt_at WHERE status = 'pending'` stays the size of the queue,
//! and a delivery leaving the queue adds nothing to it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Status,
    NextAttemptAt,
}

const FULL: &str = "idx_deliveries_due";
const PENDING: &str = "idx_deliveries_pending_due";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(FULL).table(Deliveries::Table).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(PENDING)
                    .table(Deliveries::Table)
                    .col(Deliveries::NextAttemptAt)
                    .and_where(Expr::col(Deliveries::Status).eq("pending"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(PENDING)
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
                    .col(Deliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }
}
