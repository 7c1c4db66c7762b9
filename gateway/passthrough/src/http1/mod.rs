//! The HTTP/1.1 fast path of REST routes. One task per client connection reads a request,
//! runs the route's plugins, forwards it on a kept-alive upstream connection and streams the
//! answer back: no other task, channel or service stack in between, as nginx does it in its
//! event loop. Route matching, header rules, plugins, retries and passive health are the
//! general path's own (`Passthrough`, `Proxy`, `Plugin`), only the wire work is here.
//!
//! A request this path does not take (the router's own endpoints, upgrades, HTTP/1.0, an
//! unusual head, CORS routes, TLS upstreams) hands the connection, with the bytes already
//! read, to hyper's server, which serves the rest of it.

mod body;
#[cfg(test)]
mod differential;
#[cfg(test)]
mod properties;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::http::header::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use self::body::{BodyError, Framing, Pace};
use self::wire::{Headers, Parse, RawRequest, RequestHead, ResponseHead};
use super::headers::{HeaderSink, connection_names};
use super::plugins::{Plugin, RateLimit};
use super::proxy::{Failure, Forwarding, Peer, Proxy, Tried, is_repeatable, is_unavailable};
use super::upstream::Upstream;
use super::{FastRoute, Passthrough};
use crate::pace::ClientClock;
use crate::upstream::pool::{self, Connection};
use junction_edge::layers::{self, REQUEST_ID};
use junction_edge::problem;
use junction_edge::rate_limit::Decision;
use junction_edge::server::{Served, StopWatch};
use junction_schema::Identity;

/// The longest request head taken here; a longer one goes to the general server, which
/// refuses it.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
const READ_SIZE: usize = 8 * 1024;
/// Buffers larger than this (grown by a body) are let go between requests.
const MAX_IDLE_BUFFER: usize = 32 * 1024;

/// Serves requests on `stream` for as long as each is one for a fast route of the current
/// `routes`. A server stopping ends the connection between requests, and so does waiting
/// longer than `head_timeout` for a request head (idle, or sent too slowly), as on hyper's.
pub async fn serve(
    stream: &mut TcpStream,
    peer: SocketAddr,
    routes: impl Fn() -> Option<Arc<Passthrough>>,
    stop: &StopWatch,
    head_timeout: Duration,
) -> Served {
    let peer = Peer::new(peer.ip());
    let mut buffer = BytesMut::with_capacity(READ_SIZE);
    let mut out = Vec::with_capacity(READ_SIZE);
    // One timer for the connection's life, moved on only when it fires: between requests
    // the connection just notes when it began to wait, instead of re-arming a timer.
    let mut waiting_since = Instant::now();
    let head_deadline = tokio::time::sleep(head_timeout);
    tokio::pin!(head_deadline);
    loop {
        let raw = loop {
            match RawRequest::parse(&buffer) {
                Parse::Complete(raw) => break raw,
                Parse::Elsewhere => return Served::HandOff(buffer),
                Parse::Refused(refusal) => {
                    let mut exchange = Exchange {
                        client: stream,
                        buffer: &mut buffer,
                        out: &mut out,
                        peer: &peer,
                        stop,
                        request_id: None,
                    };
                    // The answer carries a new request id; the connection closes after it.
                    exchange.answer(refusal.response(None), &[], false).await;
                    return Served::Closed;
                }
                Parse::Partial if buffer.len() > MAX_REQUEST_HEAD => {
                    return Served::HandOff(buffer);
                }
                Parse::Partial => {}
            }
            buffer.reserve(READ_SIZE);
            let idle = buffer.is_empty();
            let read = tokio::select! {
                read = stream.read_buf(&mut buffer) => read,
                // Idle between requests: the only time a stopping server may close it.
                () = stop.stopped(), if idle => return Served::Closed,
                () = &mut head_deadline => {
                    let due = waiting_since + head_timeout;
                    if Instant::now() >= due {
                        return Served::Closed;
                    }
                    head_deadline.as_mut().reset(due.into());
                    continue;
                }
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Served::Closed;
            }
        };
        let Some(routes) = routes() else {
            return Served::HandOff(buffer);
        };
        let Some(route) = routes.fast_route(
            raw.method(&buffer),
            raw.path(&buffer),
            raw.header(&buffer, "host"),
        ) else {
            return Served::HandOff(buffer);
        };
        let Some(head) = raw.take(&mut buffer) else {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return Served::Closed;
        };
        let span = tracing::debug_span!(
            "request",
            method = %head.method,
            uri = %head.target(),
            version = "HTTP/1.1",
        );
        let mut exchange = Exchange {
            client: stream,
            buffer: &mut buffer,
            out: &mut out,
            peer: &peer,
            stop,
            request_id: None,
        };
        let keep_alive = exchange.run(route, head).instrument(span).await;
        if !keep_alive || stop.is_stopping() {
            return Served::Closed;
        }
        waiting_since = Instant::now();
        // A large body grew them: an idle connection keeps only what a head needs.
        if buffer.is_empty() && buffer.capacity() > MAX_IDLE_BUFFER {
            buffer = BytesMut::with_capacity(READ_SIZE);
        }
        if out.capacity() > MAX_IDLE_BUFFER {
            out = Vec::with_capacity(READ_SIZE);
        }
    }
}

