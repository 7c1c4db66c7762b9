//! Route plugins: each wraps the route's service (the proxy innermost) in one more step,
//! configured by `plugins = [...]` in the route.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use ipnet::IpNet;
use junction_schema::Identity;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

use super::config::PluginConfig;
use super::problem;
use super::proxy::client_ip;
use crate::rate_limit::RateLimiter;
use crate::router::Authenticator;

pub type RouteService = BoxCloneSyncService<Request, Response, Infallible>;

/// What plugins of every route share.
pub struct Shared<'a> {
    pub route: &'a str,
    pub authenticator: Option<&'a Arc<dyn Authenticator>>,
    pub trusted_proxies: &'a Arc<[IpNet]>,
}

/// `inner` with `plugin` in front of it.
pub fn wrap(
    plugin: &PluginConfig,
    inner: RouteService,
    shared: &Shared<'_>,
) -> Result<RouteService, String> {
    Ok(match plugin {
        PluginConfig::Auth { hide_credentials } => {
            let authenticator = shared.authenticator.cloned().ok_or_else(|| {
                format!(
                    "gateway.routes[{}]: the auth plugin needs credentials to check \
                     (configure [gateway.jwt], or run `junction serve` for API keys)",
                    shared.route
                )
            })?;
            auth(inner, authenticator, *hide_credentials)
        }
        PluginConfig::RateLimit(config) => {
            let limiter = RateLimiter::new(config)
                .map_err(|e| format!("gateway.routes[{}]: {e}", shared.route))?;
            rate_limit(
                inner,
                Arc::new(limiter),
                Arc::from(shared.route),
                Arc::clone(shared.trusted_proxies),
            )
        }
        PluginConfig::Cors { origins } => {
            BoxCloneSyncService::new(crate::edge::cors(origins).layer(inner))
        }
    })
}

fn auth(
    inner: RouteService,
    authenticator: Arc<dyn Authenticator>,
    hide_credentials: bool,
) -> RouteService {
    BoxCloneSyncService::new(service_fn(move |mut request: Request| {
        let inner = inner.clone();
        let authenticator = Arc::clone(&authenticator);
        async move {
            let refusal = match authenticator.authenticate(request.headers()).await {
                Ok(Some(identity)) => {
                    if hide_credentials {
                        request.headers_mut().remove(header::AUTHORIZATION);
                    }
                    request.extensions_mut().insert(identity);
                    return inner.oneshot(request).await;
                }
                Ok(None) => "credentials required: send an API key or a token as \
                             `Authorization: Bearer ...`"
                    .to_owned(),
                Err(why) => why,
            };
            let mut response = problem::response(
                StatusCode::UNAUTHORIZED,
                &refusal,
                request.headers().get(crate::edge::REQUEST_ID),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Ok(response)
        }
    }))
}

fn rate_limit(
    inner: RouteService,
    limiter: Arc<RateLimiter>,
    route: Arc<str>,
    trusted_proxies: Arc<[IpNet]>,
) -> RouteService {
    BoxCloneSyncService::new(service_fn(move |request: Request| {
        let inner = inner.clone();
        let limiter = Arc::clone(&limiter);
        let consumer = match limiter.consumer(request.extensions().get::<Identity>()) {
            Some(consumer) => format!("{route}:{consumer}"),
            None => {
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip());
                match client_ip(request.headers(), peer, &trusted_proxies) {
                    Some(ip) => format!("{route}:{ip}"),
                    None => format!("{route}:unknown"),
                }
            }
        };
        async move {
            let decision = limiter.check(&consumer, 1).await;
            let mut response = if decision.allowed {
                inner.oneshot(request).await?
            } else {
                problem::response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests: slow down and try again after `Retry-After` seconds",
                    request.headers().get(crate::edge::REQUEST_ID),
                )
            };
            decision.set_headers(response.headers_mut());
            Ok(response)
        }
    }))
}
