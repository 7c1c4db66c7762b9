//! The HTTP clients the router's parts share: one TLS setup (ring, the webpki roots) and a
//! keep-alive client with a timeout.

use std::sync::Arc;
use std::time::Duration;

/// TLS to subgraphs and upstreams: ring, the webpki roots.
pub fn tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client for subgraphs and authorization servers: keep-alive, a timeout, TLS with the webpki roots.
pub fn plain_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}
