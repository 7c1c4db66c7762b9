//! The delivery loop: take tasks, deliver them with bounded concurrency, record every attempt,
//! then settle the task. One slow or failing endpoint cannot hold up the others: each has its
//! own concurrency cap, rate limit and back-off pause. A queue that applies the concurrency
//! cap as it hands out tasks (the embedded one) is trusted with it; otherwise, and for rate
//! limits and pauses, a task that would exceed them goes back to the queue for a moment
//! instead of occupying a worker slot.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use junction_schema::entities::{delivery_attempt, endpoint, endpoint_secret, message};
use junction_schema::envelope::{AttemptOutcome, DeliveryEvent, Envelope};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;

use crate::config::{DispatcherConfig, InvalidDispatcherConfig};
use crate::recorder::{Attempt, Recorder, Settlement};
use crate::retry;
use crate::sender::{AttemptResult, ClientError, Sender};
use junction_queue::background::AbortOnDrop;
use junction_queue::statement_shapes::{begin_key_lookups, padded};
use junction_queue::{Queue, Received};
use junction_schema::webhook_signature::{Scheme, SigningSecret, signature_header};
use junction_schema::webhook_url::AddressPolicy;

/// How long a task waits when its endpoint is at its concurrency cap.
const BUSY_ENDPOINT_DEFERRAL: Duration = Duration::from_millis(200);
const EVENT_BUFFER: usize = 4096;
const FORWARD_BUFFER: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error(transparent)]
    Config(#[from] InvalidDispatcherConfig),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The delivery worker. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    recorder: Recorder,
    queue: Arc<dyn Queue>,
    sender: Sender,
    config: DispatcherConfig,
    events: broadcast::Sender<DeliveryEvent>,
    gates: Mutex<HashMap<String, Gate>>,
    /// Channels that must see every event (the Kafka events publisher): sent to with
    /// back-pressure, never skipping, unlike the broadcast for live subscribers.
    forwards: Mutex<Vec<mpsc::Sender<DeliveryEvent>>>,
    /// Signalled when an attempt ends: its endpoint has room again, so a loop that found
    /// nothing it could start looks again at once instead of after `poll_interval`.
    finished: Notify,
}

/// Per-endpoint traffic state, local to this process.
#[derive(Default)]
struct Gate {
    in_flight: usize,
    /// Set after 429/502/503/504: nothing goes to the endpoint before this.
    paused_until: Option<Instant>,
    /// Rate limit: the earliest time the next request may start.
    next_slot: Option<Instant>,
}

/// How often a dispatcher looks for abandoned replay jobs.
const REPLAY_TAKEOVER_INTERVAL: Duration = Duration::from_secs(30);

/// Releases an endpoint's concurrency slot when the attempt ends, however it ends.
struct Admitted {
    inner: Arc<Inner>,
    endpoint_id: String,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut gates) = self.inner.gates.lock()
            && let Some(gate) = gates.get_mut(&self.endpoint_id)
        {
            gate.in_flight = gate.in_flight.saturating_sub(1);
        }
    }
}

