//! `GET /metrics`, in the Prometheus text format, to whoever [`Access`] lets in.
//!
//! Why not to anyone: the metrics name the operations clients run, the subgraphs and
//! upstreams behind the router, and the webhook endpoints of every tenant. On the router's
//! port, which is the public door, they are served to loopback peers only unless a bearer
//! token is configured; on an address of their own the operator chose who reaches it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;

use crate::config::MetricsConfig;
use crate::exporter::Exporter;

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Who may scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Anyone,
    /// Peers on a loopback address (the peer of the connection, never a forwarded header).
    Loopback,
    /// Whoever sends `Authorization: Bearer <token>`.
    Bearer(String),
}

impl Access {
    /// Who may scrape on the router's own port (`on_router_port`) or an address of its own.
    pub fn from_config(config: &MetricsConfig, on_router_port: bool) -> Self {
        match &config.token {
            Some(token) => Access::Bearer(token.clone()),
            None if on_router_port => Access::Loopback,
            None => Access::Anyone,
        }
    }
}

struct Served {
    exporter: Arc<Exporter>,
    access: Access,
}

/// `/metrics` rendering `exporter`'s metrics to those `access` admits.
pub fn routes(exporter: Arc<Exporter>, access: Access) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(Served { exporter, access }))
}

async fn scrape(State(served): State<Arc<Served>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    if let Err(refusal) = admit(&served.access, &request, peer) {
        return refusal.into_response();
    }
    let exporter = Arc::clone(&served.exporter);
    // Rendering reads /proc and formats every series: off the threads serving connections.
    match tokio::task::spawn_blocking(move || exporter.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Why a scrape was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NotLoopback,
    NoToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotLoopback => (
                StatusCode::FORBIDDEN,
                "metrics are served to loopback peers only on the router's port: \
                 set metrics.token, or metrics.listen for an address of their own\n",
            )
                .into_response(),
            Refusal::NoToken => {
                let mut refusal =
                    (StatusCode::UNAUTHORIZED, "a bearer token is needed\n").into_response();
                refusal.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"metrics\""),
                );
                refusal
            }
        }
    }
}

fn admit(access: &Access, request: &Request, peer: Option<IpAddr>) -> Result<(), Refusal> {
    match access {
        Access::Anyone => Ok(()),
        Access::Loopback if peer.is_some_and(|ip| ip.is_loopback()) => Ok(()),
        Access::Loopback => Err(Refusal::NotLoopback),
        Access::Bearer(token) => {
            let sent = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
                Ok(())
            } else {
                Err(Refusal::NoToken)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = axum::http::Request::get("/metrics");
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn the_router_port_admits_loopback_peers_only_without_a_token() {
        let access = Access::from_config(&MetricsConfig::default(), true);
        assert_eq!(access, Access::Loopback);
        assert!(admit(&access, &request(None), Some([127, 0, 0, 1].into())).is_ok());
        assert!(admit(&access, &request(None), Some("::1".parse().unwrap())).is_ok());
        let refused = admit(&access, &request(None), Some([10, 0, 0, 7].into())).unwrap_err();
        assert_eq!(refused.into_response().status(), StatusCode::FORBIDDEN);
        assert!(admit(&access, &request(None), None).is_err());
    }

    #[test]
    fn a_token_is_needed_from_everyone_once_configured() {
        let config = MetricsConfig {
            token: Some("s3cret".into()),
            ..MetricsConfig::default()
        };
        for on_router_port in [true, false] {
            let access = Access::from_config(&config, on_router_port);
            let local = Some(IpAddr::from([127, 0, 0, 1]));
            assert!(admit(&access, &request(Some("Bearer s3cret")), local).is_ok());
            let refused = admit(&access, &request(None), local).unwrap_err();
            assert_eq!(refused.into_response().status(), StatusCode::UNAUTHORIZED);
            assert!(admit(&access, &request(Some("Bearer s3cre")), local).is_err());
            assert!(admit(&access, &request(Some("s3cret")), local).is_err());
        }
    }

    #[test]
    fn an_address_of_its_own_is_open_without_a_token() {
        let access = Access::from_config(&MetricsConfig::default(), false);
        assert!(admit(&access, &request(None), Some([10, 0, 0, 7].into())).is_ok());
    }
}
