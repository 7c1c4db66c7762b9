//! End-to-end tests: the platform started as a user starts it (`junction serve`, `gateway`,
//! `subgraph`, `dispatcher`), spoken to over HTTP and WebSocket, with real PostgreSQL, a real
//! Kafka-protocol broker, real HTTP receivers and a real browser. One test binary, so the suite
//! links once; each module is one area.

#[macro_use]
mod support;

mod auth_per_role;
mod connectors;
mod federation;
mod foundation;
mod identity;
mod kafka_delivery;
mod metrics;
mod passthrough;
mod platform;
mod playground;
mod publishing;
mod queue_conformance;
mod subscriptions;
mod webhook_delivery;
mod webhooks_graphql;
