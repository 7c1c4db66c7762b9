//! Indexes over dead letters only, for the dead-letter queue's reads: the `deadLetters`
//! listing (a tenant's, latest first) and bulk replays (a tenant's, in id order from a
//! cursor). Both had only `status` to go by, and read every delivery of the table. Dead
//! letters are few, so the indexes are small, and a delivery that succeeds never enters them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    TenantId,
    Status,
    DeadAt,
    Id,
}

const BY_TIME: &str = "idx_deliveries_dead_by_time";
const BY_ID: &str = "idx_deliveries_dead_by_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, order) in [(BY_TIME, Deliveries::DeadAt), (BY_ID, Deliveries::Id)] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Deliveries::Table)
                        .col(Deliveries::TenantId)
                        .col(order)
                        .and_where(Expr::col(Deliveries::Status).eq("dead"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [BY_TIME, BY_ID] {
            manager
                .drop_index(Index::drop().name(name).table(Deliveries::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
