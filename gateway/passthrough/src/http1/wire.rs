//! HTTP/1.1 message heads (RFC 9112): parsed from a connection's buffer into `http` types,
//! and written back out. The parse is strict where request smuggling hides (framing
//! headers); what it does not take, hyper's server answers instead.

use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Version};
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use super::body::{Framing, FramingHeader};
use junction_edge::server::head::{self, Refusal};

/// Most headers a head may have here (hyper's server takes the rare head with more).
const MAX_HEADERS: usize = 64;

/// Where a part of a head lies in its buffer: start and end.
type Span = (usize, usize);
/// A header's name and value.
type HeaderSpan = (Span, Span);

/// A request head's position in the buffer, found and vetted before anything is copied
/// out of it: enough to decide whether the fast path takes the request.
pub struct RawRequest {
    /// The head's length in bytes.
    pub length: usize,
    method: (usize, usize),
    target: (usize, usize),
    headers: Vec<HeaderSpan>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

pub enum Parse<T> {
    Complete(T),
    /// More bytes are needed.
    Partial,
    /// Not a request this path takes (another version, an upgrade, ambiguous framing, a
    /// parse error): the general server takes it, and refuses the bad ones.
    Elsewhere,
    /// A head no server takes (the rules both servers apply): answered here.
    Refused(Refusal),
}

impl RawRequest {
    /// Finds an HTTP/1.1 request head at the buffer's start.
    pub fn parse(buffer: &[u8]) -> Parse<Self> {
        // Header slots stay uninitialized until parsed into: no 2 KiB of zeroes per head.
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            buffer,
            &mut headers,
        );
        let length = match parsed {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Parse::Partial,
            Err(_) => return Parse::Elsewhere,
        };
        let (Some(method), Some(target), Some(1)) = (request.method, request.path, request.version)
        else {
            return Parse::Elsewhere;
        };
        let headers = &*request.headers;
        let named = headers.iter().map(|h| (h.name.as_bytes(), h.value));
        if let Err(refusal) = head::check(Version::HTTP_11, named) {
            return Parse::Refused(refusal);
        }
        if !target.starts_with('/') || values(headers, "upgrade").next().is_some() {
            return Parse::Elsewhere;
        }
        let Some(framing) = request_framing(headers) else {
            return Parse::Elsewhere;
        };
        let expect_continue = match values(headers, "expect").next() {
            None => false,
            Some(value) if value.eq_ignore_ascii_case(b"100-continue") => true,
            Some(_) => return Parse::Elsewhere,
        };
        Parse::Complete(Self {
            length,
            method: span(buffer, method.as_bytes()),
            target: span(buffer, target.as_bytes()),
            headers: header_spans(buffer, headers),
            framing,
            keep_alive: !has_option(headers, "connection", b"close"),
            expect_continue,
        })
    }

    pub fn method<'b>(&self, buffer: &'b [u8]) -> &'b [u8] {
        &buffer[self.method.0..self.method.1]
    }

    pub fn path<'b>(&self, buffer: &'b [u8]) -> &'b str {
        let target = &buffer[self.target.0..self.target.1];
        let target = std::str::from_utf8(target).unwrap_or_default();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    #[cfg(test)]
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The first value of a header, by its lower-case name.
    pub fn header<'b>(&self, buffer: &'b [u8], name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| buffer[n.0..n.1].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &buffer[v.0..v.1])
    }

    /// The request, its head taken off the buffer's front (the body stays). `None` only for
    /// a method `http` refuses where the parser did not.
    pub fn take(self, buffer: &mut BytesMut) -> Option<RequestHead> {
        let head = buffer.split_to(self.length).freeze();
        Some(RequestHead {
            method: Method::from_bytes(&head[self.method.0..self.method.1]).ok()?,
            target: head.slice(self.target.0..self.target.1),
            headers: Headers {
                head,
                spans: self.headers,
            },
            framing: self.framing,
            keep_alive: self.keep_alive,
            expect_continue: self.expect_continue,
        })
    }
}

/// A head's headers, left in the bytes they came in: read, filtered and written on
/// without a map in between.
pub struct Headers {
    head: Bytes,
    spans: Vec<HeaderSpan>,
}

