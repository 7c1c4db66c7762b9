//! The dispatcher: takes delivery tasks from a [`Queue`], signs each webhook per Standard
//! Webhooks, POSTs it to the customer's endpoint, records the attempt, and only then settles
//! the task: acknowledged, retried later with back-off, or dead-lettered.
//!
//! Delivery is at least once: a crash between sending and settling repeats the delivery with
//! the same `webhook-id`; nothing is ever dropped.
//!
//! - [`queue`]: the small `Queue` trait and its backends: embedded in the database, and Kafka.
//! - [`worker`]: the delivery loop, with per-endpoint isolation; attempts are recorded with
//!   group commit (`recorder`).
//! - [`ssrf`]: the HTTP client's resolver that enforces the address policy at connect time.
//! - [`retry`]: the back-off schedule.
//! - [`replay`]: putting deliveries back on the queue: one message, or dead letters in bulk as
//!   jobs with progress.

mod background;
mod config;
pub mod queue;
mod recorder;
pub mod replay;
pub mod retry;
mod sender;
pub mod ssrf;
mod statement_shapes;
#[cfg(test)]
mod test_database;
pub mod worker;

pub use config::DispatcherConfig;
pub use queue::{Queue, QueueError, Received, Task};
pub use worker::Dispatcher;
