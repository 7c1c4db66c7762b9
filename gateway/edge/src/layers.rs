//! What requests through the router's door get (`[gateway.http]`). Every request: a request
//! id (the client's `x-request-id` when it sent a sane one, else a new UUID), echoed in the
//! answer and passed to subgraphs and upstreams. The router's own endpoints (GraphQL, the
//! playground, OAuth, health): a body size limit (413 beyond), CORS for the configured
//! origins, gzip for answers worth it (not event streams). REST routes choose their own
//! limits and CORS and pass bodies through as they are.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::Deserialize;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

pub const REQUEST_ID: &str = "x-request-id";

/// `[gateway.http]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The largest request body the router's own endpoints accept, in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed to call the router's own endpoints from a browser: exact origins,
    /// or `["*"]` for any. None by default (same-origin only, as the playground is).
    pub cors_origins: Vec<String>,
    /// Compress answers with gzip when the client accepts it.
    pub compression: bool,
    /// Proxies in front of the router (CIDRs) whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a connection may wait for a request head, idle or partly sent, before it
    /// is closed: slow clients cannot hold connections open for nothing.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            cors_origins: Vec::new(),
            compression: true,
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), String> {
        validate_origins(&self.cors_origins).map_err(|e| format!("gateway.http.cors_origins: {e}"))
    }
}

pub fn validate_origins(origins: &[String]) -> Result<(), String> {
    match origins
        .iter()
        .find(|o| *o != "*" && HeaderValue::from_str(o).is_err())
    {
        Some(origin) => Err(format!("{origin:?} is not an origin")),
        None => Ok(()),
    }
}

/// CORS for `origins` (`*` for any): what every preflight gets; callers add methods and
/// request headers.
pub fn cors(origins: &[String]) -> CorsLayer {
    let allowed = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allowed)
        .allow_methods(tower_http::cors::AllowMethods::mirror_request())
        .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static(REQUEST_ID),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(3600))
}

/// The router's own endpoints behind the body limit, compression and CORS.
pub fn own_endpoints(app: Router, config: &HttpConfig) -> Router {
    let limit = config.max_body_bytes;
    let mut app = app
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(axum::middleware::map_response(
            move |response: Response| async move { refused_body(response, limit) },
        ));
    if config.compression {
        app = app.layer(CompressionLayer::new().gzip(true));
    }
    if !config.cors_origins.is_empty() {
        app = app.layer(
            cors(&config.cors_origins)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("apollo-require-preflight"),
                    HeaderName::from_static("traceparent"),
                    HeaderName::from_static(REQUEST_ID),
                ]),
        );
    }
    app
}

/// A body refused for its size gets a GraphQL-shaped error saying the limit (these are
/// GraphQL, OAuth and health endpoints; clients parse JSON errors); and as it was left
/// unread, which leaves the connection unusable, the answer closes it so that the client
/// does not send its next request on it.
fn refused_body(response: Response, limit: usize) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let body = serde_json::json!({"errors": [{
        "message": format!("the request body is larger than the limit of {limit} bytes"),
        "extensions": {"code": "BAD_USER_INPUT"},
    }]});
    let mut refused = (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}

/// Around everything the address serves: the request id exists before anything else runs,
/// and every answer carries it.
pub fn request_ids(app: Router) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    app.layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RandomRequestId))
}

/// UUID v4 request ids from the thread's seeded generator: no system call per request, as
/// `getrandom` for each id would be.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        new_request_id().map(RequestId::new)
    }
}

/// A new request id: a UUID v4 from the thread's seeded generator.
pub fn new_request_id() -> Option<HeaderValue> {
    let bytes: [u8; 16] = rand::random();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)).ok()
}

/// The client's address: the peer, or for a trusted proxy the nearest untrusted address in
/// its `X-Forwarded-For`.
pub fn client_ip(
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
    trusted: &[IpNet],
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    if !is_trusted(trusted, peer) {
        return Some(peer);
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(trusted, *ip))
            .unwrap_or(peer),
    )
}

/// Whether `ip` is one of the `trusted` proxies.
pub fn is_trusted(trusted: &[IpNet], ip: std::net::IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_comes_from_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut forwarded = axum::http::HeaderMap::new();
        forwarded.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.1.1.1"),
        );
        let proxy: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(&forwarded, Some(proxy), &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            client_ip(&forwarded, Some(stranger), &trusted),
            Some(stranger)
        );
        assert_eq!(
            client_ip(&axum::http::HeaderMap::new(), Some(proxy), &trusted),
            Some(proxy)
        );
    }
}
