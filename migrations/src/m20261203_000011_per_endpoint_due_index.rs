//! The embedded queue takes only what each endpoint can start (`per_endpoint_concurrency`),
//! so its lease statement looks at the queue endpoint by endpoint:
//!
//! - `idx_deliveries_pending_by_endpoint` on `(endpoint_id, next_attempt_at) WHERE status =
//!   'pending'`: the endpoints with pending deliveries are found by skipping through it (one
//!   probe per endpoint, whatever its backlog), and each endpoint's due deliveries are read
//!   from it in order. It replaces `idx_deliveries_pending_due` (migration 7), which only the
//!   old lease statement read: one index fewer to write at every publish and settlement.
//! - `idx_deliveries_leased` on `(endpoint_id, next_attempt_at) WHERE status = 'pending' AND
//!   lease_token IS NOT NULL`: the deliveries in flight (their lease not yet run out), counted
//!   per endpoint at every lease. It holds only the leased rows, so it stays the size of the
//!   workers' concurrency.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Status,
    EndpointId,
    NextAttemptAt,
    LeaseToken,
}

const OLD: &str = "idx_deliveries_pending_due";
const BY_ENDPOINT: &str = "idx_deliveries_pending_by_endpoint";
const LEASED: &str = "idx_deliveries_leased";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(BY_ENDPOINT)
                    .table(Deliveries::Table)
                    .col(Deliveries::EndpointId)
                    .col(Deliveries::NextAttemptAt)
                    .and_where(Expr::col(Deliveries::Status).eq("pending"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(LEASED)
                    .table(Deliveries::Table)
                    .col(Deliveries::EndpointId)
                    .col(Deliveries::NextAttemptAt)
                    .and_where(Expr::col(Deliveries::Status).eq("pending"))
                    .and_where(Expr::col(Deliveries::LeaseToken).is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(OLD).table(Deliveries::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD)
                    .table(Deliveries::Table)
                    .col(Deliveries::NextAttemptAt)
                    .and_where(Expr::col(Deliveries::Status).eq("pending"))
                    .to_owned(),
            )
            .await?;
        for name in [LEASED, BY_ENDPOINT] {
            manager
                .drop_index(Index::drop().name(name).table(Deliveries::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