impl Dispatcher {
    pub fn new(
        db: DatabaseConnection,
        queue: Arc<dyn Queue>,
        config: DispatcherConfig,
    ) -> Result<Self, DispatcherError> {
        config.validate()?;
        let policy = AddressPolicy::new(config.allowed_networks.clone());
        let sender = Sender::new(&config, policy)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Self {
            inner: Arc::new(Inner {
                recorder: Recorder::start(db.clone()),
                db,
                queue,
                sender,
                config,
                events,
                gates: Mutex::new(HashMap::new()),
                forwards: Mutex::new(Vec::new()),
                finished: Notify::new(),
            }),
        })
    }

    /// Every recorded attempt, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<DeliveryEvent> {
        self.inner.events.subscribe()
    }

    /// Every recorded attempt from now on, none skipped: a consumer that falls behind holds
    /// up the attempts finishing (up to `FORWARD_BUFFER` events ahead of it), where a
    /// [`Dispatcher::subscribe`]r would miss events instead.
    pub fn forward(&self) -> mpsc::Receiver<DeliveryEvent> {
        let (tx, rx) = mpsc::channel(FORWARD_BUFFER);
        self.inner
            .forwards
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tx);
        rx
    }

    /// The event channel itself, for consumers that subscribe later (live GraphQL subscriptions).
    pub fn events(&self) -> broadcast::Sender<DeliveryEvent> {
        self.inner.events.clone()
    }

    /// Delivers until `shutdown` resolves, then lets attempts in flight finish (within the
    /// lease; anything cut off is retried by whoever takes the task next).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let config = &self.inner.config;
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let mut in_flight = JoinSet::new();
        tokio::pin!(shutdown);
        // Bulk replays whose process died are finished here; stopped with the worker.
        let _takeover = AbortOnDrop(tokio::spawn(junction_queue::replay::take_over_abandoned(
            self.inner.db.clone(),
            REPLAY_TAKEOVER_INTERVAL,
        )));
        tracing::info!(concurrency = config.concurrency, "dispatcher started");
        loop {
            while in_flight.try_join_next().is_some() {}
            // Wait for room before taking tasks, so taken tasks never wait on a permit.
            let first = tokio::select! {
                () = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore is never closed"),
            };
            let room = 1 + permits.available_permits().min(config.batch_size - 1);
            let batch = tokio::select! {
                () = &mut shutdown => break,
                batch = self.inner.queue.receive(room) => batch,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "cannot take tasks from the queue; retrying");
                    drop(first);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(config.poll_interval) => continue,
                    }
                }
            };
            if batch.is_empty() {
                drop(first);
                // With attempts in flight, the queue may have held tasks back for their
                // endpoints' limits: one ending makes room.
                let busy = !in_flight.is_empty();
                tokio::select! {
                    () = &mut shutdown => break,
                    () = self.inner.finished.notified(), if busy => continue,
                    // Published in this process: due now.
                    () = junction_queue::outbox::published_here() => continue,
                    () = tokio::time::sleep(config.poll_interval) => continue,
                }
            }
            let contexts = match self.inner.load_batch(&batch).await {
                Ok(contexts) => contexts,
                Err(error) => {
                    // Their leases run out and the tasks come back.
                    tracing::warn!(%error, "cannot load a batch of deliveries");
                    continue;
                }
            };
            let mut first = Some(first);
            for received in batch {
                // Shared, not taken: a backend may hand out a delivery twice in one batch.
                let context = contexts.get(&received.task.delivery_id).cloned();
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => Arc::clone(&permits)
                        .acquire_owned()
                        .await
                        .expect("semaphore is never closed"),
                };
                let inner = Arc::clone(&self.inner);
                in_flight.spawn(async move {
                    Arc::clone(&inner).handle(received, context).await;
                    drop(permit);
                    inner.finished.notify_one();
                });
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            "dispatcher stopping; finishing attempts in flight"
        );
        let drain = async { while in_flight.join_next().await.is_some() {} };
        if tokio::time::timeout(config.lease, drain).await.is_err() {
            tracing::warn!(
                "attempts still running at the end of the lease were cut; they will be retried"
            );
        }
        self.inner.queue.close().await;
    }
}

/// What one delivery needs from the database.
#[derive(Clone)]
struct Context {
    endpoint: Arc<endpoint::Model>,
    message: Arc<message::Model>,
    secrets: Arc<Vec<SigningSecret>>,
}

