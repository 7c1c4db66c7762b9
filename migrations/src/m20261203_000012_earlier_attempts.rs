//! `deliveries.earlier_attempts`: attempts made before the delivery's last replay.
//!
//! A replay starts a fresh retry schedule, so it sets `attempts` back to 0; the attempts made
//! before are added here, and the statistics (`deliveryStats.retryDepth`) count both: a
//! delivery that failed five times and succeeded on its replay needed six attempts, not one.
//! A column, not a count over `delivery_attempts`, because retention deletes attempts long
//! before the deliveries they belong to.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    EarlierAttempts,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(
                        ColumnDef::new(Deliveries::EarlierAttempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::EarlierAttempts)
                    .to_owned(),
            )
            .await
    }
}
