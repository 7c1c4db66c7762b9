//! The types: attempts, dead letters, stats, and the webhooks subgraph's entities extended.

use async_graphql::{ComplexObject, Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use junction_schema::entities::{delivery, delivery_attempt, replay_job};

use async_graphql::InputObject;
use async_graphql::connection::{Connection, Edge};
use junction_subgraph_kit::{decode_cursor, encode_cursor, page_limit};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::access::{access, api};
use crate::stats;

pub type AttemptConnection = Connection<String, DeliveryAttempt>;

#[derive(InputObject, Default)]
pub struct AttemptFilter {
    pub endpoint_id: Option<ID>,
    pub message_id: Option<ID>,
    /// Only successful (true) or failed (false) attempts.
    pub succeeded: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A page of the caller's attempts, newest first.
pub async fn attempts_page(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    filter: AttemptFilter,
) -> Result<AttemptConnection> {
    let access = access(ctx)?;
    let limit = page_limit(first)?;
    let mut query = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::TenantId.eq(access.tenant()));
    if let Some(after) = decode_cursor(after)? {
        query = query.filter(delivery_attempt::Column::Id.lt(after));
    }
    if let Some(endpoint) = &filter.endpoint_id {
        query = query.filter(delivery_attempt::Column::EndpointId.eq(endpoint.as_str()));
    }
    if let Some(message) = &filter.message_id {
        query = query.filter(delivery_attempt::Column::MessageId.eq(message.as_str()));
    }
    match filter.succeeded {
        Some(true) => query = query.filter(delivery_attempt::Column::ErrorKind.is_null()),
        Some(false) => query = query.filter(delivery_attempt::Column::ErrorKind.is_not_null()),
        None => {}
    }
    if let Some(since) = filter.since {
        query = query.filter(delivery_attempt::Column::CreatedAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(delivery_attempt::Column::CreatedAt.lt(until));
    }
    let rows = api(query
        .order_by_desc(delivery_attempt::Column::Id)
        .limit(limit)
        .all(&access.state.db)
        .await)?;
    let has_next = rows.len() as u64 >= limit;
    let mut connection = Connection::new(false, has_next);
    connection.edges.extend(
        rows.into_iter()
            .take(limit.saturating_sub(1) as usize)
            .map(|row| Edge::new(encode_cursor(&row.id), DeliveryAttempt(row))),
    );
    Ok(connection)
}

/// One HTTP attempt to deliver a message to an endpoint.
pub struct DeliveryAttempt(pub delivery_attempt::Model);

#[Object]
impl DeliveryAttempt {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// The `webhook-id` the endpoint saw; the same on every attempt.
    async fn delivery_id(&self) -> ID {
        ID(self.0.delivery_id.clone())
    }

    async fn message(&self) -> Message {
        Message {
            id: ID(self.0.message_id.clone()),
        }
    }

    async fn endpoint(&self) -> Endpoint {
        Endpoint {
            id: ID(self.0.endpoint_id.clone()),
        }
    }

    /// 1 for the first attempt.
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }

    async fn status_code(&self) -> Option<i32> {
        self.0.status_code
    }

    async fn succeeded(&self) -> bool {
        self.0.error_kind.is_none()
    }

    async fn duration_ms(&self) -> f64 {
        self.0.duration_ms as f64
    }

    /// Why it failed: `status`, `timeout`, `connect`, `ssrf` or `request`.
    async fn error_kind(&self) -> Option<&str> {
        self.0.error_kind.as_deref()
    }

    async fn response_excerpt(&self) -> Option<&str> {
        self.0.response_excerpt.as_deref()
    }

    async fn trace_id(&self) -> Option<&str> {
        self.0.trace_id.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A delivery that ran out of retries (or whose endpoint was disabled), kept for replay.
pub struct DeadLetter(pub delivery::Model);

#[Object]
impl DeadLetter {
    /// The `webhook-id`; a replay keeps it.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn message(&self) -> Message {
        Message {
            id: ID(self.0.message_id.clone()),
        }
    }

    async fn endpoint(&self) -> Endpoint {
        Endpoint {
            id: ID(self.0.endpoint_id.clone()),
        }
    }

    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    async fn reason(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    async fn dead_at(&self) -> Option<DateTime<Utc>> {
        self.0.dead_at
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum StatsWindow {
    #[graphql(name = "LAST_HOUR")]
    Hour,
    #[graphql(name = "LAST_DAY")]
    Day,
    #[graphql(name = "LAST_3_DAYS")]
    ThreeDays,
}

impl StatsWindow {
    fn since(self) -> DateTime<Utc> {
        Utc::now()
            - match self {
                StatsWindow::Hour => Duration::hours(1),
                StatsWindow::Day => Duration::days(1),
                StatsWindow::ThreeDays => Duration::days(3),
            }
    }
}

/// How deliveries went over a window (one endpoint's, or a tenant's).
#[derive(SimpleObject)]
pub struct DeliveryStats {
    pub deliveries: i32,
    pub delivered: i32,
    pub dead_lettered: i32,
    /// Delivered over deliveries, from 0 to 1 (1 when there were none).
    pub success_rate: f64,
    pub attempts: i32,
    pub failed_attempts: i32,
    /// `retryDepth[n]`: deliveries that needed n + 1 attempts to succeed, attempts made
    /// before a replay included.
    pub retry_depth: Vec<i32>,
    /// Attempt durations, in milliseconds; null without attempts.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl DeliveryStats {
    pub(super) async fn load(
        ctx: &Context<'_>,
        endpoint_id: Option<&str>,
        window: StatsWindow,
    ) -> Result<Self> {
        let access = access(ctx)?;
        let stats = api(stats::delivery_stats(
            &access.state.db,
            access.tenant(),
            endpoint_id,
            window.since(),
        )
        .await)?;
        let latency = |i: usize| stats.latency_ms.map(|l| l[i] as f64);
        Ok(Self {
            deliveries: count(stats.deliveries),
            delivered: count(stats.delivered),
            dead_lettered: count(stats.dead_lettered),
            success_rate: stats.success_rate(),
            attempts: count(stats.attempts),
            failed_attempts: count(stats.failed_attempts),
            retry_depth: stats.retry_depth.iter().map(|n| count(*n)).collect(),
            latency_p50_ms: latency(0),
            latency_p95_ms: latency(1),
            latency_p99_ms: latency(2),
        })
    }
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The webhooks subgraph's endpoint, with what this subgraph knows about it.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Endpoint {
    pub id: ID,
}

#[ComplexObject]
impl Endpoint {
    /// Attempts to this endpoint, newest first.
    async fn attempts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AttemptConnection> {
        let filter = AttemptFilter {
            endpoint_id: Some(self.id.clone()),
            ..AttemptFilter::default()
        };
        attempts_page(ctx, first, after, filter).await
    }

    async fn stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "StatsWindow::Day")] window: StatsWindow,
    ) -> Result<DeliveryStats> {
        DeliveryStats::load(ctx, Some(&self.id), window).await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum DeliveryStatus {
    /// Every delivery succeeded (or the message went to no endpoint).
    Delivered,
    /// Some delivery is still being tried.
    Pending,
    /// Some delivery was dead-lettered.
    Failed,
}

/// The webhooks subgraph's message, with what this subgraph knows about it.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Message {
    pub id: ID,
}

#[ComplexObject]
impl Message {
    async fn attempts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AttemptConnection> {
        let filter = AttemptFilter {
            message_id: Some(self.id.clone()),
            ..AttemptFilter::default()
        };
        attempts_page(ctx, first, after, filter).await
    }

    async fn delivery_status(&self, ctx: &Context<'_>) -> Result<DeliveryStatus> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let access = access(ctx)?;
        let rows = api(delivery::Entity::find()
            .filter(delivery::Column::TenantId.eq(access.tenant()))
            .filter(delivery::Column::MessageId.eq(self.id.as_str()))
            .all(&access.state.db)
            .await)?;
        Ok(if rows.iter().any(|r| r.status == delivery::DEAD) {
            DeliveryStatus::Failed
        } else if rows.iter().any(|r| r.status == delivery::PENDING) {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Delivered
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum ReplayJobStatus {
    Running,
    Succeeded,
    Failed,
}

/// A bulk replay of dead letters, running in the background: poll it for progress.
pub struct ReplayJob(pub replay_job::Model);

#[Object]
impl ReplayJob {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn status(&self) -> ReplayJobStatus {
        match self.0.status.as_str() {
            replay_job::SUCCEEDED => ReplayJobStatus::Succeeded,
            replay_job::FAILED => ReplayJobStatus::Failed,
            _ => ReplayJobStatus::Running,
        }
    }

    /// Dead letters matching the filter when the job started.
    async fn total(&self) -> f64 {
        self.0.total as f64
    }

    /// Put back on the queue so far, each under its original `webhook-id`.
    async fn requeued(&self) -> f64 {
        self.0.requeued as f64
    }

    /// `requeued / total`, from 0 to 1 (1 when there was nothing to replay). Dead letters
    /// added after the start are replayed too, so it may pass 1 briefly before the end.
    async fn progress(&self) -> f64 {
        if self.0.total == 0 {
            1.0
        } else {
            self.0.requeued as f64 / self.0.total as f64
        }
    }

    /// Why the job failed; the dead letters not re-queued stay in the queue.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// The filter: this endpoint's dead letters (or all of them)...
    async fn endpoint(&self) -> Option<Endpoint> {
        self.0.endpoint_id.clone().map(|id| Endpoint { id: ID(id) })
    }

    /// ...created from this time...
    async fn since(&self) -> Option<DateTime<Utc>> {
        self.0.since
    }

    /// ...until this one.
    async fn until(&self) -> Option<DateTime<Utc>> {
        self.0.until
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}
