//! What every request through the router's door gets (`[gateway.http]`): a request id
//! (the client's `x-request-id` when it sent a sane one, else a new UUID), echoed in the
//! answer and passed to subgraphs; a body size limit (413 beyond); CORS for the configured
//! origins; gzip for answers that are worth it (not event streams).

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use serde::Deserialize;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub const REQUEST_ID: &str = "x-request-id";

/// `[gateway.http]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed to call from a browser: exact origins, or `["*"]` for any. None by
    /// default (same-origin only, as the playground is).
    pub cors_origins: Vec<String>,
    /// Compress answers with gzip when the client accepts it.
    pub compression: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            cors_origins: Vec::new(),
            compression: true,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), String> {
        for origin in &self.cors_origins {
            if origin != "*" && HeaderValue::from_str(origin).is_err() {
                return Err(format!(
                    "gateway.http.cors_origins: {origin:?} is not an origin"
                ));
            }
        }
        Ok(())
    }
}

/// `app` behind the edge layers.
pub fn layer(app: Router, config: &HttpConfig) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    let mut app = app.layer(RequestBodyLimitLayer::new(config.max_body_bytes));
    if config.compression {
        app = app.layer(CompressionLayer::new().gzip(true));
    }
    if !config.cors_origins.is_empty() {
        let origins = if config.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                config
                    .cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("apollo-require-preflight"),
                    HeaderName::from_static("traceparent"),
                    request_id.clone(),
                ])
                .expose_headers([
                    request_id.clone(),
                    HeaderName::from_static("ratelimit-limit"),
                    HeaderName::from_static("ratelimit-remaining"),
                    HeaderName::from_static("ratelimit-reset"),
                    header::RETRY_AFTER,
                ])
                .max_age(Duration::from_secs(3600)),
        );
    }
    // Outermost: the id exists before anything else runs, and every answer carries it.
    app.layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
