//! Which addresses a webhook may reach. The rule is Junction's outbound address policy, kept in
//! `junction-outbound` so that connectors share it without depending on this crate; it is
//! re-exported here for the webhooks subgraph and the dispatcher.

pub use junction_outbound::{AddressPolicy, UrlError};
