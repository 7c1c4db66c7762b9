//! Mutations: each takes one `input` object and returns a payload holding what changed.

use std::collections::BTreeMap;
use std::time::Duration;

use async_graphql::{
    Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, Result, SimpleObject,
};
use junction_schema::error_code::ErrorCode;

use super::access::{ApiResult, error, writer};
use super::api_keys::{self, CreateApiKeyInput, CreateApiKeyPayload, RevokeApiKeyPayload};
use super::objects::{Endpoint, EventType, Message, SigningAlgorithm};
use super::tenants;
use crate::endpoints::{self, EndpointPatch, NewEndpoint};
use crate::event_types::{self, EventTypePatch, NewEventType};
use crate::publish::{self, Outcome, PublishEvent};

/// The W3C trace context of the HTTP request, when it had one.
#[derive(Clone, Debug)]
pub struct Traceparent(pub String);

const MAX_RETRY_STEPS: usize = 50;
const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct Mutation;

#[derive(InputObject)]
pub struct HeaderInput {
    pub name: String,
    pub value: String,
}

#[derive(InputObject)]
pub struct CreateEndpointInput {
    pub url: String,
    #[graphql(default)]
    pub description: String,
    /// Event types to deliver; empty or absent means all.
    #[graphql(default)]
    pub event_types: Vec<String>,
    /// Channels to deliver; empty or absent means every message.
    #[graphql(default)]
    pub channels: Vec<String>,
    #[graphql(default)]
    pub headers: Vec<HeaderInput>,
    /// Seconds between attempts, overriding the global schedule.
    pub retry_schedule: Option<Vec<f64>>,
    pub rate_limit_per_second: Option<i32>,
    #[graphql(default_with = "SigningAlgorithm::HmacSha256")]
    pub signing_algorithm: SigningAlgorithm,
}

#[derive(InputObject)]
pub struct UpdateEndpointInput {
    pub id: ID,
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub headers: Option<Vec<HeaderInput>>,
    /// Null returns to the global schedule.
    pub retry_schedule: MaybeUndefined<Vec<f64>>,
    /// Null removes the limit.
    pub rate_limit_per_second: MaybeUndefined<i32>,
}

#[derive(InputObject)]
pub struct EndpointIdInput {
    pub id: ID,
}

#[derive(InputObject)]
pub struct DisableEndpointInput {
    pub id: ID,
    pub reason: Option<String>,
}

#[derive(InputObject)]
pub struct RotateEndpointSecretInput {
    pub id: ID,
    /// How long the current secrets keep signing beside the new one [default: configured].
    pub grace_period_seconds: Option<i32>,
}

