//! Forwarding one request to a route's upstream and its answer back, both bodies streamed.
//! Hop-by-hop headers are dropped in both directions (RFC 9110 section 7.6.1), the
//! `X-Forwarded-*` headers set, client-sent identity headers replaced by the router's
//! signature, and connections switching to a protocol the route allows (WebSocket by
//! default) tunnelled once the upstream agrees.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Version};
use axum::response::Response;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use junction_schema::Identity;
use junction_schema::identity::{IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER, IdentitySigner};

use super::config::RouteConfig;
use super::headers::{
    HeaderSink, HeaderTransform, Kind, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
    classify, connection_names, connection_options,
};
use super::matcher::{PathPattern, Rewrite};
pub(super) use super::pace::ClientClock;
use super::pace::{ClientBody, ClientBodyError};
use super::upstream::{Upstream, Upstreams};
use crate::metrics::RouteMetrics;
use junction_edge::problem;

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// The client's end of a connection, with its address as `X-Forwarded-For` gives it,
/// formatted once.
pub struct Peer {
    pub ip: IpAddr,
    address: HeaderValue,
}

impl Peer {
    pub fn new(ip: IpAddr) -> Self {
        // An address prints as ASCII digits, dots, colons and hex: always a header value.
        let address = HeaderValue::try_from(ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip, address }
    }
}

/// What every route's proxy shares.
#[derive(Clone, Default)]
pub struct ProxyContext {
    /// Signs the verified identity into upstream requests (when the route authenticates).
    pub signer: Option<IdentitySigner>,
    /// Peers whose `X-Forwarded-*` headers are believed (load balancers in front).
    pub trusted_proxies: Arc<[IpNet]>,
}

/// The upstream side of one route.
pub struct Proxy {
    name: Arc<str>,
    pattern: PathPattern,
    rewrite: Option<Rewrite>,
    upstreams: Upstreams,
    client: HttpClient,
    timeout: Duration,
    connect_timeout: Duration,
    body_read_timeout: Duration,
    retries: u32,
    preserve_host: bool,
    /// The protocols clients may switch to, lower-case.
    upgrades: Vec<String>,
    max_body_bytes: Option<u64>,
    request_headers: HeaderTransform,
    /// What an upstream's answer headers become for the client (both paths).
    pub(super) response_headers: HeaderTransform,
    context: ProxyContext,
    /// Requests by upstream and status, and their latency (both paths).
    pub(super) metrics: RouteMetrics,
}

/// What the forwarded request headers are made from, besides the client's.
pub(super) struct Forwarding<'a> {
    pub peer: Option<&'a Peer>,
    pub identity: Option<&'a Identity>,
    /// The protocol the client asks to switch to.
    pub upgrade: Option<&'a HeaderValue>,
    /// The sender frames the body and answers `Expect` itself (the fast path), so the
    /// client's `Content-Length` and `Expect` stay behind.
    pub framed_here: bool,
}

/// Why a request got no upstream answer to pass on.
pub(super) enum Failure {
    Unreachable(String),
    TimedOut,
    /// The client's body ran past the route's limit while it streamed.
    TooLarge,
    /// The path makes no upstream URI.
    BadPath(String),
    /// The client went away mid-request: nobody to answer.
    ClientGone,
    /// The client sent no part of its body for the route's `body_read_timeout`.
    ClientStalled,
    /// The client's body is not framed as its head says (a malformed chunk).
    BadBody(String),
}

/// The attempts at one request: which upstream is next, and what each outcome means for
/// the upstream's health and for the request.
pub(super) struct Attempts<'a> {
    proxy: &'a Proxy,
    /// Upstreams that failed this request (an answered request allocates nothing here).
    tried: Vec<usize>,
    left: u32,
    failure: Failure,
    /// When the request began: one clock read serves the first attempt's choice and
    /// deadline.
    started: Instant,
    deadline: Instant,
}

