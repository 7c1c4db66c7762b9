//! Connectors: connections (a tenant's configured connector, its credentials and schedule),
//! each stream's sync state, the sync runs (leased by workers from this table, like replay
//! jobs), and the records synced.
//!
//! One connection never syncs twice at once: a unique index over the connection of every run
//! still queued or running refuses a second live run, whichever worker or request adds it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Connections {
    Table,
    Id,
    TenantId,
    Connector,
    Config,
    Credentials,
    ScheduleSeconds,
    Streams,
    Status,
    NextSyncAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConnectionStreams {
    Table,
    ConnectionId,
    Stream,
    TenantId,
    State,
    Cursor,
    CursorAt,
    LastSyncedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SyncRuns {
    Table,
    Id,
    TenantId,
    ConnectionId,
    Status,
    Reason,
    Counts,
    CurrentStream,
    Attempts,
    RunAfter,
    LeaseToken,
    LeaseExpiresAt,
    CancelRequested,
    Error,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConnectorRecords {
    Table,
    ConnectionId,
    Stream,
    RecordKey,
    TenantId,
    Data,
    FirstSeenAt,
    UpdatedAt,
}

/// The index that keeps a connection to one live run.
const ONE_LIVE_RUN: &str = "idx_sync_runs_one_live_per_connection";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Connections::Table)
                    .col(string_len(Connections::Id, 64).primary_key())
                    .col(string_len(Connections::TenantId, 64))
                    .col(string_len(Connections::Connector, 128))
                    .col(json_binary(Connections::Config))
                    .col(json_binary(Connections::Credentials))
                    .col(big_integer(Connections::ScheduleSeconds))
                    .col(json_binary(Connections::Streams))
                    .col(string_len(Connections::Status, 16))
                    .col(timestamp_with_time_zone(Connections::NextSyncAt))
                    .col(timestamp_with_time_zone(Connections::CreatedAt))
                    .col(timestamp_with_time_zone(Connections::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_connections_tenant")
                            .from(Connections::Table, Connections::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_connections_tenant")
                    .table(Connections::Table)
                    .col(Connections::TenantId)
                    .col(Connections::Id)
                    .to_owned(),
            )
            .await?;
        // The scheduler's question: which active connections are due.
        manager
            .create_index(
                Index::create()
                    .name("idx_connections_active_due")
                    .table(Connections::Table)
                    .col(Connections::NextSyncAt)
                    .and_where(Expr::col(Connections::Status).eq("active"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConnectionStreams::Table)
                    .col(string_len(ConnectionStreams::ConnectionId, 64))
                    .col(string_len(ConnectionStreams::Stream, 128))
                    .col(string_len(ConnectionStreams::TenantId, 64))
                    .col(json_binary_null(ConnectionStreams::State))
                    .col(json_binary_null(ConnectionStreams::Cursor))
                    .col(timestamp_with_time_zone_null(ConnectionStreams::CursorAt))
                    .col(timestamp_with_time_zone_null(
                        ConnectionStreams::LastSyncedAt,
                    ))
                    .col(timestamp_with_time_zone(ConnectionStreams::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ConnectionStreams::ConnectionId)
                            .col(ConnectionStreams::Stream),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_connection_streams_connection")
                            .from(ConnectionStreams::Table, ConnectionStreams::ConnectionId)
                            .to(Connections::Table, Connections::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SyncRuns::Table)
                    .col(string_len(SyncRuns::Id, 64).primary_key())
                    .col(string_len(SyncRuns::TenantId, 64))
                    .col(string_len(SyncRuns::ConnectionId, 64))
                    .col(string_len(SyncRuns::Status, 16))
                    .col(string_len(SyncRuns::Reason, 16))
                    .col(json_binary(SyncRuns::Counts))
                    .col(string_len_null(SyncRuns::CurrentStream, 128))
                    .col(integer(SyncRuns::Attempts))
                    .col(timestamp_with_time_zone(SyncRuns::RunAfter))
                    .col(string_len_null(SyncRuns::LeaseToken, 64))
                    .col(timestamp_with_time_zone_null(SyncRuns::LeaseExpiresAt))
                    .col(boolean(SyncRuns::CancelRequested))
                    .col(text_null(SyncRuns::Error))
                    .col(timestamp_with_time_zone(SyncRuns::CreatedAt))
                    .col(timestamp_with_time_zone_null(SyncRuns::StartedAt))
                    .col(timestamp_with_time_zone_null(SyncRuns::FinishedAt))
                    .col(timestamp_with_time_zone(SyncRuns::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sync_runs_connection")
                            .from(SyncRuns::Table, SyncRuns::ConnectionId)
                            .to(Connections::Table, Connections::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(ONE_LIVE_RUN)
                    .table(SyncRuns::Table)
                    .col(SyncRuns::ConnectionId)
                    .unique()
                    .and_where(Expr::col(SyncRuns::Status).is_in(["queued", "running"]))
                    .to_owned(),
            )
            .await?;
        // Run history, newest first, per connection.
        manager
            .create_index(
                Index::create()
                    .name("idx_sync_runs_connection_id")
                    .table(SyncRuns::Table)
                    .col(SyncRuns::ConnectionId)
                    .col(SyncRuns::Id)
                    .to_owned(),
            )
            .await?;
        // The workers' question: which runs can be leased (queued and due, or running with
        // a lease that ran out). Small: live runs only.
        manager
            .create_index(
                Index::create()
                    .name("idx_sync_runs_live_run_after")
                    .table(SyncRuns::Table)
                    .col(SyncRuns::RunAfter)
                    .and_where(Expr::col(SyncRuns::Status).is_in(["queued", "running"]))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConnectorRecords::Table)
                    .col(string_len(ConnectorRecords::ConnectionId, 64))
                    .col(string_len(ConnectorRecords::Stream, 128))
                    .col(text(ConnectorRecords::RecordKey))
                    .col(string_len(ConnectorRecords::TenantId, 64))
                    .col(json_binary(ConnectorRecords::Data))
                    .col(timestamp_with_time_zone(ConnectorRecords::FirstSeenAt))
                    .col(timestamp_with_time_zone(ConnectorRecords::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ConnectorRecords::ConnectionId)
                            .col(ConnectorRecords::Stream)
                            .col(ConnectorRecords::RecordKey),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_connector_records_connection")
                            .from(ConnectorRecords::Table, ConnectorRecords::ConnectionId)
                            .to(Connections::Table, Connections::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // `records(updatedSince)`.
        manager
            .create_index(
                Index::create()
                    .name("idx_connector_records_updated")
                    .table(ConnectorRecords::Table)
                    .col(ConnectorRecords::ConnectionId)
                    .col(ConnectorRecords::Stream)
                    .col(ConnectorRecords::UpdatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ConnectorRecords::Table.into_iden(),
            SyncRuns::Table.into_iden(),
            ConnectionStreams::Table.into_iden(),
            Connections::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
