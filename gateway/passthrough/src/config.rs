//! `[[gateway.routes]]`: REST routes passed through to upstream services.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::matcher::{PathPattern, Rewrite};
use super::upstream::PassiveHealth;
use junction_edge::rate_limit::RateLimitConfig;

/// One route: which requests it takes, where they go, what happens on the way.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in logs, metrics and rate-limit keys.
    pub name: String,
    /// `/api/orders` or `/shops/{shop}/orders`: this path and everything below it.
    pub path: String,
    /// Methods taken (any when empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// `Host` names taken (any when empty); `*.example.com` takes subdomains.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Base URLs (`http://10.0.0.5:8080`, `https://orders.internal/v1`), used in turn.
    pub upstreams: Vec<String>,
    /// Replaces the matched part of the path: `/v2/orders/{id}`, or `/` to strip it.
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Send the client's `Host` instead of the upstream's.
    #[serde(default)]
    pub preserve_host: bool,
    /// The protocols a client may switch this route's connections to (`Upgrade`), which
    /// are then tunnelled once the upstream agrees. Requests inside a tunnel escape the
    /// route's rules, so only protocols that carry no HTTP requests: never `h2c`.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// Until the upstream's response headers arrive (bodies stream without a limit),
    /// counted while the router waits on the upstream, not on a client sending its body.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The longest wait for the next part of a request body (nginx's
    /// `client_body_timeout`): a client sending nothing for this long is answered 408, and
    /// is not the upstream's failure.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Further attempts on another upstream, for idempotent methods only.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The largest request body taken (unlimited when unset; bodies stream).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub request_headers: HeaderRules,
    #[serde(default)]
    pub response_headers: HeaderRules,
    #[serde(default)]
    pub passive_health: PassiveHealth,
    /// Run in order, the first outermost.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
}

/// Header changes, applied as rename, remove, then add.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderRules {
    /// Set these headers, replacing any value already there.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// `old = "new"`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

/// What a route runs before the upstream.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum PluginConfig {
    /// Credentials required (the router's authenticators); the verified identity is signed
    /// into the upstream request.
    Auth {
        /// Keep the client's `Authorization` from the upstream, which gets the signed
        /// identity instead.
        #[serde(default = "yes")]
        hide_credentials: bool,
    },
    /// Requests per consumer on this route: the identity when `auth` ran before, else the
    /// client's address.
    RateLimit(RateLimitConfig),
    /// Browser calls from these origins (`["*"]` for any).
    Cors { origins: Vec<String> },
}

fn yes() -> bool {
    true
}

fn default_upgrades() -> Vec<String> {
    vec!["websocket".to_owned()]
}

/// Upgrades to these carry HTTP requests, which a tunnel would let past the route.
const HTTP_PROTOCOLS: &[&str] = &["h2c", "h2", "http"];

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_retries() -> u32 {
    1
}

/// Paths the router itself answers; a route there would never be reached.
const RESERVED: &[&str] = &[
    "/graphql",
    "/health",
    "/oauth",
    "/.well-known",
    "/playground",
    "/favicon.ico",
    "/metrics",
    "/dashboard",
];

impl RouteConfig {
    pub fn pattern(&self) -> Result<PathPattern, String> {
        PathPattern::parse(&self.path).map_err(|e| self.error(&format!("path: {e}")))
    }

    pub fn rewrite(&self, pattern: &PathPattern) -> Result<Option<Rewrite>, String> {
        self.rewrite
            .as_deref()
            .map(|template| Rewrite::parse(template, pattern))
            .transpose()
            .map_err(|e| self.error(&format!("rewrite: {e}")))
    }