/// One request on a client connection.
struct Exchange<'c> {
    client: &'c mut TcpStream,
    /// What the client sent past the request head.
    buffer: &'c mut BytesMut,
    /// Bytes to write, reused across requests.
    out: &'c mut Vec<u8>,
    peer: &'c Peer,
    /// Looked at as each answer is written: a stopping server's answers say it closes.
    stop: &'c StopWatch,
    /// The client's, or a new one.
    request_id: Option<HeaderValue>,
}

impl Exchange<'_> {
    /// Answers the request; whether the connection can take another.
    async fn run(&mut self, route: &FastRoute, head: RequestHead) -> bool {
        // Until the body is read, a refusal cannot leave the connection open.
        let reusable = head.keep_alive && !head.framing.has_body();
        // Plugins read headers by name: their routes get a map; others go without.
        let mut map = match route.plugins.is_empty() {
            true => None,
            false => match head.headers.to_map() {
                Some(map) => Some(map),
                None => return self.refuse_malformed().await,
            },
        };
        let sent_id = match &map {
            Some(map) => map.get(REQUEST_ID).cloned(),
            None => head
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(REQUEST_ID.as_bytes()))
                .and_then(|(_, value)| HeaderValue::from_bytes(value).ok()),
        };
        // A new id goes upstream too, after the client's headers.
        let new_id = sent_id.is_none().then(layers::new_request_id).flatten();
        self.request_id = sent_id.or_else(|| new_id.clone());

        let mut identity = None;
        let mut decisions: Vec<Decision> = Vec::new();
        for plugin in &route.plugins {
            let Some(headers) = map.as_mut() else { break };
            match &**plugin {
                Plugin::Auth(auth) => match auth.identify(headers).await {
                    Ok(found) => identity = Some(found),
                    Err(refused) => return self.answer(refused, &decisions, reusable).await,
                },
                Plugin::RateLimit(limit) => {
                    let decision = limit
                        .check(identity.as_ref(), headers, Some(self.peer.ip))
                        .await;
                    decisions.push(decision);
                    if !decision.allowed {
                        let refused = RateLimit::refusal(self.request_id.as_ref());
                        return self.answer(refused, &decisions, reusable).await;
                    }
                }
                // Routes with CORS never reach this path.
                Plugin::Cors(_) => {}
            }
        }

        let proxy = &route.proxy;
        let target = head.target();
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let Some(path) = proxy.upstream_path(path, query) else {
            let refused = problem::not_found(self.request_id.as_ref());
            return self.answer(refused, &decisions, reusable).await;
        };
        if let Framing::Length(length) = head.framing
            && let Some(refused) = proxy.refuse_length(length, self.request_id.as_ref())
        {
            return self.answer(refused, &decisions, reusable).await;
        }
        let request = Request {
            method: &head.method,
            path: &path,
            headers: match &map {
                Some(map) => Source::Map(map),
                None => Source::Wire(&head.headers),
            },
            new_id: new_id.as_ref(),
            identity: identity.as_ref(),
            framing: head.framing,
            expect_continue: head.expect_continue,
            upstream_host: !proxy.preserves_host(),
        };
        let repeatable = is_repeatable(&head.method, !head.framing.has_body());

        let mut body_sent = !head.framing.has_body();
        let mut attempts = proxy.attempts(repeatable);
        let started = attempts.started();
        // When the client last sent part of its body: the upstream's time runs from there.
        let clock = ClientClock::new(started);
        let client = head.framing.has_body().then_some(&clock);
        let mut tried = 0;
        let sent = loop {
            let Some((index, upstream, _)) = attempts.next() else {
                break Err(attempts.failure());
            };
            tried = index;
            let attempt = self.send(upstream, &request, proxy, &mut body_sent, started, &clock);
            if let Some(done) = attempts.settle(index, attempt, client).await {
                break done;
            }
        };
        let (upstream, mut connection, response) = match sent {
            Ok(answer) => answer,
            Err(Failure::ClientGone) => return false,
            Err(failure) => {
                let refused = proxy.failure_response(failure, self.request_id.as_ref());
                proxy
                    .metrics
                    .record(tried, refused.status(), started.elapsed());
                let reusable = reusable || (body_sent && head.keep_alive);
                return self.answer(refused, &decisions, reusable).await;
            }
        };

        proxy
            .metrics
            .record(tried, response.status, started.elapsed());
        let keep_alive = head.keep_alive && body_sent && !self.stop.is_stopping();
        self.write_head(
            response.status,
            |sink| {
                proxy
                    .response_headers
                    .pass_on(|| response.headers.iter(), None, sink)
            },
            &decisions,
            keep_alive,
            response.framing,
        );
        let copied = body::copy(
            &mut connection.stream,
            &mut connection.buffer,
            response.framing,
            self.client,
            self.out,
            None,
            None,
        )
        .await;
        tracing::debug!(
            status = response.status.as_u16(),
            upstream_latency = ?started.elapsed(),
            "finished processing request"
        );
        match copied {
            Ok(()) => {
                if response.reusable {
                    // Idle since the request began, as far as the pool knows: it errs early.
                    upstream.idle.put(connection, started);
                }
                keep_alive
            }
            Err(error) => {
                // The answer is cut: the client sees its connection close mid-body.
                if error.is_source() {
                    tracing::warn!(upstream = %upstream.authority, %error, "the upstream's answer broke off");
                }
                false
            }
        }
    }

    /// One attempt: the request to `upstream` on a kept-alive connection (or a new one),
    /// and the head of its answer.
    async fn send<'u>(
        &mut self,
        upstream: &'u Upstream,
        request: &Request<'_>,
        proxy: &Proxy,
        body_sent: &mut bool,
        now: Instant,
        clock: &ClientClock,
    ) -> Tried<(&'u Upstream, Connection, ResponseHead)> {
        // A kept-alive connection the upstream closed unseen fails before any answer; a
        // bodiless request then goes again on a new connection.
        let mut pooled = upstream.idle.take(now);
        loop {
            let reused = pooled.is_some();
            let mut connection = match pooled.take() {
                Some(connection) => connection,
                None => match pool::connect(&upstream.address, proxy.connect_timeout()).await {
                    Ok(connection) => connection,
                    Err(error) => {
                        return Tried::Failed(Failure::Unreachable(format!(
                            "connecting to {}: {error}",
                            upstream.address
                        )));
                    }
                },
            };
            self.out.clear();
            let host = request.upstream_host.then(|| upstream.authority.as_str());
            wire::write_request_line(
                self.out,
                request.method,
                (&upstream.base_path, request.path),
                host,
            );
            request.write_headers(proxy, self.peer, self.out);
            wire::end_head(self.out, request.framing.header());
            let written = if request.framing.has_body() {
                if request.expect_continue {
                    let go_on = b"HTTP/1.1 100 Continue\r\n\r\n";
                    if self.client.write_all(go_on).await.is_err() {
                        return Tried::Failed(Failure::ClientGone);
                    }
                }
                let pace = Pace {
                    clock,
                    timeout: proxy.body_read_timeout(),
                };
                let copied = body::copy(
                    self.client,
                    self.buffer,
                    request.framing,
                    &mut connection.stream,
                    self.out,
                    proxy.max_body_bytes(),
                    Some(pace),
                )
                .await;
                match copied {
                    Ok(()) => {
                        *body_sent = true;
                        Ok(())
                    }
                    Err(BodyError::TooLarge(_)) => return Tried::Failed(Failure::TooLarge),
                    Err(BodyError::Stalled(_)) => return Tried::Failed(Failure::ClientStalled),
                    // Answered 400, as hyper's server and nginx answer it; the upstream,
                    // which got at most a body cut short, is not to blame.
                    Err(error @ BodyError::Chunked(_)) => {
                        return Tried::Failed(Failure::BadBody(error.to_string()));
                    }
                    Err(error) if error.is_source() => {
                        return Tried::Failed(Failure::ClientGone);
                    }
                    // The upstream stopped reading: it may have answered already.
                    Err(error) => Err(error.to_string()),
                }
            } else {
                connection
                    .stream
                    .write_all(self.out)
                    .await
                    .map_err(|e| format!("sending the request: {e}"))
            };
            self.out.clear();
            match read_response_head(&mut connection, request.method).await {
                Ok(head) if is_unavailable(head.status) => {
                    return Tried::Unavailable((upstream, connection, head));
                }
                Ok(head) => return Tried::Answered((upstream, connection, head)),
                Err(_) if reused && !request.framing.has_body() => {
                    pooled = None;
                    continue;
                }
                Err(error) => {
                    let why = written.err().unwrap_or(error);
                    return Tried::Failed(Failure::Unreachable(why));
                }
            }
        }
    }

    /// Writes a response head to `out`: the headers `headers` puts (less those the router
    /// says itself), then what every answer on this path carries: the request id unless
    /// there is one, the rate limits' headers (outermost plugin's last, replacing any sent),
    /// `Connection: close` when the connection ends after it, the framing.
    fn write_head(
        &mut self,
        status: StatusCode,
        headers: impl FnOnce(&mut AnswerHeaders<'_>),
        decisions: &[Decision],
        keep_alive: bool,
        framing: Framing,
    ) {
        let framed = framing.header();
        self.out.clear();
        wire::write_status_line(self.out, status);
        let mut sink = AnswerHeaders {
            out: self.out,
            framed: framed.is_some(),
            rate_limited: !decisions.is_empty(),
            has_request_id: false,
        };
        headers(&mut sink);
        if !sink.has_request_id
            && let Some(id) = &self.request_id
        {
            wire::write_header(self.out, REQUEST_ID.as_bytes(), id.as_bytes());
        }
        for decision in decisions.iter().rev() {
            for (name, value) in decision.headers() {
                let mut digits = itoa::Buffer::new();
                wire::write_header(self.out, name.as_bytes(), digits.format(value).as_bytes());
            }
        }
        if !keep_alive {
            wire::write_header(self.out, b"connection", b"close");
        }
        wire::end_head(self.out, framed);
    }

    /// A head `http` refuses though the parser took it: 400, and the connection closes.
    async fn refuse_malformed(&mut self) -> bool {
        let refused = problem::response(
            StatusCode::BAD_REQUEST,
            "a header name or value is malformed",
            None,
        );
        self.answer(refused, &[], false).await
    }

    /// Writes an answer the router made itself (a refusal, a problem document).
    async fn answer(&mut self, response: Response, decisions: &[Decision], reusable: bool) -> bool {
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let closes = connection_names(&parts.headers).any(|o| o.eq_ignore_ascii_case(b"close"));
        let keep_alive = reusable && !closes && !self.stop.is_stopping();
        let headers = |sink: &mut AnswerHeaders<'_>| {
            for (name, value) in &parts.headers {
                sink.header(name.as_ref(), value.as_bytes());
            }
        };
        self.write_head(
            parts.status,
            headers,
            decisions,
            keep_alive,
            Framing::Length(body.len() as u64),
        );
        self.out.extend_from_slice(&body);
        let written = self.client.write_all(self.out).await.is_ok();
        self.out.clear();
        written && keep_alive
    }
}

