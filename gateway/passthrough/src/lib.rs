//! REST passthrough: `[[gateway.routes]]` send requests the router does not answer itself
//! to upstream services, through the route's plugins (auth, rate limits, CORS). The most
//! specific route whose path, host and method match takes a request; a path matched with
//! another method gets 405 and `Allow`, no match 404, both as problem documents.

mod config;
mod fast_path;
mod headers;
pub mod http1;
mod matcher;
pub mod metrics;
mod pace;
mod plugins;
mod proxy;
mod upstream;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tower::{ServiceExt, service_fn};

pub use config::{HeaderRules, PluginConfig, RouteConfig, validate_routes};
use matcher::PathPattern;
pub use plugins::RouteService;
pub use proxy::ProxyContext;
pub use upstream::PassiveHealth;

use junction_edge::auth::Authenticator;
use junction_edge::problem;

/// Every route, most specific first.
pub struct Passthrough {
    routes: Vec<Route>,
    /// Some route looks at the `Host`.
    by_host: bool,
}

struct Route {
    pattern: PathPattern,
    methods: Vec<Method>,
    /// Lower-case; `*.example.com` for subdomains.
    hosts: Vec<String>,
    service: RouteService,
    /// What the HTTP/1 fast path runs for it, when it can (not for CORS or TLS upstreams).
    fast: Option<FastRoute>,
}

/// A route as the HTTP/1 fast path runs it: the plugins in order, then the proxy.
struct FastRoute {
    plugins: Vec<Arc<plugins::Plugin>>,
    proxy: Arc<proxy::Proxy>,
}

impl Passthrough {
    pub fn new(
        configs: &[RouteConfig],
        authenticator: Option<&Arc<dyn Authenticator>>,
        context: ProxyContext,
    ) -> Result<Self, String> {
        validate_routes(configs)?;
        let mut routes = Vec::with_capacity(configs.len());
        for config in configs {
            let proxy = Arc::new(proxy::Proxy::new(config, context.clone())?);
            let forwarding = Arc::clone(&proxy);
            let mut service = RouteService::new(service_fn(move |request: Request| {
                let proxy = Arc::clone(&forwarding);
                async move { Ok(proxy.forward(request).await) }
            }));
            let shared = plugins::Shared {
                route: &config.name,
                authenticator,
                trusted_proxies: &context.trusted_proxies,
            };
            let plugins = config
                .plugins
                .iter()
                .map(|plugin| plugins::Plugin::new(plugin, &shared).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            for plugin in plugins.iter().rev() {
                service = plugin.wrap(service);
            }
            let fast = (proxy.plain_http() && plugins.iter().all(|p| p.runs_on_fast_path()))
                .then_some(FastRoute { plugins, proxy });
            routes.push(Route {
                pattern: config.pattern()?,
                methods: config.methods()?,
                hosts: config
                    .hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                service,
                fast,
            });
        }
        // Stable: among equally specific routes, the first configured wins.
        routes.sort_by_key(|route| std::cmp::Reverse(route.pattern.specificity()));
        let by_host = routes.iter().any(|route| !route.hosts.is_empty());
        Ok(Self { routes, by_host })
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes as one service, for the router's fallback.
    pub fn service(self: &Arc<Self>) -> RouteService {
        let passthrough = Arc::clone(self);
        RouteService::new(service_fn(move |request: Request| {
            let passthrough = Arc::clone(&passthrough);
            async move { Ok(passthrough.dispatch(request).await) }
        }))
    }

    /// The route the HTTP/1 fast path runs for a request, found as `dispatch` finds it;
    /// `None` when the general path is to answer (no route, another method, a route the
    /// fast path cannot run).
    fn fast_route(&self, method: &[u8], path: &str, host: Option<&[u8]>) -> Option<&FastRoute> {
        if !matcher::is_safe_path(path) {
            return None;
        }
        let host = self
            .by_host
            .then(|| host.and_then(|h| std::str::from_utf8(h).ok()))
            .flatten()
            .map(|h| host_name(h).to_ascii_lowercase());
        self.routes
            .iter()
            .filter(|route| {
                route.pattern.matches(path).is_some() && route.takes_host(host.as_deref())
            })
            .find(|route| {
                route.methods.is_empty()
                    || route
                        .methods
                        .iter()
                        .any(|m| m.as_str().as_bytes() == method)
            })
            .and_then(|route| route.fast.as_ref())
    }

    async fn dispatch(&self, request: Request) -> Response {
        let request_id = request.headers().get(junction_edge::layers::REQUEST_ID);
        if let Err(unsafe_path) = matcher::check_path(request.uri().path()) {
            return problem::response(
                StatusCode::BAD_REQUEST,
                &unsafe_path.to_string(),
                request_id,
            );
        }
        let host = self.by_host.then(|| request_host(&request)).flatten();
        let mut allowed: Vec<&Method> = Vec::new();
        for route in &self.routes {
            if route.pattern.matches(request.uri().path()).is_none()
                || !route.takes_host(host.as_deref())
            {
                continue;
            }
            if route.methods.is_empty() || route.methods.contains(request.method()) {
                return match route.service.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
            }
            allowed.extend(&route.methods);
        }
        if allowed.is_empty() {
            return problem::not_found(request_id);
        }
        let mut response = problem::response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} is not accepted here", request.method()),
            request_id,
        );
        let mut allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        allow.sort_unstable();
        allow.dedup();
        if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        response
    }
}

impl Route {
    fn takes_host(&self, host: Option<&str>) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        self.hosts
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => pattern == host,
            })
    }
}

/// The `Host` of the request, lower-case, without a port.
fn request_host(request: &Request) -> Option<String> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())?;
    Some(host_name(host).to_ascii_lowercase())
}

fn host_name(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_for(hosts: &[&str]) -> Route {
        Route {
            pattern: PathPattern::parse("/").unwrap(),
            methods: Vec::new(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            service: RouteService::new(service_fn(|_: Request| async {
                Ok(Response::new(axum::body::Body::empty()))
            })),
            fast: None,
        }
    }

    #[test]
    fn hosts_match_exactly_or_by_subdomain_wildcard() {
        let route = route_for(&["api.example.com", "*.tenants.example.com"]);
        assert!(route.takes_host(Some("api.example.com")));
        assert!(route.takes_host(Some("acme.tenants.example.com")));
        assert!(!route.takes_host(Some("tenants.example.com")));
        assert!(!route.takes_host(Some("eviltenants.example.com")));
        assert!(!route.takes_host(Some("other.example.com")));
        assert!(!route.takes_host(None));
        assert!(route_for(&[]).takes_host(None));
    }

    #[test]
    fn ports_are_not_part_of_the_host_name() {
        assert_eq!(host_name("api.example.com:8080"), "api.example.com");
        assert_eq!(host_name("api.example.com"), "api.example.com");
        assert_eq!(host_name("[::1]:4000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }
}
