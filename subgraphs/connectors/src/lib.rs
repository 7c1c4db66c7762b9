//! The connectors subgraph: the connector catalog, connections made through OAuth2 flows, and
//! incremental sync jobs. The `Connector` trait and its declarative manifests live in the SDK
//! crate beside it (`sdk/`, `junction-connector-sdk`).
//!
//! Empty until the connectors issue lands; `junction subgraph connectors` says so.
