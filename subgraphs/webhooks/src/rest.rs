//! `POST /v1/events`: bulk publishing for clients that do not speak GraphQL, with the
//! semantics of `publishEvents` (one transaction, an answer per event), and
//! `GET /v1/openapi.json`, the OpenAPI 3.1 document describing it.
//!
//! The router reaches these through a REST route of its own (`junction serve` declares it:
//! see [`EVENTS_ROUTE`]), whose `auth` plugin checks the caller's credentials and signs the
//! identity for that route. A route's identity covers the route and the request id, not the
//! body (REST bodies stream through the router unread), so this handler checks it for the
//! route's audience: an identity made for a subgraph, or another route, opens nothing here.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use junction_schema::Identity;
use junction_schema::error_code::ErrorCode;
use junction_schema::identity::{
    Audience, Binding, IdentityError, IdentityVerifier, REQUEST_ID_HEADER,
};
use junction_schema::tenants::ADMIN_SCOPE;
use serde::Deserialize;
use serde_json::json;

use crate::graphql::WebhooksState;
use crate::graphql::access::WRITE_SCOPE;
use crate::publish::{self, MAX_BATCH, Outcome, PublishEvent};
use crate::{RETRY_AFTER_SECS, WebhookError};

/// The name of the router's REST route to `POST /v1/events`: the audience its identities are
/// signed for. `junction serve` declares the route under this name; a router run alone
/// (`junction gateway`) needs a `[[gateway.routes]]` entry of this name, with the `auth`
/// plugin, pointing at the webhooks subgraph.
pub const EVENTS_ROUTE: &str = "junction-events";
/// The route serving the OpenAPI document (no credentials needed).
pub const OPENAPI_ROUTE: &str = "junction-openapi";
pub const EVENTS_PATH: &str = "/v1/events";
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

#[derive(Clone)]
struct Rest {
    state: Arc<WebhooksState>,
    verifier: Arc<IdentityVerifier>,
    audience: Arc<Audience>,
}

