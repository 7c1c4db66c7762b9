//! Apollo Federation v2, without I/O: what the router knows of a supergraph and does to an
//! operation before anything is sent anywhere.
//!
//! A [`supergraph`] is read from its SDL (or [`compose`]d from subgraph SDLs); an operation
//! is parsed, validated and normalized against its API schema ([`operation`], into the
//! [`selection`] tree), filtered by the [`authorization`] directives, priced by the [`cost`]
//! directives, and planned ([`planner`]: Hive Router's planner behind our types) into a
//! [`plan`]: plain data the router's executor runs, printed in Apollo's shape and kept as snapshots. No tokio, no HTTP: this crate
//! builds and tests alone.

pub mod authorization;
pub mod compose;
pub mod cost;
pub mod operation;
pub mod plan;
pub mod planner;
pub mod selection;
mod spec;
pub mod supergraph;
