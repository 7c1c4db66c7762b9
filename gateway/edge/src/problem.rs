//! The router's own answers on REST routes: RFC 9457 problem documents carrying the
//! request id, so a client's report can be found in the logs.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub fn response(status: StatusCode, detail: &str, request_id: Option<&HeaderValue>) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "request_id": request_id.and_then(|v| v.to_str().ok()),
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        body.to_string(),
    )
        .into_response()
}

pub fn not_found(request_id: Option<&HeaderValue>) -> Response {
    response(StatusCode::NOT_FOUND, "no route for this path", request_id)
}
