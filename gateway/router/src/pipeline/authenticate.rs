//! Step 1: who is calling. Credentials checked by the edge's one chain, or a 401 (503 when
//! they cannot be checked now) before anything else runs. The same for HTTP requests and a
//! WebSocket's `connection_init`.

use std::net::IpAddr;

use axum::http::HeaderMap;
use junction_edge::auth;

use super::Caller;
use crate::error::Rejection;
use crate::executor::Forwarded;
use crate::router::GraphRouter;

/// The caller of a request with `headers` from the peer `peer`; `forwarded` are the values
/// passed on to subgraphs (for a WebSocket, those of the upgrade request).
pub async fn authenticate(
    router: &GraphRouter,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    forwarded: Forwarded,
) -> Result<Caller, Rejection> {
    let identity = match &router.authenticator {
        None => None,
        Some(authenticator) => Some(
            auth::require(authenticator.as_ref(), headers)
                .await
                .map_err(|refusal| {
                    Rejection::new(refusal.status(), refusal.code(), &refusal.to_string())
                })?,
        ),
    };
    Ok(Caller {
        identity,
        client_ip: router.client_ip(headers, peer),
        forwarded,
    })
}