impl Headers {
    /// Each header's name and value, as sent.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.spans
            .iter()
            .map(|(name, value)| (&self.head[name.0..name.1], &self.head[value.0..value.1]))
    }

    /// The same headers in a map (for plugins that read them by name); `None` for a name
    /// or value `http` refuses where the parser did not.
    pub fn to_map(&self) -> Option<HeaderMap> {
        header_map(&self.head, &self.spans)
    }
}

/// A request the fast path forwards.
pub struct RequestHead {
    pub method: Method,
    /// Path and query, as sent.
    pub target: Bytes,
    pub headers: Headers,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// The target as text: the parser took it only as text, so the fallback is never used.
    pub fn target(&self) -> &str {
        std::str::from_utf8(&self.target).unwrap_or("/")
    }
}

/// An upstream's response head, its headers left as they came: they are written on to
/// the client as they are read, without a map in between.
pub struct ResponseHead {
    pub status: StatusCode,
    pub framing: Framing,
    /// The upstream connection may carry another request after this response.
    pub reusable: bool,
    pub headers: Headers,
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("the upstream sent a malformed response head: {0}")]
    Malformed(String),
    #[error("the upstream's response head is over {0} bytes")]
    TooLong(usize),
}

/// The longest response head taken from an upstream.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

impl ResponseHead {
    /// A response head at the buffer's start, taken off it; informational (1xx) responses
    /// before it are skipped. `None`: more bytes are needed.
    pub fn take(
        buffer: &mut BytesMut,
        request_method: &Method,
    ) -> Result<Option<Self>, ResponseError> {
        loop {
            let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                buffer,
                &mut headers,
            );
            let length = match parsed {
                Ok(httparse::Status::Complete(length)) => length,
                Ok(httparse::Status::Partial) if buffer.len() > MAX_RESPONSE_HEAD => {
                    return Err(ResponseError::TooLong(MAX_RESPONSE_HEAD));
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(error) => return Err(ResponseError::Malformed(error.to_string())),
            };
            let code = response.code.unwrap_or_default();
            let status = StatusCode::from_u16(code)
                .map_err(|_| ResponseError::Malformed(format!("status {code}")))?;
            if status.is_informational() {
                // 100 Continue, 103 Early Hints: not forwarded (the client's `Expect` was
                // answered by the router); 101 was never asked for.
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(ResponseError::Malformed(
                        "an unasked switch of protocols".into(),
                    ));
                }
                let _ = buffer.split_to(length);
                continue;
            }
            let version_11 = response.version == Some(1);
            let framing = response_framing(response.headers, status, request_method)?;
            let reusable = version_11
                && framing != Framing::UntilClose
                && !has_option(response.headers, "connection", b"close");
            let spans = header_spans(buffer, response.headers);
            return Ok(Some(Self {
                status,
                framing,
                reusable,
                headers: Headers {
                    head: buffer.split_to(length).freeze(),
                    spans,
                },
            }));
        }
    }
}

/// Where `part`, a slice of `buffer`, lies in it.
fn span(buffer: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - buffer.as_ptr() as usize;
    (start, start + part.len())
}

