//! `junction gateway --supergraph FILE`: the federation router alone, in front of any
//! Federation v2 subgraphs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use junction_federation::supergraph::Supergraph;
use junction_gateway::execute::SubgraphClient;
use junction_gateway::jwt::JwtAuthenticator;
use junction_gateway::passthrough::{Passthrough, ProxyContext};
use junction_gateway::persisted::PersistedQueries;
use junction_gateway::rate_limit::RateLimiter;
use junction_gateway::router::{Authenticator, GraphRouter};
use junction_gateway::server::{CurrentSite, Site};
use junction_gateway::{edge, health};
use junction_schema::identity::IdentitySigner;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::commands::Failure;
use crate::config::Config;
use crate::shutdown::Shutdown;

pub async fn run(
    config: Config,
    supergraph: Option<PathBuf>,
    config_file: PathBuf,
    reload: impl Fn() -> Result<Config, Failure> + Send + Sync + 'static,
) -> Result<(), Failure> {
    let (site, subgraphs) = build(&config, supergraph.as_deref())?;
    // Requests take the site current when they arrive and finish on it; a reload swaps in a
    // new one for the requests after.
    let current = CurrentSite::new(site);
    let mut watched = vec![config_file];
    watched.extend(
        supergraph
            .clone()
            .or_else(|| config.gateway.supergraph.clone()),
    );
    tokio::spawn(reload_when_asked(
        current.clone(),
        supergraph,
        config.gateway.listen,
        reload,
        Watch {
            files: watched,
            every: config.gateway.watch_interval,
        },
    ));
    let listen = config.gateway.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr().context("listener address")?,
        subgraphs = %subgraphs.join(", "),
        "Junction is serving"
    );
    junction_gateway::server::serve(
        listener,
        current,
        Shutdown::on_signal().wait(),
        config.gateway.shutdown_grace,
    )
    .await
    .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Everything the router serves, from a configuration and the supergraph file; and the
/// subgraphs it found, for the log.
fn build(config: &Config, supergraph: Option<&Path>) -> Result<(Site, Vec<String>), Failure> {
    let Some(path) = supergraph
        .map(Path::to_path_buf)
        .or_else(|| config.gateway.supergraph.clone())
    else {
        return Err(Failure::Usage(
            "a supergraph is needed: --supergraph FILE (or gateway.supergraph)".into(),
        ));
    };
    let sdl = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Usage(format!("{}: cannot read: {e}", path.display())))?;
    let supergraph =
        Supergraph::parse(&sdl).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let subgraphs: Vec<String> = supergraph
        .graphs
        .values()
        .map(|g| format!("{} ({})", g.name, g.url))
        .collect();
    // Without a shared key there is nobody to sign for: third-party subgraphs do not check.
    let signer = config.identity.signing_key.clone().map(IdentitySigner::new);
    let client = SubgraphClient::new(config.gateway.subgraph_timeout, signer.clone())
        .map_err(|e| anyhow::anyhow!("cannot build the subgraph HTTP client: {e}"))?;
    // With `[gateway.jwt]`, every caller needs a valid token; without, the router is open.
    let authenticator: Option<Arc<dyn Authenticator>> = match &config.gateway.jwt {
        Some(jwt) => Some(Arc::new(
            JwtAuthenticator::new(jwt.clone()).context("configuring JWT authentication")?,
        )),
        None => None,
    };
    let routes = passthrough(config, authenticator.as_ref(), signer)?;
    let router = graph_router(config, supergraph, client, authenticator)?;
    Ok((
        front_door(config, router, health::routes(Vec::new()), routes),
        subgraphs,
    ))
}

/// The `[[gateway.routes]]`, with the router's authenticator and identity signer.
pub fn passthrough(
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
pub fn graph_router(
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
pub fn front_door(
    config: &Config,
    router: Arc<GraphRouter>,
    endpoints: Router,
    passthrough: Passthrough,
) -> Site {
    let own = edge::own_endpoints(
        router
            .routes()
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
        app: edge::request_ids(app).layer(TraceLayer::new_for_http()),
        routes,
        header_read_timeout: config.gateway.http.header_read_timeout,
    }
}

/// Files whose change reloads the router, looked at every `every` (never when zero).
struct Watch {
    files: Vec<PathBuf>,
    every: std::time::Duration,
}

/// What identifies a file's content cheaply: its length and modification time.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(u64, std::time::SystemTime)>> {
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

/// On SIGHUP, or when a watched file changes: the configuration and the supergraph read
/// again, and the router rebuilt from them; anything wrong keeps the running router. (The
/// listening address stays as started.)
async fn reload_when_asked(
    current: CurrentSite,
    supergraph: Option<PathBuf>,
    listen: std::net::SocketAddr,
    reload: impl Fn() -> Result<Config, Failure>,
    watch: Watch,
) {
    let (asked, mut asks) = tokio::sync::mpsc::channel::<&'static str>(1);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            let asked = asked.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let _ = asked.try_send("SIGHUP");
                }
            });
        }
        Err(_) => tracing::warn!("cannot listen for SIGHUP; reloads come from file changes only"),
    }
    if !watch.every.is_zero() {
        tokio::spawn(async move {
            let mut last = fingerprint(&watch.files);
            loop {
                tokio::time::sleep(watch.every).await;
                let now = fingerprint(&watch.files);
                if now != last {
                    last = now;
                    if asked.send("a file changed").await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    while let Some(why) = asks.recv().await {
        match reload().and_then(|config| {
            if config.gateway.listen != listen {
                tracing::warn!(listen = %config.gateway.listen, "a new listening address needs a restart");
            }
            build(&config, supergraph.as_deref())
        }) {
            Ok((site, subgraphs)) => {
                current.replace(site);
                tracing::info!(subgraphs = %subgraphs.join(", "), trigger = why, "configuration reloaded");
            }
            Err(failure) => {
                tracing::warn!(error = %failure, trigger = why, "configuration reload failed; the running configuration stays");
            }
        }
    }
}
