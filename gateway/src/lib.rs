//! The Junction router: the one front door in front of every subgraph and REST upstream.
//!
//! Today it holds the HTTP server shell every deployment shares: health endpoints with
//! pluggable readiness probes and a graceful shutdown. The supergraph, query planner,
//! executor, authentication and rate limits arrive with the router and edge issues; this crate
//! never learns about Junction's own subgraphs in particular.

mod config;
pub mod health;
pub mod server;

pub use config::GatewayConfig;
