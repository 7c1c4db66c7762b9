//! Web assets the gateway serves offline: GraphiQL at `/playground` and the observability
//! dashboard at `/dashboard`, bundled with their licences (no CDN).
//!
//! Empty until the delivery logs and playground issue lands.
