//! The `[gateway]` section of `junction.toml`: the sections each of the router's crates
//! reads, in one table.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the router listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long in-flight requests may run after SIGTERM/SIGINT before they are cut.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The supergraph SDL `junction gateway` serves (`--supergraph` overrides it).
    #[serde(default)]
    pub supergraph: Option<std::path::PathBuf>,
    /// How often `junction gateway` and `junction serve` look whether their configuration file
    /// (or the gateway's supergraph) changed, to reload it as SIGHUP does; `0s` for SIGHUP only.
    #[serde(default = "default_watch_interval", with = "humantime_serde")]
    pub watch_interval: Duration,
    /// How long one subgraph request may take.
    #[serde(default = "default_subgraph_timeout", with = "humantime_serde")]
    pub subgraph_timeout: Duration,
    /// Settings of one subgraph, by its name in the supergraph (`[gateway.subgraphs.NAME]`).
    #[serde(default)]
    pub subgraphs: std::collections::BTreeMap<String, junction_router::SubgraphSettings>,
    #[serde(default)]
    pub limits: junction_federation::operation::Limits,
    #[serde(default)]
    pub cost: junction_federation::cost::CostConfig,
    /// Progressive-override labels to switch on (`percent(N)` labels are drawn per request).
    #[serde(default)]
    pub override_labels: Vec<String>,
    #[serde(default)]
    pub subscriptions: junction_router::SubscriptionConfig,
    /// JWT bearer tokens, accepted besides API keys when set.
    #[serde(default)]
    pub jwt: Option<junction_edge::auth::jwt::JwtConfig>,
    /// Requests per consumer; unlimited when unset.
    #[serde(default)]
    pub rate_limit: Option<junction_edge::rate_limit::RateLimitConfig>,
    #[serde(default)]
    pub http: junction_edge::layers::HttpConfig,
    #[serde(default)]
    pub oauth: junction_edge::auth::oauth::OAuthConfig,
    /// Opaque tokens checked with an external authorization server (RFC 7662).
    #[serde(default)]
    pub introspection: Option<junction_edge::auth::introspection::IntrospectionConfig>,
    #[serde(default)]
    pub persisted_queries: junction_router::persisted::PersistedQueriesConfig,
    /// How much memory each cache may take.
    #[serde(default)]
    pub caches: junction_edge::cache::CacheConfig,
    /// How long a verified API key is used without checking the database again (so also
    /// how long a revoked key may still work); `0s` checks every request.
    #[serde(default = "default_api_key_cache_ttl", with = "humantime_serde")]
    pub api_key_cache_ttl: Duration,
    /// REST routes passed through to upstream services.
    #[serde(default)]
    pub routes: Vec<junction_passthrough::RouteConfig>,
}

impl GatewayConfig {
    /// What deserializing cannot check: origins, routes.
    pub fn validate(&self) -> Result<(), String> {
        self.http.validate()?;
        junction_passthrough::validate_routes(&self.routes)
    }
}

fn default_watch_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_api_key_cache_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_subgraph_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default address")
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            shutdown_grace: default_shutdown_grace(),
            supergraph: None,
            watch_interval: default_watch_interval(),
            subgraph_timeout: default_subgraph_timeout(),
            subgraphs: std::collections::BTreeMap::new(),
            limits: junction_federation::operation::Limits::default(),
            cost: junction_federation::cost::CostConfig::default(),
            override_labels: Vec::new(),
            subscriptions: junction_router::SubscriptionConfig::default(),
            jwt: None,
            rate_limit: None,
            http: junction_edge::layers::HttpConfig::default(),
            oauth: junction_edge::auth::oauth::OAuthConfig::default(),
            introspection: None,
            persisted_queries: junction_router::persisted::PersistedQueriesConfig::default(),
            caches: junction_edge::cache::CacheConfig::default(),
            api_key_cache_ttl: default_api_key_cache_ttl(),
            routes: Vec::new(),
        }
    }
}
