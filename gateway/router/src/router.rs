//! The router's state: the supergraph, the subgraph executor, the caches, the limits and
//! policies each step of the [`crate::pipeline`] reads. No behaviour of its own beyond
//! choosing the progressive-override labels of a request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use apollo_compiler::ExecutableDocument;
use apollo_compiler::validation::Valid;
use ipnet::IpNet;
use junction_edge::auth::Authenticator;
use junction_edge::cache::{BoundedCache, CacheConfig};
use junction_edge::rate_limit::RateLimiter;
use junction_federation::operation::Limits;
use junction_federation::plan::QueryPlan;
use junction_federation::supergraph::{Labels, Supergraph};

use crate::config::SubscriptionConfig;
use crate::executor::http::SubgraphClient;
use crate::operation_slots::OperationSlots;
use crate::persisted::PersistedQueries;

pub struct GraphRouter {
    pub supergraph: Arc<Supergraph>,
    pub(crate) client: SubgraphClient,
    pub(crate) limits: Limits,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) plans: BoundedCache<[u8; 32], Arc<QueryPlan>>,
    /// Plans made at once, on the blocking pool: planning is CPU work that can take long on a
    /// hostile operation, so it never runs on the threads that serve connections, and no more
    /// of it runs at once than there are cores.
    pub(crate) planning: Arc<tokio::sync::Semaphore>,
    /// Validated documents by query text: parsing and validation run once per distinct query.
    pub(crate) documents: BoundedCache<Arc<str>, Arc<Valid<ExecutableDocument>>>,
    /// Every progressive-override label of the supergraph.
    pub(crate) override_labels: Labels,
    pub(crate) active_labels: Labels,
    pub(crate) subscriptions: SubscriptionConfig,
    pub(crate) slots: Arc<OperationSlots>,
    /// Proxies whose `X-Forwarded-For` names the client (rate limits by address).
    pub(crate) trusted_proxies: Arc<[IpNet]>,
    pub(crate) rate_limiter: Option<RateLimiter>,
    pub(crate) operation_limiters: HashMap<String, RateLimiter>,
    pub(crate) persisted: PersistedQueries,
    pub(crate) cost: junction_federation::cost::CostConfig,
}

/// `percent(25)` -> 25.0
fn percent(label: &str) -> Option<f64> {
    label
        .strip_prefix("percent(")?
        .strip_suffix(')')?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
}

impl GraphRouter {
    pub fn new(
        supergraph: Arc<Supergraph>,
        client: SubgraphClient,
        limits: Limits,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Self {
        Self {
            override_labels: supergraph.override_labels(),
            active_labels: Labels::new(),
            supergraph,
            client,
            limits,
            authenticator,
            plans: BoundedCache::new(CacheConfig::default().plans_bytes, 8 * 1024),
            planning: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            )),
            documents: BoundedCache::new(CacheConfig::default().documents_bytes, 32 * 1024),
            subscriptions: SubscriptionConfig::default(),
            slots: Arc::default(),
            trusted_proxies: Arc::from([]),
            rate_limiter: None,
            operation_limiters: HashMap::new(),
            persisted: PersistedQueries::default(),
            cost: junction_federation::cost::CostConfig::default(),
        }
    }

    /// Caches bounded as `config` says (the persisted queries' with their own constructor).
    pub fn with_caches(mut self, config: &CacheConfig) -> Self {
        self.plans = BoundedCache::new(config.plans_bytes, 8 * 1024);
        self.documents = BoundedCache::new(config.documents_bytes, 32 * 1024);
        self
    }

    /// Trusted documents only, when the configuration names a manifest.
    pub fn with_persisted_queries(mut self, persisted: PersistedQueries) -> Self {
        self.persisted = persisted;
        self
    }

    pub fn with_cost(mut self, cost: junction_federation::cost::CostConfig) -> Self {
        self.cost = cost;
        self
    }

    pub fn with_rate_limit(mut self, limiter: Option<RateLimiter>) -> Self {
        self.rate_limiter = limiter;
        self
    }

    /// Limits of their own for named operations.
    pub fn with_operation_limits(mut self, limiters: HashMap<String, RateLimiter>) -> Self {
        self.operation_limiters = limiters;
        self
    }

    pub fn with_subscriptions(mut self, config: SubscriptionConfig) -> Self {
        self.subscriptions = config;
        self
    }

    /// Whether an operation's cost is used: a maximum, or a rate limit counted in cost.
    pub(crate) fn cost_counts(&self) -> bool {
        self.cost.max.is_some()
            || self
                .rate_limiter
                .iter()
                .chain(self.operation_limiters.values())
                .any(RateLimiter::by_cost)
    }

    /// Proxies trusted to name the client in `X-Forwarded-For` (`[gateway.http]`).
    pub fn with_trusted_proxies(mut self, trusted: &[IpNet]) -> Self {
        self.trusted_proxies = Arc::from(trusted);
        self
    }

    /// The client's address as rate limits count it: the peer, or what a trusted proxy says.
    pub(crate) fn client_ip(
        &self,
        headers: &axum::http::HeaderMap,
        peer: Option<IpAddr>,
    ) -> Option<IpAddr> {
        junction_edge::layers::client_ip(headers, peer, &self.trusted_proxies)
    }

    /// Progressive-override labels always on (besides `percent(N)` labels, drawn per request).
    pub fn with_active_labels(mut self, labels: Labels) -> Self {
        self.active_labels = labels;
        self
    }

    /// The labels on for one request: configured ones, and `percent(N)` ones N% of the time.
    pub(crate) fn labels_for_request(&self) -> Labels {
        self.override_labels
            .iter()
            .filter(|label| {
                self.active_labels.contains(*label)
                    || percent(label).is_some_and(|p| rand::random::<f64>() * 100.0 < p)
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::percent;

    #[test]
    fn percent_labels() {
        assert_eq!(percent("percent(25)"), Some(25.0));
        assert_eq!(percent("percent( 2.5 )"), Some(2.5));
        assert_eq!(percent("percent(120)"), None);
        assert_eq!(percent("canary"), None);
    }
}
