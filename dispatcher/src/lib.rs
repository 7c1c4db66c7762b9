//! The dispatcher: the `Queue` trait with its embedded and Kafka backends, and the worker that
//! signs and delivers webhooks at least once, with back-off, a dead-letter state and replay.
//!
//! Empty until the webhook pipeline issue lands; `junction dispatcher` says so.