    pub fn methods(&self) -> Result<Vec<Method>, String> {
        self.methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| self.error(&format!("methods: {m:?} is not an HTTP method")))
            })
            .collect()
    }

    /// Everything wrong with the route, as `gateway.routes[name]: reason`.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err(format!(
                "gateway.routes: the route for {:?} needs a name",
                self.path
            ));
        }
        let pattern = self.pattern()?;
        let shown = pattern.to_string();
        if let Some(reserved) = RESERVED
            .iter()
            .find(|r| shown == **r || shown.starts_with(&format!("{r}/")) || shown == "/")
        {
            return Err(self.error(&format!(
                "path {shown}: the router answers {reserved} itself; pick another prefix"
            )));
        }
        self.rewrite(&pattern)?;
        self.methods()?;
        if self.upstreams.is_empty() {
            return Err(self.error("upstreams: at least one upstream URL is needed"));
        }
        for upstream in &self.upstreams {
            super::upstream::Upstream::parse(upstream)
                .map_err(|e| self.error(&format!("upstreams: {e}")))?;
        }
        for protocol in &self.upgrades {
            let name = protocol.split('/').next().unwrap_or_default();
            if HTTP_PROTOCOLS.iter().any(|p| p.eq_ignore_ascii_case(name)) {
                return Err(self.error(&format!(
                    "upgrades: {protocol:?} carries HTTP requests, which a tunnel would let \
                     past the route's rules; it is never tunnelled"
                )));
            }
            if protocol.is_empty() || protocol.contains('/') || !protocol.bytes().all(is_tchar) {
                return Err(self.error(&format!(
                    "upgrades: {protocol:?} is not a protocol name (as in `Upgrade: websocket`)"
                )));
            }
        }
        for host in &self.hosts {
            if host.is_empty() || host.contains(['/', ' ', ':']) {
                return Err(self.error(&format!("hosts: {host:?} is not a host name")));
            }
        }
        for (section, rules) in [
            ("request_headers", &self.request_headers),
            ("response_headers", &self.response_headers),
        ] {
            rules
                .validate()
                .map_err(|e| self.error(&format!("{section}: {e}")))?;
        }
        for (index, plugin) in self.plugins.iter().enumerate() {
            if let PluginConfig::RateLimit(limit) = plugin
                && (limit.unit != junction_edge::rate_limit::RateUnit::Requests
                    || !limit.operations.is_empty())
            {
                return Err(self.error(
                    "plugins.rate_limit: a REST route counts requests (unit = \"requests\", \
                     no operations)",
                ));
            }
            if let PluginConfig::Cors { origins } = plugin {
                junction_edge::layers::validate_origins(origins)
                    .map_err(|e| self.error(&format!("plugins.cors: {e}")))?;
                // A preflight carries no credentials: nothing may refuse it before CORS.
                if index != 0 {
                    return Err(self.error("plugins: cors must come first"));
                }
            }
        }
        if self.timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.body_read_timeout.is_zero()
        {
            return Err(
                self.error("timeout, connect_timeout and body_read_timeout must be above zero")
            );
        }
        Ok(())
    }

    fn error(&self, message: &str) -> String {
        format!("gateway.routes[{}]: {message}", self.name)
    }
}

/// RFC 9110 section 5.6.2.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

impl HeaderRules {
    fn validate(&self) -> Result<(), String> {
        let names = self
            .add
            .keys()
            .chain(&self.remove)
            .chain(self.rename.keys())
            .chain(self.rename.values());
        for name in names {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
        }
        for (name, value) in &self.add {
            HeaderValue::from_str(value)
                .map_err(|_| format!("the value of {name} is not a header value"))?;
        }
        Ok(())
    }
}

