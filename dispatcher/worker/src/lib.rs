//! The delivery worker: takes delivery tasks from a [`Queue`](junction_queue::Queue), signs
//! each webhook per Standard Webhooks, POSTs it to the customer's endpoint, records the
//! attempt, and only then settles the task: acknowledged, retried later with back-off, or
//! dead-lettered; and the jobs it runs beside deliveries (replays, retention).
//!
//! Delivery is at least once: a crash between sending and settling repeats the delivery with
//! the same `webhook-id`; nothing is ever dropped.
//!
//! - [`worker`]: the delivery loop, with per-endpoint isolation; attempts are recorded with
//!   group commit (`recorder`).
//! - [`retry`]: the back-off schedule.
//! - [`metrics`]: what it records of attempts; [`gauges`]: the queue's state, read from the
//!   database for metrics.

mod config;
pub mod gauges;
pub mod metrics;
mod recorder;
pub mod retry;
mod sender;
#[cfg(test)]
#[path = "../../queue/src/test_database.rs"]
mod test_database;
pub mod worker;

pub use config::DispatcherConfig;
pub use worker::Dispatcher;
