//! The webhooks subgraph: endpoints (webhook subscriptions), event types, messages and signing
//! secrets, all scoped by the caller's verified tenant.
//!
//! This crate holds the domain operations ([`endpoints`], [`event_types`], [`publish`]) that
//! the GraphQL layer exposes. Publishing writes the message and one delivery per matching
//! endpoint in one transaction (the outbox), so no event is lost between the API and the queue.

pub mod endpoints;
mod error;
pub mod event_types;
pub mod publish;

pub use error::WebhookError;
