//! `junction gateway --supergraph FILE`: the federation router alone, in front of any
//! Federation v2 subgraphs.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use junction_gateway::execute::SubgraphClient;
use junction_gateway::health;
use junction_gateway::jwt::JwtAuthenticator;
use junction_gateway::router::{Authenticator, GraphRouter};
use junction_gateway::supergraph::Supergraph;
use junction_schema::identity::IdentitySigner;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::commands::Failure;
use crate::config::Config;
use crate::shutdown::Shutdown;

pub async fn run(config: Config, supergraph: Option<PathBuf>) -> Result<(), Failure> {
    let Some(path) = supergraph.or_else(|| config.gateway.supergraph.clone()) else {
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
    let client = SubgraphClient::new(config.gateway.subgraph_timeout, signer)
        .map_err(|e| anyhow::anyhow!("cannot build the subgraph HTTP client: {e}"))?;
    // With `[gateway.jwt]`, every caller needs a valid token; without, the router is open.
    let authenticator: Option<Arc<dyn Authenticator>> = match &config.gateway.jwt {
        Some(jwt) => Some(Arc::new(
            JwtAuthenticator::new(jwt.clone()).context("configuring JWT authentication")?,
        )),
        None => None,
    };
    let router = Arc::new(
        GraphRouter::new(
            Arc::new(supergraph),
            client,
            config.gateway.limits.clone(),
            authenticator,
        )
        .with_active_labels(config.gateway.override_labels.iter().cloned().collect())
        .with_subscriptions(config.gateway.subscriptions.clone())
        .with_rate_limit(config.gateway.rate_limit.as_ref()),
    );
    let app = junction_gateway::edge::layer(
        router
            .routes()
            .merge(junction_playground::routes())
            .merge(health::routes(Vec::new())),
        &config.gateway.http,
    )
    .layer(TraceLayer::new_for_http());
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
        app,
        Shutdown::on_signal().wait(),
        config.gateway.shutdown_grace,
    )
    .await
    .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}
