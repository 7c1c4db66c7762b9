//! Bulk replays as jobs: what a replay of dead letters covers, how far it got, and a
//! heartbeat, so progress is visible while it runs and a job left by a crashed process is
//! taken over and finished.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ReplayJobs {
    Table,
    Id,
    TenantId,
    EndpointId,
    Since,
    Until,
    Status,
    Total,
    Requeued,
    Cursor,
    Error,
    HeartbeatAt,
    CreatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReplayJobs::Table)
                    .col(string_len(ReplayJobs::Id, 64).primary_key())
                    .col(string_len(ReplayJobs::TenantId, 64))
                    .col(string_len_null(ReplayJobs::EndpointId, 64))
                    .col(timestamp_with_time_zone_null(ReplayJobs::Since))
                    .col(timestamp_with_time_zone_null(ReplayJobs::Until))
                    .col(string_len(ReplayJobs::Status, 16))
                    .col(big_integer(ReplayJobs::Total))
                    .col(big_integer(ReplayJobs::Requeued))
                    .col(string_len_null(ReplayJobs::Cursor, 64))
                    .col(text_null(ReplayJobs::Error))
                    .col(timestamp_with_time_zone(ReplayJobs::HeartbeatAt))
                    .col(timestamp_with_time_zone(ReplayJobs::CreatedAt))
                    .col(timestamp_with_time_zone_null(ReplayJobs::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_replay_jobs_tenant")
                            .from(ReplayJobs::Table, ReplayJobs::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_replay_jobs_status_heartbeat")
                    .table(ReplayJobs::Table)
                    .col(ReplayJobs::Status)
                    .col(ReplayJobs::HeartbeatAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReplayJobs::Table).to_owned())
            .await
    }
}