/// An answer's headers onto the wire, less those the router says itself: the framing,
/// `Connection`, and the rate limits' when a limit decided; noting whether one is a
/// request id.
struct AnswerHeaders<'o> {
    out: &'o mut Vec<u8>,
    framed: bool,
    rate_limited: bool,
    has_request_id: bool,
}

impl HeaderSink for AnswerHeaders<'_> {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        let ours = name.eq_ignore_ascii_case(b"connection")
            || (self.framed && name.eq_ignore_ascii_case(b"content-length"))
            || (self.rate_limited && is_rate_limit_header(name));
        if !ours {
            self.has_request_id |= name.eq_ignore_ascii_case(REQUEST_ID.as_bytes());
            wire::write_header(self.out, name, value);
        }
    }
}

fn is_rate_limit_header(name: &[u8]) -> bool {
    [
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ]
    .iter()
    .any(|ours| ours.as_bytes().eq_ignore_ascii_case(name))
}

/// What goes to every upstream tried.
struct Request<'r> {
    method: &'r axum::http::Method,
    /// Path and query below the upstream's base path.
    path: &'r str,
    headers: Source<'r>,
    /// The request id the router made (the client sent none).
    new_id: Option<&'r HeaderValue>,
    identity: Option<&'r Identity>,
    framing: Framing,
    expect_continue: bool,
    /// The upstream's `Host` is sent (else the client's, among the headers).
    upstream_host: bool,
}