#[derive(InputObject)]
pub struct CreateEventTypeInput {
    pub name: String,
    #[graphql(default)]
    pub description: String,
    /// A JSON Schema every payload of this type must satisfy.
    pub schema: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct UpdateEventTypeInput {
    pub name: String,
    pub description: Option<String>,
    /// Null removes the schema.
    pub schema: MaybeUndefined<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct DeprecateEventTypeInput {
    pub name: String,
    /// False takes a deprecation back.
    #[graphql(default = true)]
    pub deprecated: bool,
}

#[derive(InputObject)]
pub struct PublishEventInput {
    pub event_type: String,
    pub payload: Json<serde_json::Value>,
    #[graphql(default)]
    pub channels: Vec<String>,
    /// Publishing twice with the same key and payload returns the first message.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct PublishEventsInput {
    /// 1 to 1,000 events, published in one transaction; each is answered on its own.
    pub events: Vec<PublishEventInput>,
}

/// How one event of `publishEvents` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum PublishStatus {
    /// Stored now, with its deliveries queued.
    Accepted,
    /// Its idempotency key was used before for the same event: nothing new was stored, and
    /// `message` is the earlier one.
    Repeated,
    /// Not stored: `error` says why. The other events are not affected.
    Failed,
}

/// Why one event was not published: `code` is one of the API's error codes
/// (`BAD_USER_INPUT`, `CONFLICT`).
#[derive(SimpleObject)]
pub struct PublishError {
    pub code: String,
    pub message: String,
}

/// One event's answer in `publishEvents`.
#[derive(SimpleObject)]
pub struct PublishEventResult {
    /// The event's position in `input.events`, from 0.
    pub index: i32,
    pub idempotency_key: Option<String>,
    pub status: PublishStatus,
    /// The stored message (the earlier one when repeated); null when the event failed.
    pub message: Option<Message>,
    /// Deliveries created for it (0 when repeated or failed).
    pub delivery_count: i32,
    /// Null unless the event failed.
    pub error: Option<PublishError>,
}

#[derive(SimpleObject)]
pub struct PublishEventsPayload {
    /// One per event, in the order sent.
    pub results: Vec<PublishEventResult>,
    pub accepted: i32,
    pub repeated: i32,
    pub failed: i32,
}

#[derive(SimpleObject)]
pub struct EndpointPayload {
    pub endpoint: Endpoint,
}

#[derive(SimpleObject)]
pub struct EndpointWithSecretPayload {
    pub endpoint: Endpoint,
    /// Shown only now: the `whsec_` secret (HMAC), or the `whpk_` public key (ed25519) that
    /// receivers verify with.
    pub secret: String,
}

#[derive(SimpleObject)]
pub struct DeleteEndpointPayload {
    pub deleted_id: ID,
}

#[derive(SimpleObject)]
pub struct EventTypePayload {
    pub event_type: EventType,
}

#[derive(SimpleObject)]
pub struct PublishEventPayload {
    pub message: Message,
    /// Deliveries created: one per matching enabled endpoint (0 for a repeated publish).
    pub delivery_count: i32,
    /// True when the idempotency key matched an earlier publish.
    pub repeated: bool,
}

fn bad_input(message: impl Into<String>) -> async_graphql::Error {
    error(ErrorCode::BadUserInput, message)
}

fn schedule(seconds: Vec<f64>) -> Result<Vec<Duration>> {
    if seconds.len() > MAX_RETRY_STEPS {
        return Err(bad_input(format!(
            "retrySchedule has at most {MAX_RETRY_STEPS} steps"
        )));
    }
    seconds
        .into_iter()
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| bad_input("retrySchedule holds non-negative numbers of seconds"))
        })
        .collect()
}

fn rate(rate: i32) -> Result<u32> {
    u32::try_from(rate).map_err(|_| bad_input("rateLimitPerSecond must be at least 1"))
}

fn headers(list: Vec<HeaderInput>) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for header in list {
        if map
            .insert(header.name.to_ascii_lowercase(), header.value)
            .is_some()
        {
            return Err(bad_input(format!(
                "header {:?} is given twice",
                header.name
            )));
        }
    }
    Ok(map)
}

