//! The webhook pipeline: endpoints and their signing secrets, event types, messages, and one
//! delivery per (message, endpoint) with its attempts. `deliveries` doubles as the outbox and,
//! on embedded defaults, as the queue itself.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Endpoints {
    Table,
    Id,
    TenantId,
    Url,
    Description,
    EventTypes,
    Channels,
    Headers,
    Enabled,
    DisabledReason,
    RetrySchedule,
    RateLimitPerSecond,
    SigningAlgorithm,
    FailingSince,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EndpointSecrets {
    Table,
    Id,
    TenantId,
    EndpointId,
    Secret,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum EventTypes {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    Schema,
    Deprecated,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    TenantId,
    EventType,
    Payload,
    PayloadHash,
    Channels,
    IdempotencyKey,
    Traceparent,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    TenantId,
    MessageId,
    EndpointId,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseToken,
    LastError,
    CreatedAt,
    UpdatedAt,
    DeliveredAt,
    DeadAt,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    TenantId,
    DeliveryId,
    MessageId,
    EndpointId,
    Attempt,
    StatusCode,
    DurationMs,
    ResponseExcerpt,
    ErrorKind,
    TraceId,
    CreatedAt,
}

fn tenant_fk(table: impl IntoIden, column: impl IntoIden, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, column)
        .to(Tenants::Table, Tenants::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Endpoints::Table)
                    .col(string_len(Endpoints::Id, 64).primary_key())
                    .col(string_len(Endpoints::TenantId, 64))
                    .col(text(Endpoints::Url))
                    .col(text(Endpoints::Description))
                    .col(json_binary(Endpoints::EventTypes))
                    .col(json_binary(Endpoints::Channels))
                    .col(json_binary(Endpoints::Headers))
                    .col(boolean(Endpoints::Enabled))
                    .col(text_null(Endpoints::DisabledReason))
                    .col(json_binary_null(Endpoints::RetrySchedule))
                    .col(integer_null(Endpoints::RateLimitPerSecond))
                    .col(string_len(Endpoints::SigningAlgorithm, 16))
                    .col(timestamp_with_time_zone_null(Endpoints::FailingSince))
                    .col(timestamp_with_time_zone(Endpoints::CreatedAt))
                    .col(timestamp_with_time_zone(Endpoints::UpdatedAt))
                    .foreign_key(&mut tenant_fk(
                        Endpoints::Table,
                        Endpoints::TenantId,
                        "fk_endpoints_tenant",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_endpoints_tenant_created")
                    .table(Endpoints::Table)
                    .col(Endpoints::TenantId)
                    .col(Endpoints::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EndpointSecrets::Table)
                    .col(string_len(EndpointSecrets::Id, 64).primary_key())
                    .col(string_len(EndpointSecrets::TenantId, 64))
                    .col(string_len(EndpointSecrets::EndpointId, 64))
                    .col(text(EndpointSecrets::Secret))
                    .col(timestamp_with_time_zone(EndpointSecrets::CreatedAt))
                    .col(timestamp_with_time_zone_null(EndpointSecrets::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_endpoint_secrets_endpoint")
                            .from(EndpointSecrets::Table, EndpointSecrets::EndpointId)
                            .to(Endpoints::Table, Endpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_endpoint_secrets_endpoint")
                    .table(EndpointSecrets::Table)
                    .col(EndpointSecrets::EndpointId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EventTypes::Table)
                    .col(string_len(EventTypes::Id, 64).primary_key())
                    .col(string_len(EventTypes::TenantId, 64))
                    .col(string_len(EventTypes::Name, 256))
                    .col(text(EventTypes::Description))
                    .col(json_binary_null(EventTypes::Schema))
                    .col(boolean(EventTypes::Deprecated))
                    .col(timestamp_with_time_zone(EventTypes::CreatedAt))
                    .col(timestamp_with_time_zone(EventTypes::UpdatedAt))
                    .foreign_key(&mut tenant_fk(
                        EventTypes::Table,
                        EventTypes::TenantId,
                        "fk_event_types_tenant",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_event_types_tenant_name")
                    .table(EventTypes::Table)
                    .col(EventTypes::TenantId)
                    .col(EventTypes::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(string_len(Messages::Id, 64).primary_key())
                    .col(string_len(Messages::TenantId, 64))
                    .col(string_len(Messages::EventType, 256))
                    .col(json_binary(Messages::Payload))
                    .col(string_len(Messages::PayloadHash, 64))
                    .col(json_binary(Messages::Channels))
                    .col(string_len_null(Messages::IdempotencyKey, 256))
                    .col(string_len_null(Messages::Traceparent, 128))
                    .col(timestamp_with_time_zone(Messages::CreatedAt))
                    .foreign_key(&mut tenant_fk(
                        Messages::Table,
                        Messages::TenantId,
                        "fk_messages_tenant",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_tenant_idempotency")
                    .table(Messages::Table)
                    .col(Messages::TenantId)
                    .col(Messages::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_tenant_created")
                    .table(Messages::Table)
                    .col(Messages::TenantId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(string_len(Deliveries::Id, 64).primary_key())
                    .col(string_len(Deliveries::TenantId, 64))
                    .col(string_len(Deliveries::MessageId, 64))
                    .col(string_len(Deliveries::EndpointId, 64))
                    .col(string_len(Deliveries::Status, 16))
                    .col(integer(Deliveries::Attempts))
                    .col(timestamp_with_time_zone(Deliveries::NextAttemptAt))
                    .col(string_len_null(Deliveries::LeaseToken, 64))
                    .col(text_null(Deliveries::LastError))
                    .col(timestamp_with_time_zone(Deliveries::CreatedAt))
                    .col(timestamp_with_time_zone(Deliveries::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Deliveries::DeliveredAt))
                    .col(timestamp_with_time_zone_null(Deliveries::DeadAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_deliveries_message")
                            .from(Deliveries::Table, Deliveries::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_deliveries_endpoint")
                            .from(Deliveries::Table, Deliveries::EndpointId)
                            .to(Endpoints::Table, Endpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The queue's hot path: due work, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_due")
                    .table(Deliveries::Table)
                    .col(Deliveries::Status)
                    .col(Deliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_message_endpoint")
                    .table(Deliveries::Table)
                    .col(Deliveries::MessageId)
                    .col(Deliveries::EndpointId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_endpoint_status")
                    .table(Deliveries::Table)
                    .col(Deliveries::EndpointId)
                    .col(Deliveries::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .col(string_len(DeliveryAttempts::Id, 64).primary_key())
                    .col(string_len(DeliveryAttempts::TenantId, 64))
                    .col(string_len(DeliveryAttempts::DeliveryId, 64))
                    .col(string_len(DeliveryAttempts::MessageId, 64))
                    .col(string_len(DeliveryAttempts::EndpointId, 64))
                    .col(integer(DeliveryAttempts::Attempt))
                    .col(integer_null(DeliveryAttempts::StatusCode))
                    .col(big_integer(DeliveryAttempts::DurationMs))
                    .col(text_null(DeliveryAttempts::ResponseExcerpt))
                    .col(string_len_null(DeliveryAttempts::ErrorKind, 32))
                    .col(string_len_null(DeliveryAttempts::TraceId, 32))
                    .col(timestamp_with_time_zone(DeliveryAttempts::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_delivery_attempts_delivery")
                            .from(DeliveryAttempts::Table, DeliveryAttempts::DeliveryId)
                            .to(Deliveries::Table, Deliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            (
                "idx_delivery_attempts_delivery",
                DeliveryAttempts::DeliveryId,
            ),
            (
                "idx_delivery_attempts_endpoint",
                DeliveryAttempts::EndpointId,
            ),
            ("idx_delivery_attempts_message", DeliveryAttempts::MessageId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(DeliveryAttempts::Table)
                        .col(column)
                        .col(DeliveryAttempts::CreatedAt)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeliveryAttempts::Table.into_iden(),
            Deliveries::Table.into_iden(),
            Messages::Table.into_iden(),
            EventTypes::Table.into_iden(),
            EndpointSecrets::Table.into_iden(),
            Endpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
