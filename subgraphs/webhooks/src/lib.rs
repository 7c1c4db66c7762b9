//! The webhooks subgraph: endpoints (webhook subscriptions), event types, messages and signing
//! secrets, all scoped by the caller's verified tenant.
//!
//! The domain operations ([`endpoints`], [`event_types`], [`messages`], [`publish`]) sit
//! under the GraphQL layer ([`graphql`]) and its HTTP route ([`http`]). Publishing writes the message and one delivery per matching
//! endpoint in one transaction (the outbox), so no event is lost between the API and the queue.

/// This subgraph's name in the supergraph: identities the router signs for it name it.
pub const SUBGRAPH_NAME: &str = "webhooks";

mod compiled_schemas;
mod config;
pub mod endpoints;
mod error;
pub mod event_types;
pub mod graphql;
pub mod http;
pub mod messages;
pub mod publish;
pub mod rest;

pub use config::WebhooksConfig;
pub use error::{RETRY_AFTER_SECS, WebhookError};