#[Object]
impl Mutation {
    /// Creates an API key for the caller's tenant (`admin` only); the secret is in this
    /// answer and nowhere else, ever.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> Result<CreateApiKeyPayload> {
        api_keys::create(ctx, input).await
    }

    /// Revokes an API key of the caller's tenant (`admin` only); revoking twice keeps the
    /// first time. Routers stop accepting it within their `api_key_cache_ttl`.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<RevokeApiKeyPayload> {
        api_keys::revoke(ctx, id).await
    }

    /// Creates a tenant (`platform:admin` only).
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        input: tenants::CreateTenantInput,
    ) -> Result<tenants::TenantPayload> {
        tenants::create(ctx, input).await
    }

    /// Renames a tenant; its id stays (`platform:admin` only).
    async fn update_tenant(
        &self,
        ctx: &Context<'_>,
        input: tenants::UpdateTenantInput,
    ) -> Result<tenants::TenantPayload> {
        tenants::update(ctx, input).await
    }

    /// Deletes a tenant and everything of it: keys, endpoints, messages, deliveries
    /// (`platform:admin` only; not the caller's own tenant).
    async fn delete_tenant(
        &self,
        ctx: &Context<'_>,
        input: tenants::DeleteTenantInput,
    ) -> Result<tenants::DeleteTenantPayload> {
        tenants::delete(ctx, input).await
    }

    /// Creates an endpoint and its first signing secret, shown only in this answer.
    async fn create_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateEndpointInput,
    ) -> Result<EndpointWithSecretPayload> {
        let access = writer(ctx)?;
        let new = NewEndpoint {
            url: input.url,
            description: input.description,
            event_types: input.event_types,
            channels: input.channels,
            headers: headers(input.headers)?,
            retry_schedule: input.retry_schedule.map(schedule).transpose()?,
            rate_limit_per_second: input.rate_limit_per_second.map(rate).transpose()?,
            scheme: input.signing_algorithm.into(),
        };
        let created =
            endpoints::create(&access.state.db, &access.state.policy, access.tenant(), new)
                .await
                .api()?;
        Ok(EndpointWithSecretPayload {
            endpoint: Endpoint(created.endpoint),
            secret: created.verification_key,
        })
    }

    async fn update_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateEndpointInput,
    ) -> Result<EndpointPayload> {
        let access = writer(ctx)?;
        let patch = EndpointPatch {
            url: input.url,
            description: input.description,
            event_types: input.event_types,
            channels: input.channels,
            headers: input.headers.map(headers).transpose()?,
            retry_schedule: match input.retry_schedule {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(seconds) => Some(Some(schedule(seconds)?)),
            },
            rate_limit_per_second: match input.rate_limit_per_second {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(value) => Some(Some(rate(value)?)),
            },
        };
        let endpoint = endpoints::update(
            &access.state.db,
            &access.state.policy,
            access.tenant(),
            &input.id,
            patch,
        )
        .await
        .api()?;
        Ok(EndpointPayload {
            endpoint: Endpoint(endpoint),
        })
    }

    /// Deletes an endpoint, its secrets and its delivery history.
    async fn delete_endpoint(
        &self,
        ctx: &Context<'_>,
        input: EndpointIdInput,
    ) -> Result<DeleteEndpointPayload> {
        let access = writer(ctx)?;
        endpoints::delete(&access.state.db, access.tenant(), &input.id)
            .await
            .api()?;
        Ok(DeleteEndpointPayload {
            deleted_id: input.id,
        })
    }

    async fn enable_endpoint(
        &self,
        ctx: &Context<'_>,
        input: EndpointIdInput,
    ) -> Result<EndpointPayload> {
        let access = writer(ctx)?;
        let endpoint =
            endpoints::set_enabled(&access.state.db, access.tenant(), &input.id, true, None)
                .await
                .api()?;
        Ok(EndpointPayload {
            endpoint: Endpoint(endpoint),
        })
    }

    async fn disable_endpoint(
        &self,
        ctx: &Context<'_>,
        input: DisableEndpointInput,
    ) -> Result<EndpointPayload> {
        let access = writer(ctx)?;
        let reason = input
            .reason
            .or_else(|| Some("disabled by its owner".to_owned()));
        let endpoint =
            endpoints::set_enabled(&access.state.db, access.tenant(), &input.id, false, reason)
                .await
                .api()?;
        Ok(EndpointPayload {
            endpoint: Endpoint(endpoint),
        })
    }

    /// Issues a new signing secret; the current ones keep signing for the grace period.
    async fn rotate_endpoint_secret(
        &self,
        ctx: &Context<'_>,
        input: RotateEndpointSecretInput,
    ) -> Result<EndpointWithSecretPayload> {
        let access = writer(ctx)?;
        let grace = match input.grace_period_seconds {
            None => access.state.rotation_grace,
            Some(seconds) => u64::try_from(seconds)
                .map(Duration::from_secs)
                .ok()
                .filter(|grace| *grace <= MAX_GRACE)
                .ok_or_else(|| {
                    bad_input("gracePeriodSeconds must be between 0 and 604800 (7 days)")
                })?,
        };
        let rotated = endpoints::rotate_secret(&access.state.db, access.tenant(), &input.id, grace)
            .await
            .api()?;
        Ok(EndpointWithSecretPayload {
            endpoint: Endpoint(rotated.endpoint),
            secret: rotated.verification_key,
        })
    }

    async fn create_event_type(
        &self,
        ctx: &Context<'_>,
        input: CreateEventTypeInput,
    ) -> Result<EventTypePayload> {
        let access = writer(ctx)?;
        let created = event_types::create(
            &access.state.db,
            access.tenant(),
            NewEventType {
                name: input.name,
                description: input.description,
                schema: input.schema.map(|json| json.0),
            },
        )
        .await
        .api()?;
        Ok(EventTypePayload {
            event_type: EventType(created),
        })
    }

    async fn update_event_type(
        &self,
        ctx: &Context<'_>,
        input: UpdateEventTypeInput,
    ) -> Result<EventTypePayload> {
        let access = writer(ctx)?;
        let patch = EventTypePatch {
            description: input.description,
            schema: match input.schema {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(json) => Some(Some(json.0)),
            },
            deprecated: None,
        };
        let updated = event_types::update(&access.state.db, access.tenant(), &input.name, patch)
            .await
            .api()?;
        Ok(EventTypePayload {
            event_type: EventType(updated),
        })
    }

    /// Deprecated event types can still be published; lists hide them unless asked.
    async fn deprecate_event_type(
        &self,
        ctx: &Context<'_>,
        input: DeprecateEventTypeInput,
    ) -> Result<EventTypePayload> {
        let access = writer(ctx)?;
        let patch = EventTypePatch {
            deprecated: Some(input.deprecated),
            ..EventTypePatch::default()
        };
        let updated = event_types::update(&access.state.db, access.tenant(), &input.name, patch)
            .await
            .api()?;
        Ok(EventTypePayload {
            event_type: EventType(updated),
        })
    }

    /// Stores the event and queues one delivery per matching enabled endpoint, atomically.
    async fn publish_event(
        &self,
        ctx: &Context<'_>,
        input: PublishEventInput,
    ) -> Result<PublishEventPayload> {
        let access = writer(ctx)?;
        let traceparent = ctx.data_opt::<Traceparent>().map(|t| t.0.clone());
        let published = publish::publish(
            &access.state.db,
            access.tenant(),
            PublishEvent {
                event_type: input.event_type,
                payload: input.payload.0,
                channels: input.channels,
                idempotency_key: input.idempotency_key,
                traceparent,
            },
            access.state.max_payload_bytes,
        )
        .await
        .api()?;
        Ok(PublishEventPayload {
            message: Message(published.message),
            delivery_count: i32::try_from(published.deliveries).unwrap_or(i32::MAX),
            repeated: published.repeated,
        })
    }

    /// Publishes up to 1,000 events in one transaction and answers each: accepted, repeated
    /// (its idempotency key was used before) or failed with its own error, so one bad event
    /// neither stops the others nor hides what was stored. The whole call fails, storing
    /// nothing, only when the database cannot be reached (`UNAVAILABLE`, with `retryAfter`):
    /// send it again with the same idempotency keys.
    async fn publish_events(
        &self,
        ctx: &Context<'_>,
        input: PublishEventsInput,
    ) -> Result<PublishEventsPayload> {
        let access = writer(ctx)?;
        let traceparent = ctx.data_opt::<Traceparent>().map(|t| t.0.clone());
        let events: Vec<PublishEvent> = input
            .events
            .into_iter()
            .map(|event| PublishEvent {
                event_type: event.event_type,
                payload: event.payload.0,
                channels: event.channels,
                idempotency_key: event.idempotency_key,
                traceparent: traceparent.clone(),
            })
            .collect();
        let keys: Vec<Option<String>> = events.iter().map(|e| e.idempotency_key.clone()).collect();
        let outcomes = publish::publish_many(
            &access.state.db,
            access.tenant(),
            events,
            access.state.max_payload_bytes,
        )
        .await
        .api()?;
        Ok(events_payload(keys, outcomes))
    }
}

fn events_payload(keys: Vec<Option<String>>, outcomes: Vec<Outcome>) -> PublishEventsPayload {
    let mut payload = PublishEventsPayload {
        results: Vec::with_capacity(outcomes.len()),
        accepted: 0,
        repeated: 0,
        failed: 0,
    };
    for (index, (idempotency_key, outcome)) in keys.into_iter().zip(outcomes).enumerate() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let result = match outcome {
            Ok(published) => {
                let status = if published.repeated {
                    payload.repeated += 1;
                    PublishStatus::Repeated
                } else {
                    payload.accepted += 1;
                    PublishStatus::Accepted
                };
                PublishEventResult {
                    index,
                    idempotency_key,
                    status,
                    delivery_count: i32::try_from(published.deliveries).unwrap_or(i32::MAX),
                    message: Some(Message(published.message)),
                    error: None,
                }
            }
            Err(error) => {
                payload.failed += 1;
                PublishEventResult {
                    index,
                    idempotency_key,
                    status: PublishStatus::Failed,
                    message: None,
                    delivery_count: 0,
                    error: Some(PublishError {
                        code: error.code().as_str().to_owned(),
                        message: error.public_message(),
                    }),
                }
            }
        };
        payload.results.push(result);
    }
    payload
}
