//! What a client may see of a refused request: an HTTP status and GraphQL errors with a code.
//! What only the logs may see (a planner's reason naming subgraphs and types, a subgraph's
//! address) is logged where it happens, with the request id, and never put in a [`Rejection`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use junction_edge::rate_limit::Decision;
use junction_federation::operation::OperationError;
use serde_json::{Value, json};

/// A request refused before execution.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub errors: Vec<Value>,
}

impl Rejection {
    pub fn new(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            errors: vec![json!({"message": message, "extensions": {"code": code}})],
        }
    }

    /// `BAD_USER_INPUT`, 400.
    pub fn bad_input(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_USER_INPUT", message)
    }
}

impl From<OperationError> for Rejection {
    fn from(failure: OperationError) -> Self {
        match failure {
            OperationError::Invalid(errors) => Self {
                status: StatusCode::BAD_REQUEST,
                errors: errors
                    .into_iter()
                    .map(|e| {
                        let mut value = serde_json::to_value(&e)
                            .unwrap_or_else(|_| json!({"message": e.message}));
                        value["extensions"] = json!({"code": "BAD_USER_INPUT"});
                        value
                    })
                    .collect(),
            },
            OperationError::UnknownOperation(_)
            | OperationError::OverLimit(_)
            | OperationError::OutOfRange(_) => Self::bad_input(&failure.to_string()),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"errors": self.errors}))).into_response()
    }
}

/// A 429 in GraphQL's shape, with the limiter's headers.
pub fn too_many(decision: &Decision) -> Response {
    let mut response = Rejection::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "too many requests: slow down and try again after `Retry-After` seconds",
    )
    .into_response();
    decision.set_headers(response.headers_mut());
    response
}
