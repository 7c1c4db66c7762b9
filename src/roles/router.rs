//! The router's address, assembled one way for every role that serves it (`junction serve`
//! and `junction gateway`): the same chain of credential checks, the same GraphQL router, the
//! same REST routes and edge layers. A setting of `[gateway]` is honoured by both or refused
//! by `junction config check`; it is never read by one and ignored by the other.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use junction_edge::auth::api_keys::ApiKeys;
use junction_edge::auth::introspection::Introspection;
use junction_edge::auth::jwt::JwtAuthenticator;
use junction_edge::auth::oauth::{ClientCredentials, TokenIssuer};
use junction_edge::auth::{AnyOf, Authenticator};
use junction_edge::health::{self, ReadinessProbe};
use junction_edge::layers;
use junction_edge::rate_limit::RateLimiter;
use junction_edge::server::Site;
use junction_federation::supergraph::Supergraph;
use junction_passthrough::{Passthrough, ProxyContext};
use junction_router::executor::http::SubgraphClient;
use junction_router::persisted::PersistedQueries;
use junction_router::router::GraphRouter;
use junction_schema::identity::IdentitySigner;
use junction_telemetry::Exporter;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::failure::Failure;

/// The credentials the router accepts, and the token endpoint it serves when it issues its own.
pub struct Authentication {
    /// `None`: nothing configured, the router is open (a stand-alone router before its
    /// subgraphs, which then decide).
    pub authenticator: Option<Arc<dyn Authenticator>>,
    pub tokens: Option<Arc<TokenIssuer>>,
}

impl Authentication {
    /// The one chain, first match decides: the router's own OAuth2 tokens (traded for API
    /// keys), JWTs of `[gateway.jwt]`, opaque tokens of `[gateway.introspection]`, API keys.
    /// `api_keys` is there when a database is in reach (`serve`).
    pub fn from_config(config: &Config, api_keys: Option<Arc<ApiKeys>>) -> Result<Self, Failure> {
        let mut chain: Vec<Arc<dyn Authenticator>> = Vec::new();
        let tokens = api_keys.as_ref().map(|keys| {
            Arc::new(TokenIssuer::new(
                config.gateway.oauth.issuer.clone(),
                config.gateway.oauth.token_ttl,
                Arc::clone(keys) as Arc<dyn ClientCredentials>,
            ))
        });
        if let Some(tokens) = &tokens {
            chain.push(Arc::clone(tokens) as _);
        }
        if let Some(jwt) = &config.gateway.jwt {
            chain.push(Arc::new(
                JwtAuthenticator::new(jwt.clone()).context("configuring JWT authentication")?,
            ));
        }
        if let Some(introspection) = &config.gateway.introspection {
            chain.push(Arc::new(
                Introspection::new(
                    introspection.clone(),
                    config.gateway.caches.introspection_bytes,
                )
                .map_err(|e| anyhow::anyhow!("configuring token introspection: {e}"))?,
            ));
        }
        if let Some(api_keys) = api_keys {
            chain.push(api_keys);
        }
        let authenticator: Option<Arc<dyn Authenticator>> = match chain.len() {
            0 => None,
            1 => chain.pop(),
            _ => Some(Arc::new(AnyOf(chain))),
        };
        Ok(Self {
            authenticator,
            tokens,
        })
    }
}

/// Everything the router's address serves over `supergraph`: GraphQL, the playground, health
/// (ready when every probe is), the token endpoint when there is one, `/metrics` unless it
/// has an address of its own, the REST routes.
pub fn site(
    config: &Config,
    supergraph: Supergraph,
    signer: Option<IdentitySigner>,
    authentication: &Authentication,
    probes: Vec<ReadinessProbe>,
    metrics: Option<&Arc<Exporter>>,
) -> Result<Site<Passthrough>, Failure> {
    let client = SubgraphClient::new(config.gateway.subgraph_timeout, signer.clone())
        .map_err(|e| anyhow::anyhow!("cannot build the subgraph HTTP client: {e}"))?;
    let authenticator = authentication.authenticator.as_ref();
    let routes = passthrough(config, authenticator, signer)?;
    let router = graph_router(config, supergraph, client, authenticator.cloned())?;
    let mut endpoints = health::routes(probes);
    if let Some(tokens) = &authentication.tokens {
        endpoints = endpoints.merge(Arc::clone(tokens).routes());
    }
    if let Some(scrape) = crate::roles::metrics::on_main_port(config, metrics) {
        endpoints = endpoints.merge(scrape);
    }
    Ok(front_door(config, router, endpoints, routes))
}

