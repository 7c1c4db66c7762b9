//! The router's edge: what every request meets before any GraphQL or REST work.
//!
//! The server ([`server`]: the accept loop, a site's fast path, exactly-one-`Host` and other
//! head rules, the stop signal and grace period), the one chain of credential checks
//! ([`auth`]: the router's own OAuth tokens, JWT, token introspection, API keys), rate limits
//! ([`rate_limit`]), the tower layers around every app ([`layers`]: request ids, CORS, body
//! limits, compression), health endpoints ([`health`]), byte-bounded caches ([`cache`]), the
//! shared HTTP clients ([`clients`]), the problem documents the edge answers with
//! ([`problem`]) and the count of rate-limit refusals ([`metrics`]). It knows nothing of
//! GraphQL or of any route.

pub mod auth;
pub mod cache;
pub mod clients;
pub mod health;
pub mod layers;
pub mod metrics;
pub mod problem;
pub mod rate_limit;
pub mod server;