impl Inner {
    async fn handle(self: Arc<Self>, received: Received, context: Option<Context>) {
        let task = &received.task;
        let Some(context) = context else {
            self.settle_dead(&received, "the message or endpoint no longer exists")
                .await;
            return;
        };
        if !context.endpoint.enabled {
            let reason = format!(
                "endpoint disabled: {}",
                context
                    .endpoint
                    .disabled_reason
                    .as_deref()
                    .unwrap_or("by its owner")
            );
            self.settle_dead(&received, &reason).await;
            return;
        }
        let _admitted = match self.admit(&context.endpoint) {
            Ok(admitted) => admitted,
            Err(wait) => {
                let at = Utc::now() + chrono_duration(wait);
                if let Err(error) = self.queue.retry_at(&received, at).await {
                    tracing::warn!(delivery = %task.delivery_id, %error, "cannot defer delivery");
                }
                return;
            }
        };
        let attempt = task.attempts + 1;
        let (headers, body) = match self.request(&received, &context) {
            Ok(request) => request,
            Err(reason) => {
                self.settle_dead(&received, &reason).await;
                return;
            }
        };
        let result = self.sender.send(&context.endpoint.url, headers, body).await;
        self.conclude(received, &context, attempt, result).await;
    }

    /// Everything a batch needs, in three queries whatever its size. Deliveries whose
    /// message or endpoint is gone (or belongs to another tenant) have no context.
    async fn load_batch(&self, batch: &[Received]) -> Result<HashMap<String, Context>, DbErr> {
        let mut endpoint_ids: Vec<&str> =
            batch.iter().map(|r| r.task.endpoint_id.as_str()).collect();
        endpoint_ids.sort_unstable();
        endpoint_ids.dedup();
        let mut message_ids: Vec<&str> = batch.iter().map(|r| r.task.message_id.as_str()).collect();
        message_ids.sort_unstable();
        message_ids.dedup();
        // Found by key: a batch's messages are a few among many.
        let txn = begin_key_lookups(&self.db).await?;
        let endpoints: HashMap<String, Arc<endpoint::Model>> = endpoint::Entity::find()
            .filter(endpoint::Column::Id.is_in(padded(endpoint_ids.iter().copied())))
            .all(&txn)
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect();
        let messages: HashMap<String, Arc<message::Model>> = message::Entity::find()
            .filter(message::Column::Id.is_in(padded(message_ids)))
            .all(&txn)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), Arc::new(m)))
            .collect();
        let now = Utc::now();
        let secret_rows = endpoint_secret::Entity::find()
            .filter(endpoint_secret::Column::EndpointId.is_in(padded(endpoint_ids)))
            .filter(
                Condition::any()
                    .add(endpoint_secret::Column::ExpiresAt.is_null())
                    .add(endpoint_secret::Column::ExpiresAt.gt(now)),
            )
            .order_by_desc(endpoint_secret::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        let mut secrets: HashMap<String, Vec<SigningSecret>> = HashMap::new();
        for row in &secret_rows {
            let Some(endpoint) = endpoints.get(&row.endpoint_id) else {
                continue;
            };
            let scheme = Scheme::parse(&endpoint.signing_algorithm).unwrap_or(Scheme::HmacSha256);
            match SigningSecret::parse(scheme, &row.secret) {
                Ok(secret) => secrets
                    .entry(row.endpoint_id.clone())
                    .or_default()
                    .push(secret),
                Err(error) => {
                    tracing::error!(endpoint = %row.endpoint_id, secret = %row.id, %error, "unusable signing secret");
                }
            }
        }
        let secrets: HashMap<String, Arc<Vec<SigningSecret>>> = secrets
            .into_iter()
            .map(|(id, list)| (id, Arc::new(list)))
            .collect();
        let mut contexts = HashMap::new();
        for received in batch {
            let task = &received.task;
            let (Some(endpoint), Some(message)) = (
                endpoints.get(&task.endpoint_id),
                messages.get(&task.message_id),
            ) else {
                continue;
            };
            if endpoint.tenant_id != task.tenant_id || message.tenant_id != task.tenant_id {
                continue;
            }
            contexts.insert(
                task.delivery_id.clone(),
                Context {
                    endpoint: Arc::clone(endpoint),
                    message: Arc::clone(message),
                    secrets: secrets.get(&task.endpoint_id).cloned().unwrap_or_default(),
                },
            );
        }
        Ok(contexts)
    }

    /// Admits one attempt to the endpoint, or says how long to wait.
    fn admit(self: &Arc<Self>, endpoint: &endpoint::Model) -> Result<Admitted, Duration> {
        let now = Instant::now();
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let gate = gates.entry(endpoint.id.clone()).or_default();
        if let Some(until) = gate.paused_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        if gate.in_flight >= self.config.per_endpoint_concurrency && !self.queue.limits_endpoints()
        {
            return Err(BUSY_ENDPOINT_DEFERRAL);
        }
        if let Some(rate) = endpoint.rate_limit_per_second.filter(|rate| *rate > 0) {
            let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
            let slot = gate.next_slot.unwrap_or(now).max(now);
            if slot > now {
                return Err(slot - now);
            }
            gate.next_slot = Some(slot + interval);
        }
        gate.in_flight += 1;
        Ok(Admitted {
            inner: Arc::clone(self),
            endpoint_id: endpoint.id.clone(),
        })
    }

    fn pause(&self, endpoint_id: &str, wait: Duration) {
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let gate = gates.entry(endpoint_id.to_owned()).or_default();
        let until = Instant::now() + wait;
        gate.paused_until = Some(
            gate.paused_until
                .map_or(until, |current| current.max(until)),
        );
    }

    /// The signed request: Standard Webhooks headers, the endpoint's own headers, the body.
    fn request(
        &self,
        received: &Received,
        context: &Context,
    ) -> Result<(HeaderMap, Vec<u8>), String> {
        let body = Envelope::encode(
            &context.message.event_type,
            context.message.created_at,
            &context.message.payload,
            &context.message.id,
            &received.task.delivery_id,
        )
        .map_err(|e| format!("cannot encode envelope: {e}"))?;
        let timestamp = Utc::now().timestamp();
        let mut headers = HeaderMap::new();
        if let Some(custom) = context.endpoint.headers.as_object() {
            for (name, value) in custom {
                let (Ok(name), Some(Ok(value))) = (
                    HeaderName::try_from(name.as_str()),
                    value.as_str().map(HeaderValue::from_str),
                ) else {
                    continue;
                };
                headers.insert(name, value);
            }
        }
        let header =
            |text: &str| HeaderValue::from_str(text).map_err(|e| format!("invalid header: {e}"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("webhook-id", header(&received.task.delivery_id)?);
        headers.insert("webhook-timestamp", header(&timestamp.to_string())?);
        if context.secrets.is_empty() {
            return Err("the endpoint has no valid signing secret".to_owned());
        }
        headers.insert(
            "webhook-signature",
            header(&signature_header(
                &context.secrets,
                &received.task.delivery_id,
                timestamp,
                &body,
            ))?,
        );
        if let Some(traceparent) = &context.message.traceparent
            && let Ok(value) = HeaderValue::from_str(traceparent)
        {
            headers.insert("traceparent", value);
        }
        Ok((headers, body))
    }

    /// Records the attempt, then settles the task: the order that makes delivery
    /// at-least-once.
    async fn conclude(
        &self,
        mut received: Received,
        context: &Context,
        attempt: i32,
        result: AttemptResult,
    ) {
        let task = &received.task;
        let endpoint = &context.endpoint;
        let status = result.status.map(|s| s.as_u16());
        let gone = result.status == Some(StatusCode::GONE);
        let succeeded = result.succeeded();
        let outcome = if succeeded {
            Decision::Ack
        } else if gone {
            Decision::Dead("the endpoint answered 410 Gone and was disabled".to_owned())
        } else {
            let schedule =
                endpoint_schedule(endpoint).unwrap_or_else(|| self.config.retry_schedule.clone());
            match retry::next_delay(&schedule, attempt, self.config.retry_jitter) {
                Some(delay) => {
                    let delay = delay.max(result.retry_after.unwrap_or_default());
                    if matches!(status, Some(429 | 502 | 503 | 504)) {
                        self.pause(&endpoint.id, result.retry_after.unwrap_or(delay));
                    }
                    Decision::Retry(Utc::now() + chrono_duration(delay))
                }
                None => Decision::Dead(format!("retries exhausted after {attempt} attempts")),
            }
        };

        let record = delivery_attempt::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: task.tenant_id.clone(),
            delivery_id: task.delivery_id.clone(),
            message_id: task.message_id.clone(),
            endpoint_id: task.endpoint_id.clone(),
            attempt,
            status_code: status.map(i32::from),
            duration_ms: i64::try_from(result.duration.as_millis()).unwrap_or(i64::MAX),
            response_excerpt: result.excerpt.clone(),
            error_kind: result
                .error
                .as_ref()
                .map(|(kind, _)| kind.as_str().to_owned()),
            trace_id: context.message.traceparent.as_deref().and_then(trace_id),
            created_at: Utc::now(),
        };
        // Bookkeeping only, and rarely a write: a failure streak starting or ending. Before
        // the record, so whoever sees the delivery's new state sees the endpoint's too.
        if let Err(error) = self
            .track_endpoint_health(&self.db, endpoint, succeeded, gone)
            .await
        {
            tracing::warn!(endpoint = %endpoint.id, %error, "cannot update endpoint health");
        }
        // The attempt and the delivery's new state, committed with the other attempts
        // finishing now.
        let recorded = self
            .recorder
            .record(Attempt {
                record: record.clone(),
                last_error: result.error.as_ref().map(|(_, message)| message.clone()),
                settlement: match &outcome {
                    Decision::Ack => Settlement::Succeeded,
                    Decision::Retry(at) => Settlement::RetryAt(*at),
                    Decision::Dead(reason) => Settlement::Dead(reason.clone()),
                },
            })
            .await;
        if let Err(error) = recorded {
            // Unrecorded means unsettled: the lease runs out and the delivery repeats.
            tracing::error!(delivery = %task.delivery_id, %error, "cannot record attempt; it will be repeated");
            return;
        }
        let (event_outcome, next_attempt_at) = match &outcome {
            Decision::Ack => (AttemptOutcome::Succeeded, None),
            Decision::Retry(at) => (AttemptOutcome::Retrying, Some(*at)),
            Decision::Dead(_) => (AttemptOutcome::DeadLettered, None),
        };
        tracing::debug!(delivery = %task.delivery_id, attempt, ?status, outcome = ?event_outcome, "attempt recorded");
        // What an operator looks for first, on by default; `[log] level = "info,delivery=off"`
        // turns these lines off.
        match &outcome {
            Decision::Ack => {}
            Decision::Retry(at) => tracing::info!(
                target: "delivery",
                delivery = %task.delivery_id,
                endpoint = %task.endpoint_id,
                tenant = %task.tenant_id,
                attempt,
                status = ?record.status_code,
                error = ?record.error_kind,
                next_attempt_at = %at,
                "delivery attempt failed; retrying"
            ),
            Decision::Dead(reason) => tracing::warn!(
                target: "delivery",
                delivery = %task.delivery_id,
                endpoint = %task.endpoint_id,
                tenant = %task.tenant_id,
                attempt,
                status = ?record.status_code,
                error = ?record.error_kind,
                %reason,
                "delivery dead-lettered"
            ),
        }
        crate::metrics::global().attempt(&task.endpoint_id, event_outcome, status, result.duration);
        // Recorded is what the event says: it goes out before the queue is settled.
        let event = DeliveryEvent {
            attempt_id: record.id,
            delivery_id: task.delivery_id.clone(),
            tenant_id: task.tenant_id.clone(),
            message_id: task.message_id.clone(),
            endpoint_id: task.endpoint_id.clone(),
            attempt,
            outcome: event_outcome,
            status_code: record.status_code,
            error_kind: record.error_kind,
            duration_ms: record.duration_ms,
            response_excerpt: record.response_excerpt,
            trace_id: record.trace_id,
            next_attempt_at,
            at: record.created_at,
        };
        let forwards: Vec<mpsc::Sender<DeliveryEvent>> = self
            .forwards
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for forward in forwards {
            // Closed only when its consumer stopped, with the process.
            let _ = forward.send(event.clone()).await;
        }
        let _ = self.events.send(event);

        received.state_recorded = true;
        let settled = match &outcome {
            Decision::Ack => self.queue.ack(&received).await,
            Decision::Retry(at) => self.queue.retry_at(&received, *at).await,
            Decision::Dead(reason) => self.queue.dead_letter(&received, reason).await,
        };
        if let Err(error) = settled {
            tracing::warn!(delivery = %received.task.delivery_id, %error, "cannot settle task; it will be repeated");
        }
    }

    /// A success ends a failure streak; a long streak, or a 410, disables the endpoint.
    async fn track_endpoint_health(
        &self,
        db: &impl ConnectionTrait,
        endpoint: &endpoint::Model,
        succeeded: bool,
        gone: bool,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let mut update = endpoint.clone().into_active_model();
        if succeeded {
            if endpoint.failing_since.is_none() {
                return Ok(());
            }
            update.failing_since = Set(None);
        } else if gone {
            update.enabled = Set(false);
            update.disabled_reason = Set(Some("the endpoint answered 410 Gone".to_owned()));
        } else {
            match endpoint.failing_since {
                None => update.failing_since = Set(Some(now)),
                Some(since)
                    if now - since
                        >= chrono_duration(self.config.disable_failing_endpoint_after) =>
                {
                    update.enabled = Set(false);
                    update.disabled_reason = Set(Some(format!(
                        "failing without a success since {}",
                        since.to_rfc3339()
                    )));
                    tracing::warn!(endpoint = %endpoint.id, "disabling an endpoint that keeps failing");
                }
                Some(_) => return Ok(()),
            }
        }
        update.updated_at = Set(now);
        update.update(db).await?;
        Ok(())
    }

    async fn settle_dead(&self, received: &Received, reason: &str) {
        crate::metrics::global().dead_lettered_unsent();
        if let Err(error) = self.queue.dead_letter(received, reason).await {
            tracing::warn!(delivery = %received.task.delivery_id, %error, "cannot dead-letter task");
        }
    }
}

