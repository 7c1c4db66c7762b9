//! Where Junction's outbound requests may go: the SSRF guard shared by webhook delivery and
//! connectors. [`AddressPolicy`] says which addresses are off limits (and checks URLs);
//! [`GuardedResolver`] enforces it in an HTTP client at connect time.
//!
//! A crate of its own so that connector authors get the guard without the database layer
//! `junction-schema` carries.

mod networks;
mod policy;
mod resolver;
mod retry_after;

pub use networks::{InvalidNetwork, deserialize_networks, parse_network};
pub use policy::{AddressPolicy, UrlError};
pub use resolver::{GuardedResolver, Refused};
pub use retry_after::parse_retry_after;