impl<'a> Attempts<'a> {
    /// The next upstream to try, and whether it is the last; `None` when all are spent.
    pub fn next(&mut self) -> Option<(usize, &'a Upstream, bool)> {
        self.left = self.left.checked_sub(1)?;
        let now = match self.tried.is_empty() {
            true => self.started,
            false => Instant::now(),
        };
        self.deadline = now + self.proxy.timeout;
        let index = self.proxy.upstreams.pick(&self.tried, now);
        Some((index, self.proxy.upstreams.get(index), self.left == 0))
    }

    /// Runs one attempt at upstream `index` within the route's timeout: the result to pass
    /// on, or `None` to try the next upstream. Failures count against the upstream's
    /// health, answers for it; the client's own failings (a stalled or malformed body)
    /// neither. The timeout is the upstream's: it runs from the attempt's start, or from
    /// the last bytes the `client` sent (the body's clock), never while the router waits on
    /// the client.
    pub async fn settle<R>(
        &mut self,
        index: usize,
        attempt: impl Future<Output = Tried<R>>,
        client: Option<&ClientClock>,
    ) -> Option<Result<R, Failure>> {
        let upstreams = &self.proxy.upstreams;
        let route = &self.proxy.name;
        let authority = &upstreams.get(index).authority;
        let last = self.left == 0;
        let timeout = self.proxy.timeout;
        let deadline = self.deadline;
        let timer = tokio::time::sleep_until(deadline.into());
        tokio::pin!(attempt, timer);
        let settled = loop {
            tokio::select! {
                biased;
                tried = &mut attempt => break Ok(tried),
                () = &mut timer => {
                    // Looked at only when the timer fires: no clock reads per body read.
                    let now = Instant::now();
                    let due = match client.map(ClientClock::last_heard) {
                        None => deadline,
                        // The client's turn: the upstream's time is not running.
                        Some(None) => now + timeout,
                        Some(Some(heard)) => deadline.max(heard + timeout),
                    };
                    if now >= due {
                        break Err(());
                    }
                    timer.as_mut().reset(due.into());
                }
            }
        };
        match settled {
            Ok(Tried::Answered(answer)) => {
                upstreams.succeeded(index);
                Some(Ok(answer))
            }
            Ok(Tried::Unavailable(answer)) => {
                upstreams.failed(index);
                self.tried.push(index);
                last.then_some(Ok(answer))
            }
            Ok(Tried::Failed(Failure::Unreachable(why))) => {
                upstreams.failed(index);
                self.tried.push(index);
                tracing::warn!(%route, upstream = %authority, error = %why, "upstream request failed");
                self.failure = Failure::Unreachable(why);
                None
            }
            Ok(Tried::Failed(other)) => Some(Err(other)),
            Err(()) => {
                upstreams.failed(index);
                self.tried.push(index);
                tracing::warn!(%route, upstream = %authority, timeout = ?self.proxy.timeout, "upstream timed out");
                self.failure = Failure::TimedOut;
                None
            }
        }
    }

    /// Why the request got no answer, once every attempt is spent.
    pub fn failure(self) -> Failure {
        self.failure
    }

    pub fn started(&self) -> Instant {
        self.started
    }
}

/// How one attempt at one upstream went.
pub(super) enum Tried<R> {
    Answered(R),
    /// 502, 503 or 504: passed on only when no other upstream may be tried.
    Unavailable(R),
    Failed(Failure),
}

