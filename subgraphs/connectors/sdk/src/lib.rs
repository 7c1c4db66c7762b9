//! Junction's connector SDK: what a connector author depends on to bring a source of records
//! (a SaaS API, a database) into Junction without touching the core.
//!
//! - [`Connector`]: the contract an engine runs (spec, check, discover, read as a pulled
//!   stream of records and checkpoints), with [`ConnectorError`] classifying what went wrong.
//! - [`manifest`]: a connector as one YAML file, no Rust ([`ManifestConnector`]); the format
//!   is documented in `MANIFEST.md` beside this crate.
//! - [`http`]: the HTTP client connectors share: timeouts, retries with back-off and
//!   `Retry-After`, a per-connection rate cap, and the SSRF guard.
//! - [`conformance`]: the checks every connector's tests run against a test source.

pub mod conformance;
mod connector;
mod error;
pub mod http;
pub mod manifest;

pub use connector::{
    AuthKind, BoxFuture, Connection, Connector, Credentials, Message, MessageStream, Record, Spec,
    State, StreamSpec, SyncMode,
};
pub use error::{ConnectorError, ErrorKind};
pub use manifest::{Manifest, ManifestConnector, ManifestError};
