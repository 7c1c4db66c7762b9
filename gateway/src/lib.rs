//! The Junction router: the one front door in front of every subgraph and REST upstream.
//!
//! It loads an Apollo Federation v2 supergraph ([`supergraph`]), plans each operation into
//! fetches against subgraphs ([`plan`], a plain data type made by [`planner`]), runs the plan
//! ([`execute`]) and shapes the answer, a GraphQL request going through tower services in
//! stages (`stages`: auth, limits, plan, operation limits, execute); subscriptions over WebSocket and SSE; REST routes
//! to upstream services ([`passthrough`]); the edge
//! ([`edge`]: request ids, CORS, limits, gzip), credentials ([`jwt`], [`oauth`],
//! [`introspection`]), [`rate_limit`]s and persisted queries; plus the HTTP server shell every
//! deployment shares: health endpoints with pluggable readiness probes and a graceful
//! shutdown. The router knows nothing about Junction's own subgraphs in particular.

pub mod authorization;
pub mod cache;
pub mod compose;
mod config;
pub mod cost;
pub mod edge;

pub mod execute;
pub mod health;
pub mod introspection;
pub mod jwt;
pub mod oauth;
pub mod operation;
pub mod passthrough;
pub mod persisted;
pub mod plan;
pub mod planner;
pub mod rate_limit;
pub mod router;
pub mod selection;
pub mod server;
mod stages;
mod subscription;
pub mod supergraph;

pub use config::{GatewayConfig, SubgraphSettings, SubscriptionConfig};