/// The `[[gateway.routes]]`, with the router's authenticator and identity signer.
fn passthrough(
    config: &Config,
    authenticator: Option<&Arc<dyn Authenticator>>,
    signer: Option<IdentitySigner>,
) -> Result<Passthrough, Failure> {
    Passthrough::new(
        &config.gateway.routes,
        authenticator,
        ProxyContext {
            signer,
            trusted_proxies: config.gateway.http.trusted_proxies.clone().into(),
        },
    )
    .map_err(Failure::Usage)
}

/// The router over `supergraph` with the `[gateway]` settings every deployment shares.
fn graph_router(
    config: &Config,
    supergraph: Supergraph,
    client: SubgraphClient,
    authenticator: Option<Arc<dyn Authenticator>>,
) -> Result<Arc<GraphRouter>, Failure> {
    let mut timeouts = std::collections::HashMap::new();
    for (name, settings) in &config.gateway.subgraphs {
        let Some(graph) = supergraph.graphs.values().find(|g| &g.name == name) else {
            return Err(Failure::Usage(format!(
                "gateway.subgraphs.{name}: the supergraph has no subgraph of that name"
            )));
        };
        if let Some(timeout) = settings.timeout {
            timeouts.insert(graph.url.clone(), timeout);
        }
    }
    let client = client.with_timeouts(timeouts);
    Ok(Arc::new(
        GraphRouter::new(
            Arc::new(supergraph),
            client,
            config.gateway.limits.clone(),
            authenticator,
        )
        .with_active_labels(config.gateway.override_labels.iter().cloned().collect())
        .with_cost(config.gateway.cost.clone())
        .with_subscriptions(config.gateway.subscriptions.clone())
        .with_rate_limit(
            config
                .gateway
                .rate_limit
                .as_ref()
                .map(RateLimiter::new)
                .transpose()
                .map_err(Failure::Usage)?,
        )
        .with_operation_limits(match &config.gateway.rate_limit {
            Some(limits) => RateLimiter::for_operations(limits).map_err(Failure::Usage)?,
            None => Default::default(),
        })
        .with_caches(&config.gateway.caches)
        .with_trusted_proxies(&config.gateway.http.trusted_proxies)
        .with_persisted_queries(
            PersistedQueries::new(
                &config.gateway.persisted_queries,
                config.gateway.caches.persisted_queries_bytes,
            )
            .map_err(|e| Failure::Usage(e.to_string()))?,
        ),
    ))
}

/// What the router's address serves: GraphQL, the playground and `endpoints`, then the REST
/// routes for every other path; behind request ids and request tracing. The REST routes
/// also go to the server's HTTP/1 fast path, which does the same per request.
fn front_door(
    config: &Config,
    router: Arc<GraphRouter>,
    endpoints: Router,
    passthrough: Passthrough,
) -> Site<Passthrough> {
    let own = layers::own_endpoints(
        junction_router::http::routes(router)
            .merge(junction_playground::routes())
            .merge(endpoints),
        &config.gateway.http,
    );
    // Added after the own endpoints' layers, so REST bodies are neither limited nor
    // compressed by them.
    let routes = (!passthrough.is_empty()).then(|| Arc::new(passthrough));
    let app = match &routes {
        Some(routes) => own.fallback_service(routes.service()),
        None => own,
    };
    Site {
        app: layers::request_ids(app).layer(TraceLayer::new_for_http()),
        fast_path: routes,
        header_read_timeout: config.gateway.http.header_read_timeout,
    }
}
