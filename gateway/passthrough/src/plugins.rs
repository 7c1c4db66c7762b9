//! Route plugins, configured by `plugins = [...]` in the route: on the general path each
//! wraps the route's service (the proxy innermost) in one more step; the HTTP/1 fast path
//! calls the same checks in the same order.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use ipnet::IpNet;
use junction_schema::Identity;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};
use tower_http::cors::CorsLayer;

use super::config::PluginConfig;
use junction_edge::auth::{self, Authenticator};
use junction_edge::problem;
use junction_edge::rate_limit::{Decision, RateLimiter};

pub type RouteService = BoxCloneSyncService<Request, Response, Infallible>;

/// What plugins of every route share.
pub struct Shared<'a> {
    pub route: &'a str,
    pub authenticator: Option<&'a Arc<dyn Authenticator>>,
    pub trusted_proxies: &'a Arc<[IpNet]>,
}

/// One route plugin, built once.
pub enum Plugin {
    Auth(Auth),
    RateLimit(RateLimit),
    Cors(CorsLayer),
}

impl Plugin {
    pub fn new(plugin: &PluginConfig, shared: &Shared<'_>) -> Result<Self, String> {
        Ok(match plugin {
            PluginConfig::Auth { hide_credentials } => {
                let authenticator = shared.authenticator.cloned().ok_or_else(|| {
                    format!(
                        "gateway.routes[{}]: the auth plugin needs credentials to check \
                         (configure [gateway.jwt], or run `junction serve` for API keys)",
                        shared.route
                    )
                })?;
                Self::Auth(Auth {
                    authenticator,
                    hide_credentials: *hide_credentials,
                })
            }
            PluginConfig::RateLimit(config) => Self::RateLimit(RateLimit {
                limiter: RateLimiter::new(config)
                    .map_err(|e| format!("gateway.routes[{}]: {e}", shared.route))?,
                route: Arc::from(shared.route),
                trusted_proxies: Arc::clone(shared.trusted_proxies),
            }),
            PluginConfig::Cors { origins } => Self::Cors(junction_edge::layers::cors(origins)),
        })
    }

    /// The HTTP/1 fast path runs it (CORS answers preflights itself: the general path's).
    pub fn runs_on_fast_path(&self) -> bool {
        !matches!(self, Self::Cors(_))
    }

    /// `inner` with this plugin in front of it.
    pub fn wrap(self: &Arc<Self>, inner: RouteService) -> RouteService {
        if let Self::Cors(cors) = &**self {
            return BoxCloneSyncService::new(cors.clone().layer(inner));
        }
        let plugin = Arc::clone(self);
        BoxCloneSyncService::new(service_fn(move |request: Request| {
            let inner = inner.clone();
            let plugin = Arc::clone(&plugin);
            async move { plugin.around(request, inner).await }
        }))
    }

    async fn around(
        &self,
        mut request: Request,
        inner: RouteService,
    ) -> Result<Response, Infallible> {
        match self {
            Self::Auth(auth) => match auth.identify(request.headers_mut()).await {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.oneshot(request).await
                }
                Err(refused) => Ok(refused),
            },
            Self::RateLimit(limit) => {
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip());
                let decision = limit
                    .check(
                        request.extensions().get::<Identity>(),
                        request.headers(),
                        peer,
                    )
                    .await;
                let mut response = if decision.allowed {
                    inner.oneshot(request).await?
                } else {
                    RateLimit::refusal(request.headers().get(junction_edge::layers::REQUEST_ID))
                };
                decision.set_headers(response.headers_mut());
                Ok(response)
            }
            Self::Cors(_) => inner.oneshot(request).await,
        }
    }
}

/// `auth`: a credential is required, and its identity goes upstream signed.
pub struct Auth {
    authenticator: Arc<dyn Authenticator>,
    hide_credentials: bool,
}

impl Auth {
    /// The caller's identity, or the 401 to answer.
    pub async fn identify(&self, headers: &mut HeaderMap) -> Result<Identity, Response> {
        let refusal = match auth::require(self.authenticator.as_ref(), headers).await {
            Ok(identity) => {
                if self.hide_credentials {
                    headers.remove(header::AUTHORIZATION);
                }
                return Ok(identity);
            }
            Err(refusal) => refusal,
        };
        let mut response = problem::response(
            refusal.status(),
            &refusal.to_string(),
            headers.get(junction_edge::layers::REQUEST_ID),
        );
        if refusal.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Err(response)
    }
}

/// `rate_limit`: per consumer (the identity's, else the client's address) on this route.
pub struct RateLimit {
    limiter: RateLimiter,
    route: Arc<str>,
    trusted_proxies: Arc<[IpNet]>,
}

impl RateLimit {
    pub async fn check(
        &self,
        identity: Option<&Identity>,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Decision {
        let client = junction_edge::layers::client_ip(headers, peer, &self.trusted_proxies);
        let consumer = format!(
            "{}:{}",
            self.route,
            self.limiter.consumer_of(identity, client)
        );
        let decision = self.limiter.check(&consumer, 1).await;
        if !decision.allowed {
            junction_edge::metrics::rate_limited(junction_edge::metrics::Door::Rest);
        }
        decision
    }

    /// The 429 for a refused request (the decision adds its headers).
    pub fn refusal(request_id: Option<&HeaderValue>) -> Response {
        problem::response(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests: slow down and try again after `Retry-After` seconds",
            request_id,
        )
    }
}