/// The REST routes, for the webhooks subgraph's server.
pub fn routes(state: Arc<WebhooksState>, verifier: Arc<IdentityVerifier>) -> Router {
    let limit = verifier.max_body_bytes();
    Router::new()
        .route(EVENTS_PATH, post(publish_events))
        .route(OPENAPI_PATH, get(openapi))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Rest {
            state,
            verifier,
            audience: Arc::new(Audience::route(EVENTS_ROUTE)),
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsRequest {
    events: Vec<EventBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventBody {
    event_type: String,
    payload: serde_json::Value,
    #[serde(default)]
    channels: Vec<String>,
    idempotency_key: Option<String>,
}

/// An error answer: `{"error": {"code", "message"[, "retryAfter"]}}`, with the code's status.
fn failure(code: ErrorCode, message: impl Into<String>) -> Response {
    let mut error = json!({ "code": code.as_str(), "message": message.into() });
    if code == ErrorCode::Unavailable {
        error["retryAfter"] = json!(RETRY_AFTER_SECS);
    }
    let mut response = (code.http_status(), axum::Json(json!({ "error": error }))).into_response();
    match code {
        ErrorCode::Unavailable => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        ErrorCode::Unauthenticated => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}

fn domain_failure(error: &WebhookError) -> Response {
    match error {
        WebhookError::Database(db) if error.code() == ErrorCode::Unavailable => {
            tracing::warn!(error = %db, "POST /v1/events: the database is unavailable");
        }
        WebhookError::Database(db) => {
            tracing::error!(error = %db, "POST /v1/events: database error");
        }
        _ => {}
    }
    failure(error.code(), error.public_message())
}

/// The route's identity, checked as the router signed it: for this route and request id.
fn identity(rest: &Rest, headers: &HeaderMap) -> Result<Identity, IdentityError> {
    let binding = Binding {
        audience: &rest.audience,
        method: None,
        target: None,
        body: None,
        request_id: headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()),
    };
    rest.verifier.verify(headers, &binding)
}

async fn publish_events(State(rest): State<Rest>, headers: HeaderMap, body: Bytes) -> Response {
    let identity = match identity(&rest, &headers) {
        Ok(identity) => identity,
        Err(error) => {
            tracing::debug!(%error, "POST /v1/events refused without a valid identity");
            return failure(ErrorCode::Unauthenticated, error.to_string());
        }
    };
    if !(identity.scopes.contains(WRITE_SCOPE) || identity.scopes.contains(ADMIN_SCOPE)) {
        return failure(
            ErrorCode::Forbidden,
            format!("this needs one of the scopes: {WRITE_SCOPE}, {ADMIN_SCOPE}"),
        );
    }
    if let Some(kind) = headers.get(header::CONTENT_TYPE)
        && !kind
            .to_str()
            .is_ok_and(|kind| kind.trim_start().starts_with("application/json"))
    {
        return failure(
            ErrorCode::BadUserInput,
            "the body must be JSON (content-type: application/json)",
        );
    }
    let request: EventsRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return failure(
                ErrorCode::BadUserInput,
                format!("the body is not a valid events request: {error}"),
            );
        }
    };
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let keys: Vec<Option<String>> = request
        .events
        .iter()
        .map(|e| e.idempotency_key.clone())
        .collect();
    let events = request
        .events
        .into_iter()
        .map(|event| PublishEvent {
            event_type: event.event_type,
            payload: event.payload,
            channels: event.channels,
            idempotency_key: event.idempotency_key,
            traceparent: traceparent.clone(),
        })
        .collect();
    match publish::publish_many(
        &rest.state.db,
        &identity.tenant,
        events,
        rest.state.max_payload_bytes,
    )
    .await
    {
        Ok(outcomes) => (StatusCode::OK, axum::Json(answer(keys, outcomes))).into_response(),
        Err(error) => domain_failure(&error),
    }
}

/// The answer: each event's result, in order, and the counts.
fn answer(keys: Vec<Option<String>>, outcomes: Vec<Outcome>) -> serde_json::Value {
    let (mut accepted, mut repeated, mut failed) = (0, 0, 0);
    let results: Vec<serde_json::Value> = keys
        .into_iter()
        .zip(outcomes)
        .enumerate()
        .map(|(index, (key, outcome))| match outcome {
            Ok(published) => {
                let status = if published.repeated {
                    repeated += 1;
                    "repeated"
                } else {
                    accepted += 1;
                    "accepted"
                };
                json!({
                    "index": index,
                    "idempotencyKey": key,
                    "status": status,
                    "message": {
                        "id": published.message.id,
                        "eventType": published.message.event_type,
                        "createdAt": published.message.created_at,
                    },
                    "deliveryCount": published.deliveries,
                    "error": null,
                })
            }
            Err(error) => {
                failed += 1;
                json!({
                    "index": index,
                    "idempotencyKey": key,
                    "status": "failed",
                    "message": null,
                    "deliveryCount": 0,
                    "error": { "code": error.code().as_str(), "message": error.public_message() },
                })
            }
        })
        .collect();
    json!({ "results": results, "accepted": accepted, "repeated": repeated, "failed": failed })
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document().to_string(),
    )
        .into_response()
}

