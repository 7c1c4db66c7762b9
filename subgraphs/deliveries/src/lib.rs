//! The deliveries subgraph: what happened to every event. Delivery attempts with filters and
//! pagination, per-endpoint stats over 1 h, 24 h and 72 h windows, the dead-letter queue, and
//! replay. It extends the webhooks subgraph's `Endpoint` and `Message` entities, so one query
//! through the router gets an endpoint's url and its success rate.
//!
//! Live subscriptions stream attempts and dead letters as the dispatcher records them;
//! replays of dead letters in bulk run as jobs with visible progress; [`retention`] deletes old
//! attempts and settled messages.

/// This subgraph's name in the supergraph: identities the router signs for it name it.
pub const SUBGRAPH_NAME: &str = "deliveries";

pub mod graphql;
pub mod http;
pub mod retention;
pub mod stats;
