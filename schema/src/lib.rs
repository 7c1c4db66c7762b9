//! Shared contracts of Junction: what the router, the subgraphs and the dispatcher agree on.
//!
//! - [`identity`]: the caller's identity as the router signs it into downstream requests, and the
//!   axum layer every subgraph uses to verify it.
//! - [`entities`]: the sea-orm entities of every table (the migrations crate creates them).
//! - [`apikeys`] and [`tenants`]: issuing API keys and turning a presented key into an [`Identity`].
//! - [`database`]: connecting to SQLite or PostgreSQL from one URL.
//! - [`envelope`]: the webhook body customers receive, and the delivery events.
//! - [`webhook_signature`] and [`webhook_url`]: how webhooks are signed, and where they may go.

pub mod apikeys;
pub mod database;
pub mod entities;
pub mod envelope;
pub mod error_code;
pub mod identity;
pub mod tenants;
pub mod webhook_signature;
pub mod webhook_url;

pub use identity::{Identity, Scopes};
