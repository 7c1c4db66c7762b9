//! Queries and mutations, with the access rules and error codes every operation shares.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use junction_queue::replay;
use junction_schema::entities::{delivery, replay_job};
use junction_schema::error_code::ErrorCode;
use junction_subgraph_kit::{database_error, error, page_limit};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::access::{Access, WRITE, access, allowed, api};
use super::objects::{
    AttemptConnection, AttemptFilter, DeadLetter, DeliveryStats, Endpoint, Message, ReplayJob,
    StatsWindow, attempts_page,
};

pub struct Query;

#[Object]
impl Query {
    /// The caller's delivery attempts, newest first.
    async fn delivery_attempts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AttemptFilter>,
    ) -> Result<AttemptConnection> {
        attempts_page(ctx, first, after, filter.unwrap_or_default()).await
    }

    /// How all of the caller's deliveries went over a window.
    async fn delivery_stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "StatsWindow::Day")] window: StatsWindow,
    ) -> Result<DeliveryStats> {
        DeliveryStats::load(ctx, None, window).await
    }

    /// The dead-letter queue, most recent first.
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Option<ID>,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<DeadLetter>> {
        let access = access(ctx)?;
        let limit = page_limit(Some(first))? - 1;
        let mut query = delivery::Entity::find()
            .filter(delivery::Column::TenantId.eq(access.tenant()))
            .filter(delivery::is_dead());
        if let Some(endpoint) = &endpoint_id {
            query = query.filter(delivery::Column::EndpointId.eq(endpoint.as_str()));
        }
        let rows = api(query
            .order_by_desc(delivery::Column::DeadAt)
            .limit(limit)
            .all(&access.state.db)
            .await)?;
        Ok(rows.into_iter().map(DeadLetter).collect())
    }

    /// A bulk replay, with its progress.
    async fn replay_job(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ReplayJob>> {
        let access = access(ctx)?;
        let job = api(replay_job::Entity::find_by_id(id.0)
            .filter(replay_job::Column::TenantId.eq(access.tenant()))
            .one(&access.state.db)
            .await)?;
        Ok(job.map(ReplayJob))
    }

    /// The caller's bulk replays, newest first.
    async fn replay_jobs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> Result<Vec<ReplayJob>> {
        let access = access(ctx)?;
        let limit = page_limit(Some(first))? - 1;
        let jobs = api(replay_job::Entity::find()
            .filter(replay_job::Column::TenantId.eq(access.tenant()))
            .order_by_desc(replay_job::Column::Id)
            .limit(limit)
            .all(&access.state.db)
            .await)?;
        Ok(jobs.into_iter().map(ReplayJob).collect())
    }

    #[graphql(entity)]
    async fn find_endpoint_by_id(&self, id: ID) -> Endpoint {
        Endpoint { id }
    }

    #[graphql(entity)]
    async fn find_message_by_id(&self, id: ID) -> Message {
        Message { id }
    }
}

#[derive(InputObject)]
pub struct ReplayMessageInput {
    pub message_id: ID,
}

#[derive(InputObject)]
pub struct ReplayEndpointInput {
    pub endpoint_id: ID,
    /// Dead letters created from this time...
    pub since: DateTime<Utc>,
    /// ...until this one [default: now].
    pub until: Option<DateTime<Utc>>,
}

#[derive(InputObject, Default)]
pub struct DeadLetterFilter {
    pub endpoint_id: Option<ID>,
    /// Dead letters of deliveries created from this time...
    pub since: Option<DateTime<Utc>>,
    /// ...until this one.
    pub until: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct ReplayDeadLettersInput {
    #[graphql(default)]
    pub filter: DeadLetterFilter,
}

#[derive(SimpleObject)]
pub struct ReplayPayload {
    /// Deliveries put back on the queue, each under its original `webhook-id`.
    pub requeued: i32,
}

#[derive(SimpleObject)]
pub struct ReplayJobPayload {
    /// The replay, started: query `replayJob(id)` for its progress.
    pub job: ReplayJob,
}

/// Records a bulk replay and runs it in the background; the job shows its progress.
async fn start_replay_job(
    access: &Access<'_>,
    filter: replay::DeadLetterFilter,
) -> Result<ReplayJobPayload> {
    let state = access.state;
    let job = match replay::start_replay(&state.db, access.tenant(), &filter).await {
        Ok(job) => job,
        Err(e) => return Err(replay_error(&e)),
    };
    let (db, running) = (state.db.clone(), job.clone());
    tokio::spawn(async move {
        let id = running.id.clone();
        match replay::run_replay(&db, running, replay::REPLAY_BATCH).await {
            Ok(done) => tracing::info!(job = %id, requeued = done.requeued, "replay finished"),
            Err(e) => tracing::error!(job = %id, error = %e, "replay failed"),
        }
    });
    Ok(ReplayJobPayload {
        job: ReplayJob(job),
    })
}

pub struct Mutation;

fn replayed(result: Result<usize, replay::ReplayError>) -> Result<ReplayPayload> {
    match result {
        Ok(n) => Ok(ReplayPayload {
            requeued: i32::try_from(n).unwrap_or(i32::MAX),
        }),
        Err(e) => Err(replay_error(&e)),
    }
}

/// A replay that could not be recorded or queued: `UNAVAILABLE` when the database cannot be
/// reached (nothing was queued; the same replay may be asked again), else `INTERNAL`.
fn replay_error(failure: &replay::ReplayError) -> async_graphql::Error {
    match failure {
        replay::ReplayError::Database(db)
        | replay::ReplayError::Queue(junction_queue::QueueError::Database(db)) => {
            database_error(crate::SUBGRAPH_NAME, db)
        }
        replay::ReplayError::Queue(other) => {
            tracing::error!(error = %other, "replay failed");
            error(ErrorCode::Internal, "internal error")
        }
    }
}

#[Object]
impl Mutation {
    /// Sends a message again to every endpoint it was delivered or dead-lettered to.
    async fn replay_message(
        &self,
        ctx: &Context<'_>,
        input: ReplayMessageInput,
    ) -> Result<ReplayPayload> {
        let access = allowed(ctx, WRITE)?;
        let state = access.state;
        replayed(replay::replay_message(&state.db, access.tenant(), &input.message_id).await)
    }

    /// Replays every dead letter matching the filter, as a background job.
    async fn replay_dead_letters(
        &self,
        ctx: &Context<'_>,
        input: ReplayDeadLettersInput,
    ) -> Result<ReplayJobPayload> {
        let access = allowed(ctx, WRITE)?;
        let filter = input.filter;
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && until <= since
        {
            return Err(error(
                ErrorCode::BadUserInput,
                "`until` must be after `since`",
            ));
        }
        start_replay_job(
            &access,
            replay::DeadLetterFilter {
                endpoint_id: filter.endpoint_id.map(|id| id.0),
                since: filter.since,
                until: filter.until,
            },
        )
        .await
    }

    /// Replays an endpoint's dead letters over a time range, as a background job.
    async fn replay_endpoint(
        &self,
        ctx: &Context<'_>,
        input: ReplayEndpointInput,
    ) -> Result<ReplayJobPayload> {
        let access = allowed(ctx, WRITE)?;
        let until = input.until.unwrap_or_else(Utc::now);
        if until <= input.since {
            return Err(error(
                ErrorCode::BadUserInput,
                "`until` must be after `since`",
            ));
        }
        start_replay_job(
            &access,
            replay::DeadLetterFilter {
                endpoint_id: Some(input.endpoint_id.0),
                since: Some(input.since),
                until: Some(until),
            },
        )
        .await
    }
}
