//! The webhooks subgraph: endpoints (webhook subscriptions), event types, messages (publishing
//! through the outbox) and signing secrets, all scoped by the caller's verified tenant.
//!
//! Empty until the webhook pipeline issue lands; `junction subgraph webhooks` says so.
