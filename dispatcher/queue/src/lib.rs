//! The queue between publishing and delivery: one small trait, one file per backend, and
//! the outbox, the only writer of what publishing and replay put on the queue.
//!
//! A backend hands out [`Received`] tasks and settles each exactly one way: `ack` after a
//! success, `retry_at` for a later attempt, `dead_letter` when retries are exhausted. A task
//! that is never settled (its worker died) must come back by itself: that is what makes
//! delivery at-least-once.
//!
//! - [`outbox`]: a message, its deliveries and the outbox row stored in one transaction (what
//!   publishing calls), and the relay that carries them to Kafka.
//! - [`EmbeddedQueue`]: the deliveries table is the queue; [`KafkaQueue`]: Kafka topics.
//! - [`subscribers`]: which endpoints a published message goes to.
//! - [`replay`]: putting deliveries back on the queue: one message, or dead letters in bulk as
//!   jobs with progress.

pub mod background;
pub mod config;
mod embedded;
pub mod kafka;
pub mod outbox;
pub mod replay;
pub mod statement_shapes;
pub mod subscribers;
#[cfg(test)]
mod test_database;

pub use config::{QueueBackend, QueueConfig};
pub use embedded::{DEFAULT_PER_ENDPOINT_LIMIT, EmbeddedQueue};
pub use kafka::{KafkaConfig, KafkaQueue};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One message on its way to one endpoint. `delivery_id` is the `webhook-id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub delivery_id: String,
    pub tenant_id: String,
    pub message_id: String,
    pub endpoint_id: String,
    /// Attempts already made.
    pub attempts: i32,
}

impl From<junction_schema::entities::delivery::Model> for Task {
    fn from(row: junction_schema::entities::delivery::Model) -> Self {
        Self {
            delivery_id: row.id,
            tenant_id: row.tenant_id,
            message_id: row.message_id,
            endpoint_id: row.endpoint_id,
            attempts: row.attempts,
        }
    }
}

/// A task taken from the queue, with the backend's handle for settling it.
#[derive(Clone, Debug)]
pub struct Received {
    pub task: Task,
    /// Opaque to the worker: a lease token, or a partition and offset.
    pub receipt: String,
    /// The worker already wrote the settled state (status, times) with the attempt: a
    /// backend that mirrors it in the deliveries table need not write it again.
    pub state_recorded: bool,
}

impl Received {
    pub fn new(task: Task, receipt: String) -> Self {
        Self {
            task,
            receipt,
            state_recorded: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("queue backend error: {0}")]
    Backend(String),
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Makes tasks available for delivery now (new tasks, or replays of settled ones).
    async fn publish(&self, tasks: &[Task]) -> Result<(), QueueError>;
    /// Takes up to `max` due tasks. Each stays invisible to other workers until settled or
    /// until its lease runs out.
    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError>;
    /// The attempt succeeded and is recorded.
    async fn ack(&self, received: &Received) -> Result<(), QueueError>;
    /// Try again at `at`; nothing counts as an attempt here, the worker records those.
    async fn retry_at(&self, received: &Received, at: DateTime<Utc>) -> Result<(), QueueError>;
    /// Retries are exhausted (or delivery is impossible); keep it for replay.
    async fn dead_letter(&self, received: &Received, reason: &str) -> Result<(), QueueError>;
    /// True when `receive` never hands out more deliveries of one endpoint than its
    /// concurrency limit allows (counting every worker's): the worker then need not hold
    /// tasks back for that limit itself.
    fn limits_endpoints(&self) -> bool {
        false
    }
    /// The worker is stopping and settled its last task: leave cleanly (a consumer group
    /// hands this worker's share to the others at once, rather than after a timeout).
    async fn close(&self) {}
}