/// Where each parsed header's name and value lie in `buffer`.
fn header_spans(buffer: &[u8], headers: &[httparse::Header<'_>]) -> Vec<HeaderSpan> {
    headers
        .iter()
        .map(|h| (span(buffer, h.name.as_bytes()), span(buffer, h.value)))
        .collect()
}

fn header_map(head: &Bytes, positions: &[HeaderSpan]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(positions.len());
    for (name, value) in positions {
        let name = HeaderName::from_bytes(&head[name.0..name.1]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.0..value.1)).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// The values of a header, by its lower-case name.
fn values<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'static str,
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// A comma-separated header lists `option` (as `Connection: close`).
fn has_option(headers: &[httparse::Header<'_>], name: &'static str, option: &[u8]) -> bool {
    values(headers, name)
        .flat_map(|v| v.split(|b| *b == b','))
        .any(|o| o.trim_ascii().eq_ignore_ascii_case(option))
}

/// RFC 9112 section 6.3 for requests: chunked alone, or one length; anything else (both, an
/// unknown coding, conflicting lengths) is left to the general server, which refuses it.
fn request_framing(headers: &[httparse::Header<'_>]) -> Option<Framing> {
    let mut codings = values(headers, "transfer-encoding");
    if let Some(coding) = codings.next() {
        let chunked = coding.trim_ascii().eq_ignore_ascii_case(b"chunked");
        return (chunked
            && codings.next().is_none()
            && values(headers, "content-length").next().is_none())
        .then_some(Framing::Chunked);
    }
    match content_length(headers) {
        Ok(Some(length)) => Some(Framing::Length(length)),
        Ok(None) => Some(Framing::Empty),
        Err(()) => None,
    }
}

/// RFC 9112 section 6.3 for responses.
fn response_framing(
    headers: &[httparse::Header<'_>],
    status: StatusCode,
    request_method: &Method,
) -> Result<Framing, ResponseError> {
    if request_method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(coding) = values(headers, "transfer-encoding").last() {
        let last = coding.rsplit(|b| *b == b',').next().unwrap_or_default();
        return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    match content_length(headers) {
        Ok(Some(length)) => Ok(Framing::Length(length)),
        Ok(None) => Ok(Framing::UntilClose),
        Err(()) => Err(ResponseError::Malformed("a bad Content-Length".into())),
    }
}

/// The one length all `Content-Length` lines agree on, each line one number (a list such
/// as `5, 5` is refused, as hyper's server and nginx refuse it).
fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, ()> {
    let mut length = None;
    for value in values(headers, "content-length") {
        let value = value.trim_ascii();
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let parsed = value
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
        if length.is_some_and(|l| l != parsed) {
            return Err(());
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// `METHOD target HTTP/1.1` (the target a base path, then a path and query, always
/// starting with '/'), then `host` when given.
pub fn write_request_line(
    out: &mut Vec<u8>,
    method: &Method,
    (base, path): (&str, &str),
    host: Option<&str>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if !base.starts_with('/') && !path.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(base.as_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host {
        write_header(out, b"host", host.as_bytes());
    }
}

/// `HTTP/1.1 status reason`: a response head's first line.
pub fn write_status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The framing header, if any, and the blank line that ends a head.
pub fn end_head(out: &mut Vec<u8>, framing: Option<FramingHeader>) {
    if let Some(framing) = framing {
        framing.write(out);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Parse<RawRequest> {
        RawRequest::parse(text.as_bytes())
    }

    /// The request, or `None` when it is left to the general server.
    fn taken(text: &str) -> Option<RequestHead> {
        let mut buffer = BytesMut::from(text);
        match RawRequest::parse(&buffer) {
            Parse::Complete(raw) => Some(raw.take(&mut buffer).unwrap()),
            Parse::Elsewhere => None,
            Parse::Partial => panic!("not a complete head: {text:?}"),
            Parse::Refused(refusal) => panic!("refused ({refusal:?}): {text:?}"),
        }
    }

    #[test]
    fn heads_breaking_the_rules_of_both_servers_are_refused_here() {
        for (text, expected) in [
            ("GET /a HTTP/1.1\r\n\r\n", Refusal::MissingHost),
            (
                "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Refusal::DuplicateHost,
            ),
            ("GET /a HTTP/1.1\r\nHost: a b\r\n\r\n", Refusal::InvalidHost),
            (
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Refusal::UnknownCoding,
            ),
        ] {
            match request(text) {
                Parse::Refused(refusal) => assert_eq!(refusal, expected, "{text:?}"),
                _ => panic!("not refused: {text:?}"),
            }
        }
        // HTTP/1.0 goes to the general server, which applies the same rules.
        assert!(matches!(
            request("GET /a HTTP/1.0\r\n\r\n"),
            Parse::Elsewhere
        ));
    }

    #[test]
    fn a_request_head_is_found_with_its_route_facts_before_it_is_taken() {
        let text =
            "POST /orders/7?x=1 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 2\r\n\r\n{}";
        let Parse::Complete(raw) = request(text) else {
            panic!("complete");
        };
        let buffer = text.as_bytes();
        assert_eq!(raw.method(buffer), b"POST");
        assert_eq!(raw.path(buffer), "/orders/7");
        assert_eq!(raw.header(buffer, "host"), Some(&b"api.example.com"[..]));
        let mut buffer = BytesMut::from(text);
        let head = raw.take(&mut buffer).unwrap();
        assert_eq!(head.target(), "/orders/7?x=1");
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive && !head.expect_continue);
        assert_eq!(&buffer[..], b"{}", "the body stays in the buffer");
    }

    #[test]
    fn partial_heads_wait_and_other_versions_or_forms_go_elsewhere() {
        assert!(matches!(
            request("GET /a HTTP/1.1\r\nHost: x\r\n"),
            Parse::Partial
        ));
        for text in [
            "GET /a HTTP/1.0\r\n\r\n",
            "GET http://example.com/a HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(matches!(request(text), Parse::Elsewhere), "{text:?}");
        }
    }

    #[test]
    fn ambiguous_framing_upgrades_and_odd_expectations_are_left_to_the_general_server() {
        for text in [
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "PUT /a HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\n",
        ] {
            assert!(taken(text).is_none(), "{text:?}");
        }
        let chunked =
            taken("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(chunked.framing, Framing::Chunked);
        let repeated =
            taken("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
                .unwrap();
        assert_eq!(repeated.framing, Framing::Length(3));
        assert!(
            taken("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n").is_none(),
            "a list of lengths is left to the general server, which refuses it"
        );
        let closing = taken("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!closing.keep_alive && closing.framing == Framing::Empty);
        let expecting = taken(
            "PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap();
        assert!(expecting.expect_continue);
    }

    fn response(text: &str, method: Method) -> Result<Option<ResponseHead>, ResponseError> {
        ResponseHead::take(&mut BytesMut::from(text), &method)
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let framing = |text: &str, method: Method| response(text, method).unwrap().unwrap().framing;
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::GET),
            Framing::Length(5)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD),
            Framing::Empty
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Method::GET
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", Method::GET),
            Framing::Empty
        );
        let until_close = response("HTTP/1.1 200 OK\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(until_close.framing, Framing::UntilClose);
        assert!(!until_close.reusable);
        let old = response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!old.unwrap().unwrap().reusable);
        let closing = response(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!closing.unwrap().unwrap().reusable);
    }

    #[test]
    fn response_headers_stay_as_sent_and_make_a_map_when_asked() {
        let head = response(
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: keep-alive, X-Hop\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        let headers: Vec<(&[u8], &[u8])> = head.headers.iter().collect();
        assert_eq!(headers[0], (&b"X-A"[..], &b"1"[..]));
        assert_eq!(headers.len(), 3);
        let map = head.headers.to_map().unwrap();
        assert_eq!(map["x-a"], "1");
        assert_eq!(map["connection"], "keep-alive, X-Hop");
    }

    #[test]
    fn informational_responses_are_skipped_and_bad_heads_are_errors() {
        let mut buffer = BytesMut::from(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        );
        let head = ResponseHead::take(&mut buffer, &Method::POST)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(&buffer[..], b"ok");
        assert!(
            response("HTTP/1.1 200 OK\r\nContent-Length: 5", Method::GET)
                .unwrap()
                .is_none()
        );
        assert!(response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Method::GET).is_err());
        assert!(response("garbage\r\n\r\n", Method::GET).is_err());
        assert!(response("HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET).is_err());
    }

    #[test]
    fn heads_are_written_with_their_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        write_request_line(
            &mut out,
            &Method::POST,
            ("/v1", "/orders?x=1"),
            Some("orders.internal:8080"),
        );
        write_header(&mut out, b"x-a", b"1");
        end_head(&mut out, Framing::Chunked.header());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/orders?x=1 HTTP/1.1\r\nhost: orders.internal:8080\r\nx-a: 1\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        write_request_line(&mut out, &Method::GET, ("", "?q=1"), None);
        end_head(&mut out, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /?q=1 HTTP/1.1\r\n\r\n"
        );
        let mut out = Vec::new();
        write_status_line(&mut out, StatusCode::OK);
        write_header(&mut out, b"x-a", b"1");
        end_head(&mut out, Framing::Length(2).header());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n"
        );
    }
}
