//! The Junction router: the one front door in front of every subgraph and REST upstream.
//!
//! It serves an Apollo Federation v2 supergraph (read, planned and policed by
//! `junction-federation`), runs each operation's plan ([`execute`]) and shapes the answer, a GraphQL request going through tower services in
//! stages (`stages`: auth, limits, plan, operation limits, execute); subscriptions over WebSocket and SSE; REST routes
//! to upstream services ([`passthrough`]); the edge
//! ([`edge`]: request ids, CORS, limits, gzip), credentials ([`jwt`], [`oauth`],
//! [`introspection`]), [`rate_limit`]s and persisted queries; plus the HTTP server shell every
//! deployment shares: health endpoints with pluggable readiness probes and a graceful
//! shutdown. The router knows nothing about Junction's own subgraphs in particular.

pub mod cache;
mod config;
pub mod edge;

pub mod execute;
pub mod health;
pub mod introspection;
pub mod jwt;
pub mod oauth;
pub mod passthrough;
pub mod persisted;
pub mod rate_limit;
pub mod router;
pub mod server;
mod stages;
mod subscription;

pub use config::{GatewayConfig, SubgraphSettings, SubscriptionConfig};