/// The client's headers: as they came, or the map the plugins read and changed.
enum Source<'r> {
    Wire(&'r Headers),
    Map(&'r HeaderMap),
}

impl Request<'_> {
    /// The request's headers as the route forwards them, written to `out`.
    fn write_headers(&self, proxy: &Proxy, peer: &Peer, out: &mut Vec<u8>) {
        let forwarding = Forwarding {
            peer: Some(peer),
            identity: self.identity,
            upgrade: None,
            framed_here: true,
        };
        let new_id = self.new_id.map(|id| (REQUEST_ID.as_bytes(), id.as_bytes()));
        match self.headers {
            Source::Wire(headers) => {
                let headers = || headers.iter().chain(new_id);
                proxy.forward_request_headers(headers, &forwarding, out);
            }
            Source::Map(map) => {
                let headers = || {
                    map.iter()
                        .map(|(n, v)| (n.as_ref(), v.as_bytes()))
                        .chain(new_id)
                };
                proxy.forward_request_headers(headers, &forwarding, out);
            }
        }
    }
}

impl HeaderSink for Vec<u8> {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        wire::write_header(self, name, value);
    }
}

/// Reads an upstream's response head.
async fn read_response_head(
    connection: &mut Connection,
    method: &axum::http::Method,
) -> Result<ResponseHead, String> {
    loop {
        match ResponseHead::take(&mut connection.buffer, method) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(error) => return Err(error.to_string()),
        }
        connection.buffer.reserve(READ_SIZE);
        match connection.stream.read_buf(&mut connection.buffer).await {
            Ok(0) => return Err("the upstream closed the connection before answering".into()),
            Ok(_) => {}
            Err(error) => return Err(format!("reading the answer: {error}")),
        }
    }
}
