//! The connectors subgraph and the connector SDK: the connector catalog, connections made through
//! OAuth2 flows, incremental sync jobs, and the `Connector` trait with its declarative manifests.
//!
//! Empty until the connectors issue lands; `junction subgraph connectors` says so.
