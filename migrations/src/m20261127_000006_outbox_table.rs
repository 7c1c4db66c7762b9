//! The outbox in a table of its own. Marking each delivery row relayed rewrote the whole
//! row (and an entry in each of its indexes) once more per delivery; an outbox row per
//! published message is written once and deleted once. Deliveries still to be relayed are
//! carried over, one row each.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    MessageId,
    DeliveryId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    RelayedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
}

const UNRELAYED: &str = "idx_deliveries_unrelayed_by_age";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(big_pk_auto(Outbox::Id))
                    .col(string_len(Outbox::MessageId, 64))
                    .col(string_len_null(Outbox::DeliveryId, 64))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    // Retention deletes old messages; their outbox rows go with them.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_outbox_message")
                            .from(Outbox::Table, Outbox::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_outbox_delivery")
                            .from(Outbox::Table, Outbox::DeliveryId)
                            .to(Deliveries::Table, Deliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO outbox (message_id, delivery_id, created_at) \
                 SELECT message_id, id, created_at FROM deliveries \
                 WHERE status = 'pending' AND relayed_at IS NULL ORDER BY created_at",
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(UNRELAYED)
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::RelayedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(timestamp_with_time_zone_null(Deliveries::RelayedAt))
                    .to_owned(),
            )
            .await?;
        // Everything is relayed but what the outbox still names.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE deliveries SET relayed_at = updated_at \
                 WHERE status <> 'pending' OR NOT (id IN (SELECT delivery_id FROM outbox \
                 WHERE delivery_id IS NOT NULL) OR message_id IN (SELECT message_id FROM outbox \
                 WHERE delivery_id IS NULL))",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(UNRELAYED)
                    .table(Deliveries::Table)
                    .col(Deliveries::CreatedAt)
                    .and_where(Expr::col(Deliveries::RelayedAt).is_null())
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await
    }
}
