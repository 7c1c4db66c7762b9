//! The GraphQL router: an Apollo Federation v2 supergraph (read, planned and policed by
//! `junction-federation`) served over HTTP, WebSocket and server-sent events.
//!
//! A request goes through the [`stages`] (auth, limits, plan, operation limits, execute);
//! [`persisted`] queries are resolved first; [`execute`] runs a plan against the subgraphs
//! and shapes the answer; [`subscription`]s run the same checks per operation. Credentials,
//! rate limits and the server come from `junction-edge`.

pub mod config;
pub mod execute;
pub mod persisted;
pub mod router;
mod stages;
mod subscription;

pub use config::{SubgraphSettings, SubscriptionConfig};
