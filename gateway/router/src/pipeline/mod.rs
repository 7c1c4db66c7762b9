//! The GraphQL request pipeline: one step per file, each a function of the router's state
//! and the previous step's output, returning its own, so the order is the compiler's to check
//! (a plan cannot be asked for an operation not yet authorized). Every way in runs the same
//! steps: HTTP (`crate::http`), WebSocket and server-sent events (`crate::subscription`).
//!
//! [`authenticate`] -> [`limits::per_request`] -> [`persisted`] -> [`parse`] -> [`normalize`]
//! -> [`authorize`] -> [`cost`] -> [`plan`] -> [`limits::per_operation`] -> [`execute`].
//!
//! Nothing reaches a subgraph before every check passed; a refusal is a
//! [`crate::error::Rejection`] with a code, and what only the logs may see stays there.

pub mod authenticate;
pub mod authorize;
pub mod cost;
pub mod execute;
pub mod limits;
pub mod normalize;
pub mod parse;
pub mod persisted;
pub mod plan;

use std::net::IpAddr;

use junction_schema::Identity;
use serde::Deserialize;
use serde_json::Value;

use crate::error::Rejection;
use crate::executor::Forwarded;
use crate::router::GraphRouter;

/// A GraphQL request as a client sends it, over any transport.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQLRequest {
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Option<Value>,
    #[serde(default)]
    pub extensions: Option<Value>,
}

/// Who is calling ([`authenticate`]'s output): what the policies and rate limits read, and
/// what goes on to subgraphs.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `None`: the router runs without authentication.
    pub identity: Option<Identity>,
    /// The client's address (the peer, or what a trusted proxy says): anonymous callers'
    /// rate limits count by it.
    pub client_ip: Option<IpAddr>,
    pub forwarded: Forwarded,
}

pub use self::plan::Planned;

/// Every step from the request to its plan, in order, for `caller`.
pub async fn prepare(
    router: &GraphRouter,
    request: GraphQLRequest,
    caller: &Caller,
) -> Result<Planned, Rejection> {
    let resolved = persisted::resolve(router, request)?;
    let parsed = parse::parse(router, resolved)?;
    let normalized = normalize::normalize(router, parsed)?;
    let authorized = authorize::authorize(router, normalized, caller.identity.as_ref());
    let costed = cost::estimate(router, authorized)?;
    plan::plan(router, costed, caller).await
}