impl Proxy {
    pub fn new(config: &RouteConfig, context: ProxyContext) -> Result<Self, String> {
        let pattern = config.pattern()?;
        let rewrite = config.rewrite(&pattern)?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let tls = junction_edge::clients::tls_config()?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let upstreams = Upstreams::new(&config.upstreams, config.passive_health.clone())?;
        let metrics = RouteMetrics::new(
            &config.name,
            (0..config.upstreams.len()).map(|index| upstreams.get(index).address.as_str()),
        );
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            pattern,
            rewrite,
            upstreams,
            client,
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            body_read_timeout: config.body_read_timeout,
            retries: config.retries,
            preserve_host: config.preserve_host,
            upgrades: config
                .upgrades
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            max_body_bytes: config.max_body_bytes,
            request_headers: HeaderTransform::new(&config.request_headers)?,
            response_headers: HeaderTransform::new(&config.response_headers)?,
            context,
            metrics,
        })
    }

    /// Sends `request` upstream (another upstream on failure, when it may be repeated)
    /// and answers with what came back, or a problem document (502, 504, 413).
    pub async fn forward(&self, request: Request) -> Response {
        let (mut parts, body) = request.into_parts();
        let request_id = parts
            .headers
            .get(junction_edge::layers::REQUEST_ID)
            .cloned();
        let Some(path) = self.upstream_path(parts.uri.path(), parts.uri.query()) else {
            return problem::not_found(request_id.as_ref());
        };
        let length = content_length(&parts.headers);
        if let Some(refused) = length.and_then(|l| self.refuse_length(l, request_id.as_ref())) {
            return refused;
        }
        let bodiless =
            length.is_none_or(|l| l == 0) && !parts.headers.contains_key(header::TRANSFER_ENCODING);
        let upgrade = self.upgrade_offer(parts.version, &parts.headers);
        let client_upgrade = upgrade
            .as_ref()
            .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| Peer::new(c.0.ip()));
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
        self.forward_request_headers(
            || {
                parts
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_ref(), value.as_bytes()))
            },
            &Forwarding {
                peer: peer.as_ref(),
                identity: parts.extensions.get::<Identity>(),
                upgrade: upgrade.as_ref(),
                framed_here: false,
            },
            &mut headers,
        );
        // A body can be sent once: only bodiless requests of idempotent methods are retried.
        let repeatable = is_repeatable(&parts.method, bodiless) && upgrade.is_none();
        let mut attempts = self.attempts(repeatable);
        // The client's pace, read by hyper's client on its connection's task.
        let clock = (!bodiless).then(|| Arc::new(ClientClock::new(attempts.started())));
        let body = match &clock {
            Some(clock) => Body::new(ClientBody::new(
                body,
                Arc::clone(clock),
                self.body_read_timeout,
            )),
            None => body,
        };
        let mut body = Some(match self.max_body_bytes {
            Some(limit) => Body::new(http_body_util::Limited::new(
                body,
                usize::try_from(limit).unwrap_or(usize::MAX),
            )),
            None => body,
        });
        let started = attempts.started();
        let mut tried = 0;
        let sent = loop {
            let Some((index, upstream, last)) = attempts.next() else {
                break Err(attempts.failure());
            };
            tried = index;
            let uri = match upstream.uri(&path) {
                Ok(uri) => uri,
                Err(e) => break Err(Failure::BadPath(e.to_string())),
            };
            let mut outgoing = Request::new(body.take().unwrap_or_default());
            *outgoing.method_mut() = parts.method.clone();
            *outgoing.uri_mut() = uri;
            *outgoing.version_mut() = Version::HTTP_11;
            *outgoing.headers_mut() = if last {
                std::mem::take(&mut headers)
            } else {
                headers.clone()
            };
            let attempt = async {
                match self.client.request(outgoing).await {
                    Ok(response) if is_unavailable(response.status()) => {
                        Tried::Unavailable(response)
                    }
                    Ok(response) => Tried::Answered(response),
                    Err(error) => Tried::Failed(
                        client_failure(&error)
                            .unwrap_or_else(|| Failure::Unreachable(describe(&error))),
                    ),
                }
            };
            if let Some(done) = attempts.settle(index, attempt, clock.as_deref()).await {
                break done;
            }
        };
        // A client gone mid-request gets no answer, on either path: nothing to count.
        let counted = !matches!(sent, Err(Failure::ClientGone));
        let answer = match sent {
            Ok(response) => self.answer(response, upgrade.zip(client_upgrade), request_id),
            Err(failure) => self.failure_response(failure, request_id.as_ref()),
        };
        if counted {
            self.metrics
                .record(tried, answer.status(), started.elapsed());
        }
        answer
    }

    /// What the upstream is asked to switch to: those of the client's `Upgrade` protocols
    /// this route tunnels (RFC 9110 section 7.8), or `None` to send the request on as a
    /// plain one (a server may ignore `Upgrade`). It counts only with `Connection: upgrade`
    /// and never in HTTP/1.0.
    fn upgrade_offer(&self, version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
        if version != Version::HTTP_11
            || !connection_names(headers).any(|n| n.eq_ignore_ascii_case(b"upgrade"))
        {
            return None;
        }
        let offered: Vec<&str> = headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|protocol| self.tunnels(protocol))
            .collect();
        match offered.is_empty() {
            true => None,
            false => HeaderValue::from_str(&offered.join(", ")).ok(),
        }
    }

    /// The route tunnels `protocol` (`name` or `name/version`).
    fn tunnels(&self, protocol: &str) -> bool {
        let name = protocol.split('/').next().unwrap_or_default().trim();
        self.upgrades.iter().any(|p| p.eq_ignore_ascii_case(name))
    }

    /// The path and query an upstream gets below its base path; `None` when the route's
    /// pattern does not take `path`.
    pub(super) fn upstream_path(&self, path: &str, query: Option<&str>) -> Option<String> {
        let matched = self.pattern.matches(path)?;
        let mut forwarded = match &self.rewrite {
            Some(rewrite) => rewrite.apply(&matched),
            None => path.to_owned(),
        };
        if let Some(query) = query {
            forwarded.push('?');
            forwarded.push_str(query);
        }
        Some(forwarded)
    }

    /// The 413 for a body of `length` bytes, when that is over the route's limit.
    pub(super) fn refuse_length(
        &self,
        length: u64,
        request_id: Option<&HeaderValue>,
    ) -> Option<Response> {
        let limit = self.max_body_bytes.filter(|limit| length > *limit)?;
        Some(too_large(limit, request_id))
    }

    /// The request headers an upstream gets, from `headers` as the client sent them, put
    /// into `sink`: hop-by-hop headers dropped (RFC 9110 section 7.6.1), `X-Forwarded-*`
    /// set (believed from trusted proxies only), client-sent identity headers replaced by
    /// the router's signature, the route's rules applied last (to the router's headers too).
    pub(super) fn forward_request_headers<'h, I>(
        &self,
        headers: impl Fn() -> I,
        forwarding: &Forwarding<'_>,
        sink: &mut impl HeaderSink,
    ) where
        I: Iterator<Item = (&'h [u8], &'h [u8])>,
    {
        let peer = forwarding.peer;
        let trusted = peer.is_some_and(|p| is_trusted(&self.context.trusted_proxies, p.ip));
        let mut connection_named: Vec<&[u8]> = Vec::new();
        let (mut forwarded_for, mut has_proto, mut has_host, mut host) = (None, false, false, None);
        for (name, value) in headers() {
            match classify(name) {
                Kind::HopByHop if name.eq_ignore_ascii_case(b"connection") => {
                    connection_named.extend(connection_options(value));
                }
                Kind::ForwardedFor => {
                    forwarded_for.get_or_insert(value);
                }
                Kind::ForwardedProto => has_proto = true,
                Kind::ForwardedHost => has_host = true,
                Kind::Host => {
                    host.get_or_insert(value);
                }
                _ => {}
            }
        }
        let rules = &self.request_headers;
        let mut emit = |name: &[u8], value: &[u8]| {
            if let Some(name) = rules.name_for(name) {
                sink.header(name, value);
            }
        };
        for (name, value) in headers() {
            let kept = match classify(name) {
                Kind::HopByHop | Kind::Identity | Kind::ForwardedFor => false,
                Kind::Forwarded | Kind::ForwardedProto | Kind::ForwardedHost => trusted,
                Kind::Host => self.preserve_host,
                Kind::ContentLength | Kind::Expect => !forwarding.framed_here,
                Kind::Other => true,
            };
            if kept
                && !connection_named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
            {
                emit(name, value);
            }
        }
        if let Some(peer) = peer {
            match forwarded_for.filter(|_| trusted) {
                Some(previous) => {
                    let value = format!("{}, {}", String::from_utf8_lossy(previous), peer.ip);
                    emit(X_FORWARDED_FOR.as_ref(), value.as_bytes());
                }
                None => emit(X_FORWARDED_FOR.as_ref(), peer.address.as_bytes()),
            }
        }
        if !(trusted && has_proto) {
            emit(X_FORWARDED_PROTO.as_ref(), b"http");
        }
        if !(trusted && has_host)
            && let Some(host) = host
        {
            emit(X_FORWARDED_HOST.as_ref(), host);
        }
        if let (Some(signer), Some(identity)) = (&self.context.signer, forwarding.identity) {
            // For this route's upstreams and this request id only: no subgraph takes it. The
            // body streams through unread and only headers are at hand here, so method, path
            // and body are left uncovered.
            let audience = junction_schema::identity::Audience::route(&self.name);
            let request_id = headers()
                .find(|(name, _)| {
                    name.eq_ignore_ascii_case(junction_edge::layers::REQUEST_ID.as_bytes())
                })
                .and_then(|(_, value)| std::str::from_utf8(value).ok())
                // As `HeaderValue::to_str` reads it upstream: visible ASCII only.
                .filter(|id| id.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)));
            let binding = junction_schema::identity::Binding {
                audience: &audience,
                method: None,
                target: None,
                body: None,
                request_id,
            };
            let (payload, signature) = signer.sign(identity, &binding, chrono::Utc::now());
            emit(IDENTITY_HEADER.as_bytes(), payload.as_bytes());
            emit(IDENTITY_SIGNATURE_HEADER.as_bytes(), signature.as_bytes());
        }
        if let Some(protocol) = forwarding.upgrade {
            emit(header::CONNECTION.as_ref(), b"upgrade");
            emit(header::UPGRADE.as_ref(), protocol.as_bytes());
        }
        for (name, value) in &rules.add {
            sink.header(name.as_ref(), value.as_bytes());
        }
    }

    /// The upstreams to try for one request, in turn: one, or for a `repeatable` request
    /// as many as the route's retries allow.
    pub(super) fn attempts(&self, repeatable: bool) -> Attempts<'_> {
        let left = if repeatable { self.retries + 1 } else { 1 };
        let started = Instant::now();
        Attempts {
            proxy: self,
            tried: Vec::new(),
            left,
            failure: Failure::TimedOut,
            started,
            deadline: started,
        }
    }

    /// The problem document for a request no upstream answered.
    pub(super) fn failure_response(
        &self,
        failure: Failure,
        request_id: Option<&HeaderValue>,
    ) -> Response {
        match failure {
            Failure::TimedOut => problem::response(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("the upstream did not answer within {:?}", self.timeout),
                request_id,
            ),
            Failure::Unreachable(why) => problem::response(
                StatusCode::BAD_GATEWAY,
                &format!("the upstream could not be reached: {why}"),
                request_id,
            ),
            Failure::TooLarge => too_large(self.max_body_bytes.unwrap_or_default(), request_id),
            Failure::BadPath(why) => problem::response(
                StatusCode::BAD_REQUEST,
                &format!("the path cannot be forwarded: {why}"),
                request_id,
            ),
            Failure::ClientGone => closing(problem::response(
                StatusCode::BAD_REQUEST,
                "the request ended before its body did",
                request_id,
            )),
            // As nginx answers a client past its `client_body_timeout`.
            Failure::ClientStalled => closing(problem::response(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "no part of the request body arrived within {:?}",
                    self.body_read_timeout
                ),
                request_id,
            )),
            Failure::BadBody(why) => closing(problem::response(
                StatusCode::BAD_REQUEST,
                &format!("the request body is malformed: {why}"),
                request_id,
            )),
        }
    }

    /// The upstream's response for the client: its own hop-by-hop headers dropped, the
    /// route's rules applied; a switch to a protocol offered (`switch`: what was offered,
    /// and the client's side) starts the tunnel. A switch to anything else, or unasked, is
    /// a 502: the connection would leave HTTP, and the route, behind.
    fn answer(
        &self,
        mut response: hyper::Response<hyper::body::Incoming>,
        switch: Option<(HeaderValue, hyper::upgrade::OnUpgrade)>,
        request_id: Option<HeaderValue>,
    ) -> Response {
        let mut upgrade = None;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let switched_to = response.headers().get(header::UPGRADE).cloned();
            let offered =
                |protocol: &HeaderValue| {
                    let protocol = protocol.to_str().unwrap_or_default().trim();
                    switch.as_ref().is_some_and(|(offer, _)| {
                        offer.to_str().unwrap_or_default().split(',').any(|o| {
                            o.trim().eq_ignore_ascii_case(protocol) && self.tunnels(protocol)
                        })
                    })
                };
            let Some((protocol, (_, client_upgrade))) = switched_to.filter(offered).zip(switch)
            else {
                tracing::warn!(route = %self.name, "the upstream switched protocols unasked");
                return problem::response(
                    StatusCode::BAD_GATEWAY,
                    "the upstream switched to a protocol it was not offered",
                    request_id.as_ref(),
                );
            };
            upgrade = Some(protocol);
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, self.name.clone()));
        }
        let (mut parts, body) = response.into_parts();
        let mut headers = HeaderMap::with_capacity(parts.headers.len());
        let sent = || {
            parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_ref(), value.as_bytes()))
        };
        self.response_headers.pass_on(
            sent,
            upgrade.as_ref().map(HeaderValue::as_bytes),
            &mut headers,
        );
        parts.headers = headers;
        Response::from_parts(parts, Body::new(body))
    }

    pub(super) fn preserves_host(&self) -> bool {
        self.preserve_host
    }

    pub(super) fn max_body_bytes(&self) -> Option<u64> {
        self.max_body_bytes
    }

    pub(super) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(super) fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// Every upstream is plain HTTP (the fast path speaks no TLS).
    pub(super) fn plain_http(&self) -> bool {
        self.upstreams.all_plain_http()
    }
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    junction_edge::layers::is_trusted(trusted, ip)
}