enum Decision {
    Ack,
    Retry(DateTime<Utc>),
    Dead(String),
}

/// The endpoint's own schedule, as a JSON array of seconds.
fn endpoint_schedule(endpoint: &endpoint::Model) -> Option<Vec<Duration>> {
    let values = endpoint.retry_schedule.as_ref()?.as_array()?;
    values
        .iter()
        .map(|v| {
            v.as_f64()
                .filter(|s| *s >= 0.0)
                .map(Duration::from_secs_f64)
        })
        .collect()
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> Option<String> {
    traceparent
        .split('-')
        .nth(1)
        .filter(|id| id.len() == 32)
        .map(str::to_owned)
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use junction_schema::database::{DatabaseConfig, DatabaseUrl};
    use junction_schema::entities::delivery;
    use sea_orm::{DbBackend, PaginatorTrait, Statement};

    use super::*;
    use crate::test_database::published_on_postgres_at;
    use junction_queue::{EmbeddedQueue, Task};

    /// Sequential scans of messages so far. The count of this connection's own statements is
    /// flushed first, so it is exact when `db` has one connection.
    async fn message_scans(db: &DatabaseConnection) -> i64 {
        db.execute_unprepared("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
        db.query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'messages'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
    }

    /// Rows of `table` inserted, updated and deleted so far, as PostgreSQL counts them. The
    /// counts of this connection's own statements are flushed first, so they are exact when
    /// `db` has one connection.
    async fn writes(db: &DatabaseConnection, table: &str) -> (i64, i64, i64) {
        db.execute_unprepared("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables \
                     WHERE relname = '{table}'"
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        (
            row.try_get_by_index(0).unwrap(),
            row.try_get_by_index(1).unwrap(),
            row.try_get_by_index(2).unwrap(),
        )
    }

    /// A delivery is written twice in its life on the embedded queue: leased, then settled
    /// with its attempt, and never handed back, even when the batch taken could hold far
    /// more of an endpoint's tasks than its concurrency lets start. Counted by PostgreSQL
    /// (`pg_stat_user_tables`) over a dispatcher on one connection, delivering 400 deliveries
    /// to two endpoints of a real receiver with 2 attempts in flight per endpoint.
    #[tokio::test]
    async fn a_delivery_is_written_twice_leased_and_settled() {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/{endpoint}", post(|| async { "" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let urls = [format!("http://{address}/a"), format!("http://{address}/b")];
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let (publisher, url) = published_on_postgres_at(&urls, 200).await;
        // The publisher's connections end, and with them their statistics are flushed.
        publisher.close().await.unwrap();
        let one = junction_schema::database::connect(&DatabaseConfig {
            url: DatabaseUrl::parse(&url).unwrap(),
            max_connections: 1,
            ..DatabaseConfig::default()
        })
        .await
        .unwrap();
        let config = DispatcherConfig {
            per_endpoint_concurrency: 2,
            batch_size: 64,
            poll_interval: Duration::from_millis(10),
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..DispatcherConfig::default()
        };
        let queue = Arc::new(
            EmbeddedQueue::new(one.clone(), config.lease)
                .with_per_endpoint_limit(config.per_endpoint_concurrency),
        );
        // Another backend's counts arrive when it flushes them: waited for, at most 15 s.
        let mut counted = writes(&one, "deliveries").await;
        for _ in 0..150 {
            if counted.0 >= 400 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            counted = writes(&one, "deliveries").await;
        }
        let (inserted, updated_before, _) = counted;
        assert_eq!(inserted, 400);
        let dispatcher = Dispatcher::new(one.clone(), queue, config).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let dispatcher = dispatcher.clone();
            async move {
                dispatcher
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        loop {
            let pending = delivery::Entity::find()
                .filter(delivery::Column::Status.ne(delivery::SUCCEEDED))
                .count(&one)
                .await
                .unwrap();
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        running.await.unwrap();
        let (_, updated, deleted) = writes(&one, "deliveries").await;
        assert_eq!(deleted, 0);
        assert_eq!(
            updated - updated_before,
            800,
            "two updates per delivery: leased, settled"
        );
    }

    /// A batch's messages are found by key. On a table whose statistics lag its growth (here,
    /// never analyzed) the planner would otherwise read all of it for every batch: in the
    /// Kafka benchmark, 8 ms a batch at 4,000 messages.
    #[tokio::test]
    async fn a_batch_finds_its_messages_by_key_on_postgres() {
        let urls: Vec<String> = (0..8).map(|n| format!("http://127.0.0.1:9/{n}")).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let (db, url) = published_on_postgres_at(&urls, 250).await;
        // One connection, so the scan count read after the batch includes the batch's.
        let one = junction_schema::database::connect(&DatabaseConfig {
            url: DatabaseUrl::parse(&url).unwrap(),
            max_connections: 1,
            ..DatabaseConfig::default()
        })
        .await
        .unwrap();
        let queue = Arc::new(EmbeddedQueue::new(one.clone(), Duration::from_secs(30)));
        let dispatcher = Dispatcher::new(one.clone(), queue, DispatcherConfig::default()).unwrap();
        let batch: Vec<Received> = delivery::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .take(256)
            .map(|row| Received::new(Task::from(row), String::new()))
            .collect();

        let before = message_scans(&one).await;
        let contexts = dispatcher.inner.load_batch(&batch).await.unwrap();
        assert_eq!(contexts.len(), 256);
        assert_eq!(message_scans(&one).await, before, "messages were scanned");
    }
}
