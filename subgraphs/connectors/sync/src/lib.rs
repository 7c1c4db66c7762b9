//! Junction's connector sync engine: it keeps connections (a tenant's configured connector),
//! runs their syncs, and stores what they read.
//!
//! It lives beside the SDK (`../sdk`) and the connectors subgraph (`..`), not in the delivery
//! worker, because both the subgraph (create a connection, trigger a sync, read records) and
//! the processes that run syncs (`junction serve`, `junction dispatcher`) need it, and a
//! subgraph may not depend on the worker. The worker crate delivers webhooks; this crate
//! syncs connectors; the binary starts both.
//!
//! - [`catalog`]: connector names to connectors: the built-in manifests and a folder's.
//! - [`connections`], [`runs`], [`records`], [`lag`]: the small API the subgraph calls.
//! - [`SyncRunner`]: the job loop every worker runs: queues due connections' runs
//!   ([`schedule`]), leases runs from the database ([`lease`]), and runs them (`execute`),
//!   committing each checkpoint with the records it covers and their events (`store`).

pub mod catalog;
pub mod config;
pub mod connections;
mod cursor_time;
mod error;
mod events;
mod execute;
pub mod lag;
pub mod lease;
pub mod records;
pub mod runner;
pub mod runs;
pub mod schedule;
mod store;

pub use catalog::{Catalog, CatalogError};
pub use config::ConnectorsConfig;
pub use error::SyncError;
pub use runner::SyncRunner;