/// The OpenAPI 3.1 description of `POST /v1/events`.
pub fn openapi_document() -> serde_json::Value {
    let error = json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": { "$ref": "#/components/schemas/Error" } }
    });
    let error_response = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": error } }
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Junction events API",
            "version": "1",
            "description": "Publish webhook events in bulk. Each event is answered on its own \
                (accepted, repeated or failed); the events accepted in one request are stored \
                in one transaction. When the database cannot be reached the request stores \
                nothing and answers 503 with Retry-After: send it again with the same \
                idempotency keys, and events already stored are answered `repeated`, never \
                stored twice."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": {
            EVENTS_PATH: {
                "post": {
                    "operationId": "publishEvents",
                    "summary": "Publish up to 1,000 events",
                    "description": "Needs the scope webhooks:write (or admin). The same as the \
                        GraphQL mutation publishEvents.",
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": {
                            "type": "object",
                            "required": ["events"],
                            "additionalProperties": false,
                            "properties": { "events": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_BATCH,
                                "items": { "$ref": "#/components/schemas/Event" }
                            }}
                        }}}
                    },
                    "responses": {
                        "200": {
                            "description": "Each event's result, in the order sent.",
                            "content": { "application/json": { "schema": {
                                "$ref": "#/components/schemas/PublishResults"
                            }}}
                        },
                        "400": error_response("The request as a whole is malformed (not JSON, \
                            no events, more than 1,000): nothing was stored."),
                        "401": error_response("Missing or invalid credentials."),
                        "403": error_response("The credentials lack webhooks:write."),
                        "413": error_response("The body is too large."),
                        "429": error_response("Rate limited; see Retry-After."),
                        "503": {
                            "description": "The database cannot be reached: nothing was stored. \
                                Retry after Retry-After seconds with the same idempotency keys.",
                            "headers": { "Retry-After": {
                                "schema": { "type": "integer" },
                                "description": "Seconds to wait before retrying."
                            }},
                            "content": { "application/json": { "schema": error } }
                        }
                    }
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (jk_live_...), a JWT, or a token from /oauth/token."
                }
            },
            "schemas": {
                "Event": {
                    "type": "object",
                    "required": ["eventType", "payload"],
                    "additionalProperties": false,
                    "properties": {
                        "eventType": { "type": "string", "description": "An event type created before." },
                        "payload": { "description": "Any JSON value, up to the configured size." },
                        "channels": { "type": "array", "items": { "type": "string" } },
                        "idempotencyKey": {
                            "type": "string", "minLength": 1, "maxLength": 256,
                            "description": "Publishing again with the same key and payload answers the first message (status repeated)."
                        }
                    }
                },
                "PublishResults": {
                    "type": "object",
                    "required": ["results", "accepted", "repeated", "failed"],
                    "properties": {
                        "results": { "type": "array", "items": { "$ref": "#/components/schemas/PublishResult" } },
                        "accepted": { "type": "integer" },
                        "repeated": { "type": "integer" },
                        "failed": { "type": "integer" }
                    }
                },
                "PublishResult": {
                    "type": "object",
                    "required": ["index", "status", "deliveryCount"],
                    "properties": {
                        "index": { "type": "integer", "description": "The event's position in the request, from 0." },
                        "idempotencyKey": { "type": ["string", "null"] },
                        "status": { "enum": ["accepted", "repeated", "failed"] },
                        "message": {
                            "oneOf": [
                                { "type": "null" },
                                {
                                    "type": "object",
                                    "required": ["id", "eventType", "createdAt"],
                                    "properties": {
                                        "id": { "type": "string" },
                                        "eventType": { "type": "string" },
                                        "createdAt": { "type": "string", "format": "date-time" }
                                    }
                                }
                            ]
                        },
                        "deliveryCount": { "type": "integer" },
                        "error": {
                            "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Error" }]
                        }
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": { "enum": ["BAD_USER_INPUT", "CONFLICT", "UNAUTHENTICATED", "FORBIDDEN", "RATE_LIMITED", "UNAVAILABLE", "INTERNAL"] },
                        "message": { "type": "string" },
                        "retryAfter": { "type": "integer", "description": "With UNAVAILABLE: seconds to wait." }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_its_version_and_route() {
        let document = openapi_document();
        assert_eq!(document["openapi"], "3.1.0");
        let post = &document["paths"][EVENTS_PATH]["post"];
        assert_eq!(post["operationId"], "publishEvents");
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["schema"]["properties"]["events"]["maxItems"],
            MAX_BATCH
        );
        assert!(post["responses"]["503"]["headers"]["Retry-After"].is_object());
    }
}