/// Copies bytes both ways between the client and the upstream once both have switched.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    route: Arc<str>,
) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%route, %error, "upgraded connection ended");
            }
        }
        Err(error) => tracing::warn!(%route, %error, "connection upgrade failed"),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A request that may go to another upstream after a failure: bodiless (a body is sent
/// once) and of an idempotent method.
pub(super) fn is_repeatable(method: &Method, bodiless: bool) -> bool {
    bodiless && is_idempotent(method)
}

/// RFC 9110 section 9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

pub(super) fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

pub(super) fn too_large(limit: u64, request_id: Option<&HeaderValue>) -> Response {
    closing(problem::response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is over this route's {limit} bytes"),
        request_id,
    ))
}

/// `refused`, saying the connection closes after it: the rest of the body stays unread, so
/// the connection cannot carry another request.
fn closing(mut refused: Response) -> Response {
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}

/// The client's doing, when hyper's client failed on the request body: past the route's
/// limit, stalled, malformed or cut off. `None`: the upstream's.
fn client_failure(error: &hyper_util::client::legacy::Error) -> Option<Failure> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return Some(Failure::TooLarge);
        }
        if let Some(failing) = cause.downcast_ref::<ClientBodyError>() {
            return Some(match failing {
                ClientBodyError::Stalled(_) => Failure::ClientStalled,
                ClientBodyError::Malformed(why) => Failure::BadBody(why.clone()),
                ClientBodyError::Broken(_) => Failure::ClientGone,
            });
        }
        source = cause.source();
    }
    None
}

fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {

    use super::*;

    fn proxy(extra: &str, trusted: &[&str]) -> Proxy {
        let config: RouteConfig = toml::from_str(&format!(
            "name = \"r\"\npath = \"/r\"\nupstreams = [\"http://10.0.0.9\"]\n{extra}"
        ))
        .unwrap();
        let context = ProxyContext {
            signer: None,
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
        };
        Proxy::new(&config, context).unwrap()
    }

    fn forwarded(
        proxy: &Proxy,
        sent: &[(&str, &str)],
        peer: &str,
        framed_here: bool,
    ) -> Vec<(String, String)> {
        let peer = Peer::new(peer.parse().unwrap());
        let forwarding = Forwarding {
            peer: Some(&peer),
            identity: None,
            upgrade: None,
            framed_here,
        };
        let sent = || sent.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        let mut wire = Vec::new();
        proxy.forward_request_headers(sent, &forwarding, &mut wire);
        let mut map = HeaderMap::new();
        proxy.forward_request_headers(sent, &forwarding, &mut map);
        let lines: Vec<(String, String)> = String::from_utf8(wire)
            .unwrap()
            .lines()
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        // Both sinks get the same headers, in the same order.
        let from_map: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let mut sorted = lines.clone();
        sorted.sort();
        let mut from_map_sorted = from_map;
        from_map_sorted.sort();
        assert_eq!(
            sorted
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect::<Vec<_>>(),
            from_map_sorted
        );
        lines
    }

    #[test]
    fn request_headers_lose_hops_forgeries_and_framing_and_gain_forwarding_and_rules() {
        let proxy = proxy(
            "[request_headers]\nrename = { x-old = \"x-new\" }\nremove = [\"x-debug\"]\n\
             add = { x-api = \"2\" }",
            &[],
        );
        let sent = [
            ("Host", "api.example.com"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            (IDENTITY_HEADER, "forged"),
            ("Content-Length", "2"),
            ("Expect", "100-continue"),
            ("Accept", "*/*"),
            ("X-Old", "a"),
            ("X-Debug", "1"),
        ];
        let got = forwarded(&proxy, &sent, "192.0.2.1", true);
        let expected = [
            ("Accept", "*/*"),
            ("x-new", "a"),
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "api.example.com"),
            ("x-api", "2"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, expected);
        // Sent on by a hop that does not frame the body itself, the length and the
        // expectation stay.
        let got = forwarded(&proxy, &sent, "192.0.2.1", false);
        assert!(
            got.contains(&("Content-Length".into(), "2".into())),
            "{got:?}"
        );
        assert!(
            got.contains(&("Expect".into(), "100-continue".into())),
            "{got:?}"
        );
    }

    #[test]
    fn forwarding_headers_from_a_trusted_proxy_are_kept_and_extended() {
        let proxy = proxy("preserve_host = true", &["10.0.0.0/8"]);
        let sent = [
            ("host", "api.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ];
        let got = forwarded(&proxy, &sent, "10.0.0.2", true);
        let value = |name: &str| {
            got.iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(value("host"), vec!["api.example.com"], "preserved");
        assert_eq!(value("x-forwarded-for"), vec!["203.0.113.9, 10.0.0.2"]);
        assert_eq!(value("x-forwarded-proto"), vec!["https"]);
        assert_eq!(value("x-forwarded-host"), vec!["api.example.com"]);
    }

    #[test]
    fn only_idempotent_methods_are_repeatable() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(is_idempotent(&method), "{method}");
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&method), "{method}");
        }
    }
}
