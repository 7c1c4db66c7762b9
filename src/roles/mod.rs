//! One assembly per part that a command runs, so every role that serves a part builds it the
//! same way; the commands only choose which parts run and where.

pub mod connectors;
pub mod metrics;
pub mod router;
pub mod subgraphs;
