//! The GraphQL router: an Apollo Federation v2 supergraph (read, planned and policed by
//! `junction-federation`) served over HTTP ([`http`]), WebSocket and server-sent events
//! ([`subscription`]).
//!
//! Every request runs the same [`pipeline`], one step per file; the [`executor`] runs a
//! plan against the subgraphs; [`router`] is the state the steps read; [`error`] is what a
//! client may see of a refusal; [`metrics`] is what it records. Credentials, rate limits and
//! the server are `junction-edge`'s.

pub mod config;
pub mod error;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod operation_slots;
pub mod persisted;
pub mod pipeline;
pub mod router;
mod subscription;

pub use config::{SubgraphSettings, SubscriptionConfig};
