//! Live subscriptions: delivery attempts and dead letters as the dispatcher records them.
//!
//! Events come from a broadcast channel: the dispatcher's own in `junction serve`. A
//! subscriber that falls behind by more than the channel holds skips what it missed (logged)
//! rather than slowing the dispatcher down.

use async_graphql::{Context, Enum, ID, Object, Result, Subscription as GraphQLSubscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use junction_schema::entities::delivery;
use junction_schema::envelope::{AttemptOutcome, DeliveryEvent};
use junction_schema::error_code::ErrorCode;
use junction_subgraph_kit::error;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::broadcast;

use super::access::access;
use super::objects::{DeadLetter, DeliveryAttempt};

/// How an attempt ended, as live events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum AttemptStatus {
    Succeeded,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Failed for good: the delivery is in the dead-letter queue.
    DeadLettered,
}

impl From<AttemptOutcome> for AttemptStatus {
    fn from(outcome: AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Succeeded => AttemptStatus::Succeeded,
            AttemptOutcome::Retrying => AttemptStatus::Retrying,
            AttemptOutcome::DeadLettered => AttemptStatus::DeadLettered,
        }
    }
}

/// One attempt, the moment it was recorded.
pub struct DeliveryAttemptEvent(DeliveryEvent);

#[Object]
impl DeliveryAttemptEvent {
    async fn attempt(&self) -> DeliveryAttempt {
        DeliveryAttempt(self.0.to_attempt())
    }

    async fn status(&self) -> AttemptStatus {
        self.0.outcome.into()
    }

    /// When the next attempt is due, for `RETRYING`.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }
}

pub struct Subscription;

#[GraphQLSubscription]
impl Subscription {
    /// Every attempt recorded for the caller's tenant from now on; optionally only those to one
    /// endpoint, of one message, or ending one way.
    async fn delivery_attempts(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Option<ID>,
        message_id: Option<ID>,
        status: Option<AttemptStatus>,
    ) -> Result<impl Stream<Item = DeliveryAttemptEvent> + use<>> {
        let (tenant, events, _) = live(ctx)?;
        Ok(events_of(events).filter_map(move |event| {
            let wanted = event.tenant_id == tenant
                && endpoint_id
                    .as_ref()
                    .is_none_or(|id| id.0 == event.endpoint_id)
                && message_id
                    .as_ref()
                    .is_none_or(|id| id.0 == event.message_id)
                && status.is_none_or(|s| s == AttemptStatus::from(event.outcome));
            std::future::ready(wanted.then_some(DeliveryAttemptEvent(event)))
        }))
    }

    /// Deliveries of the caller's tenant that are dead-lettered from now on; optionally only
    /// those to one endpoint.
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Option<ID>,
    ) -> Result<impl Stream<Item = DeadLetter> + use<>> {
        let (tenant, events, db) = live(ctx)?;
        Ok(events_of(events)
            .filter(move |event| {
                std::future::ready(
                    event.tenant_id == tenant
                        && event.outcome == AttemptOutcome::DeadLettered
                        && endpoint_id
                            .as_ref()
                            .is_none_or(|id| id.0 == event.endpoint_id),
                )
            })
            .filter_map(move |event| {
                let db = db.clone();
                async move { dead_letter(&db, &event).await }
            }))
    }
}

/// The caller's tenant, a fresh receiver of the event channel, and the database.
fn live(
    ctx: &Context<'_>,
) -> Result<(
    String,
    broadcast::Receiver<DeliveryEvent>,
    DatabaseConnection,
)> {
    let access = access(ctx)?;
    let Some(events) = &access.state.events else {
        return Err(error(
            ErrorCode::Internal,
            "live delivery events are not available from this deliveries subgraph: it runs \
             without a dispatcher in its process and without the Kafka backend's events topic",
        ));
    };
    Ok((
        access.tenant().to_owned(),
        events.subscribe(),
        access.state.db.clone(),
    ))
}

/// The channel as a stream; ends when the channel closes (the dispatcher stopped).
fn events_of(receiver: broadcast::Receiver<DeliveryEvent>) -> impl Stream<Item = DeliveryEvent> {
    stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((event, receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a live subscriber fell behind and skipped events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The dead-lettered delivery as stored; an event whose row is gone (retention) is skipped.
async fn dead_letter(db: &DatabaseConnection, event: &DeliveryEvent) -> Option<DeadLetter> {
    let row = delivery::Entity::find_by_id(event.delivery_id.clone())
        .filter(delivery::Column::TenantId.eq(event.tenant_id.as_str()))
        .one(db)
        .await;
    match row {
        Ok(row) => row.map(DeadLetter),
        Err(e) => {
            tracing::error!(error = %e, delivery = %event.delivery_id, "cannot load a dead letter for a live subscriber");
            None
        }
    }
}