/// Two routes the router could never tell apart.
pub fn validate_routes(routes: &[RouteConfig]) -> Result<(), String> {
    for (index, route) in routes.iter().enumerate() {
        route.validate()?;
        if routes[..index].iter().any(|r| r.name == route.name) {
            return Err(format!(
                "gateway.routes[{}]: two routes have this name",
                route.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(toml_text: &str) -> Result<RouteConfig, String> {
        let route: RouteConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        route.validate().map(|()| route)
    }

    #[test]
    fn a_full_route_reads_with_its_plugins_in_order() {
        let route = route(
            r#"
            name = "orders"
            path = "/api/orders/{id}"
            methods = ["get", "PUT"]
            hosts = ["api.example.com"]
            upstreams = ["http://127.0.0.1:8081", "https://orders.internal/v1"]
            rewrite = "/v2/orders/{id}"
            timeout = "5s"
            retries = 2
            request_headers = { add = { x-api-version = "2" }, remove = ["x-debug"], rename = { x-old = "x-new" } }
            plugins = [
              { name = "cors", origins = ["https://app.example.com"] },
              { name = "auth" },
              { name = "rate_limit", requests_per_second = 10, burst = 5 },
            ]
            "#,
        )
        .unwrap();
        assert_eq!(route.methods().unwrap(), vec![Method::GET, Method::PUT]);
        assert_eq!(route.timeout, Duration::from_secs(5));
        assert!(matches!(&route.plugins[0], PluginConfig::Cors { origins } if origins.len() == 1));
        assert_eq!(
            route.plugins[1],
            PluginConfig::Auth {
                hide_credentials: true
            }
        );
        assert!(matches!(&route.plugins[2], PluginConfig::RateLimit(c) if c.burst == 5));
        assert_eq!(route.passive_health, PassiveHealth::default());
        assert_eq!(route.upgrades, ["websocket"], "WebSocket alone by default");
        assert_eq!(route.body_read_timeout, Duration::from_secs(30));
    }

    #[test]
    fn mistakes_are_named_with_the_route() {
        let base = "name = \"r\"\nupstreams = [\"http://127.0.0.1:1\"]\n";
        for (extra, expected) in [
            (
                "path = \"/graphql/x\"",
                "the router answers /graphql itself",
            ),
            ("path = \"/\"", "the router answers"),
            ("path = \"api\"", "must start with '/'"),
            (
                "path = \"/a\"\nrewrite = \"/b/{id}\"",
                "`{id}` is not captured",
            ),
            (
                "path = \"/a\"\nmethods = [\"GE T\"]",
                "is not an HTTP method",
            ),
            (
                "path = \"/a\"\nhosts = [\"a.com:80\"]",
                "is not a host name",
            ),
            (
                "path = \"/a\"\nrequest_headers = { add = { \"bad header\" = \"1\" } }",
                "is not a header name",
            ),
            (
                "path = \"/a\"\nplugins = [{ name = \"cors\", origins = [\"bad\\norigin\"] }]",
                "is not an origin",
            ),
            (
                "path = \"/a\"\nplugins = [{ name = \"magic\" }]",
                "unknown variant `magic`",
            ),
            (
                "path = \"/a\"\nplugins = [{ name = \"auth\", level = 3 }]",
                "unknown field `level`",
            ),
            (
                "path = \"/a\"\nplugins = [{ name = \"auth\" }, { name = \"cors\", origins = [\"*\"] }]",
                "cors must come first",
            ),
            (
                "path = \"/a\"\nupgrades = [\"websocket\", \"h2c\"]",
                "upgrades: \"h2c\" carries HTTP requests",
            ),
            (
                "path = \"/a\"\nupgrades = [\"HTTP/2.0\"]",
                "carries HTTP requests",
            ),
            (
                "path = \"/a\"\nupgrades = [\"web socket\"]",
                "is not a protocol name",
            ),
            ("path = \"/a\"\nupgrades = [\"\"]", "is not a protocol name"),
        ] {
            let error = route(&format!("{base}{extra}")).unwrap_err();
            assert!(error.contains(expected), "{extra}: {error}");
        }
        let error = route("name = \"r\"\npath = \"/a\"\nupstreams = []").unwrap_err();
        assert!(
            error.contains("gateway.routes[r]: upstreams: at least one"),
            "{error}"
        );
        let error = route("name = \"r\"\npath = \"/a\"\nupstreams = [\"ftp://x\"]").unwrap_err();
        assert!(error.contains("gateway.routes[r]: upstreams:"), "{error}");
    }

    /// The route `junction.example.toml` shows (commented out there, as routes need real
    /// upstreams) reads and validates, every field of it.
    #[test]
    fn the_example_files_route_is_valid() {
        let example = include_str!("../../../junction.example.toml");
        let start = example
            .find("# [[gateway.routes]]\n")
            .expect("the example route");
        let route: Vec<&str> = example[start..]
            .lines()
            .skip(1)
            .take_while(|line| line.starts_with('#'))
            .map(|line| line.strip_prefix("# ").unwrap_or(&line[1..]))
            .collect();
        let route = route.join("\n");
        let parsed: RouteConfig = toml::from_str(&route).expect(&route);
        parsed.validate().unwrap();
        assert_eq!(parsed.upgrades, ["websocket"]);
        assert_eq!(parsed.body_read_timeout, Duration::from_secs(30));
    }

    #[test]
    fn route_names_are_unique() {
        let one =
            route("name = \"r\"\npath = \"/a\"\nupstreams = [\"http://127.0.0.1:1\"]").unwrap();
        let error = validate_routes(&[one.clone(), one]).unwrap_err();
        assert!(error.contains("two routes have this name"), "{error}");
    }
}
