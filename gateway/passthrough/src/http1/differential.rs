//! The fast path against hyper's server, request by request: each case of `corpus.txt`
//! (malformed and borderline requests: smuggling classics, framing edge cases, header
//! oddities) goes to Junction's server (a route on `/r` in front of a hyper backend; the fast
//! path reads it, or hands it to hyper's server) and to a plain hyper server. Both must
//! answer the client alike and let their backend handle the same requests, unless the
//! corpus lists the disagreement, with Junction's outcome and the reason; a listed case that
//! stops disagreeing fails too, so the list stays true.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Passthrough, RouteConfig};
use junction_edge::server::{Site, serve};

const CORPUS: &str = include_str!("corpus.txt");
/// How long a connection may stay silent before its outcome is taken as it stands.
const QUIET: Duration = Duration::from_secs(3);

/// One line of the corpus.
struct Case {
    name: String,
    request: Vec<u8>,
    /// For a listed disagreement: Junction's outcome as displayed, and why.
    listed: Option<(String, String)>,
}

fn corpus() -> Vec<Case> {
    CORPUS
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split(" | ").collect();
            let listed = match fields.as_slice() {
                [_, _] => None,
                [_, _, outcome, why] => Some(((*outcome).to_owned(), (*why).to_owned())),
                _ => panic!("a corpus line has 2 or 4 fields: {line}"),
            };
            Case {
                name: fields[0].trim().to_owned(),
                request: unescape(fields[1]),
                listed,
            }
        })
        .collect()
}

/// The corpus' escapes: `\r`, `\n`, `\t`, `\0`, `\xHH`, `\\`.
fn unescape(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        let (escaped, tail) = rest.split_first().expect("an escape at the end of a line");
        rest = tail;
        bytes.push(match escaped {
            b'r' => b'\r',
            b'n' => b'\n',
            b't' => b'\t',
            b'0' => 0,
            b'\\' => b'\\',
            b'x' => {
                let hex = std::str::from_utf8(&rest[..2]).unwrap();
                rest = &rest[2..];
                u8::from_str_radix(hex, 16).unwrap()
            }
            other => panic!("unknown escape \\{}", *other as char),
        });
    }
    bytes
}

/// What one server made of one case: what the client was answered, whether the connection
/// closed after, and what the backend handled whole (method, target, body).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    statuses: Vec<u16>,
    closed: bool,
    handled: Vec<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self.statuses.iter().map(u16::to_string).collect();
        let answered = match statuses.is_empty() {
            true => "no answer".to_owned(),
            false => statuses.join(" "),
        };
        let closed = if self.closed { "close" } else { "open" };
        write!(f, "{answered} {closed}")?;
        if !self.handled.is_empty() {
            write!(f, "; {}", self.handled.join(", "))?;
        }
        Ok(())
    }
}

/// A hyper server that reads each request's body whole and notes it under its case (by
/// the `/r/c{N}` prefix of its path), then answers 200; 400 when the body cannot be read.
#[derive(Clone, Default)]
struct Backend {
    handled: Arc<Mutex<BTreeMap<usize, Vec<String>>>>,
}

impl Backend {
    async fn start() -> (SocketAddr, Self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let backend = Self::default();
        let serving = backend.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let backend = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let backend = backend.clone();
                        async move { Ok::<_, Infallible>(backend.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (address, backend)
    }

    async fn handle(&self, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), ToString::to_string);
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            let mut refused = hyper::Response::new(Full::new(Bytes::from_static(b"bad body")));
            *refused.status_mut() = hyper::StatusCode::BAD_REQUEST;
            return refused;
        };
        if let Some((case, path)) = case_of(&target) {
            let entry = format!(
                "{} {{p}}{path} {:?}",
                parts.method,
                String::from_utf8_lossy(&body)
            );
            self.handled
                .lock()
                .unwrap()
                .entry(case)
                .or_default()
                .push(entry);
        }
        hyper::Response::new(Full::new(Bytes::from_static(b"ok")))
    }

    fn handled(&self, case: usize) -> Vec<String> {
        let handled = self.handled.lock().unwrap();
        handled.get(&case).cloned().unwrap_or_default()
    }
}

/// `request` with each `{p}` replaced by `prefix`.
fn with_prefix(request: &[u8], prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.len() + 16);
    let mut rest = request;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b"{p}") {
            out.extend_from_slice(prefix.as_bytes());
            rest = after;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// The case number and the path after `/r/c{N}`.
fn case_of(target: &str) -> Option<(usize, &str)> {
    let rest = &target[target.find("/r/c")? + 4..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    Some((rest[..digits].parse().ok()?, &rest[digits..]))
}

/// Junction's server with one route, `/r`, to `backend`.
async fn junction(backend: SocketAddr) -> SocketAddr {
    let route: RouteConfig = toml::from_str(&format!(
        "name = \"r\"\npath = \"/r\"\nupstreams = [\"http://{backend}\"]"
    ))
    .unwrap();
    let routes = Arc::new(Passthrough::new(&[route], None, Default::default()).unwrap());
    let app = junction_edge::layers::request_ids(Router::new().fallback_service(routes.service()));
    let site = Site {
        app,
        fast_path: Some(routes),
        header_read_timeout: Duration::from_secs(30),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        site,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    address
}

/// Sends `request` on a new connection to `server`, and reads until the server closes or
/// falls quiet; then takes what `backend` handled for `case` (before the connection drops,
/// so that a body cut short by the drop is not counted).
async fn outcome(server: SocketAddr, request: &[u8], backend: &Backend, case: usize) -> Outcome {
    let mut stream = TcpStream::connect(server).await.unwrap();
    // A server may refuse and close before reading all of it.
    let _ = stream.write_all(request).await;
    let mut read = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(QUIET, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => read.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    Outcome {
        statuses: statuses(&read),
        closed,
        handled: backend.handled(case),
    }
}

/// The status of each response in `bytes`, read in turn by their framing.
fn statuses(mut bytes: &[u8]) -> Vec<u16> {
    let mut found = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(length)) = response.parse(bytes) else {
            return found;
        };
        let status = response.code.unwrap_or_default();
        found.push(status);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        bytes = &bytes[length..];
        if (100..200).contains(&status) || status == 204 || status == 304 {
            continue;
        }
        if header("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
            // Each chunk: a size line, data, CRLF; the last one ends the body.
            loop {
                let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
                    return found;
                };
                let size = std::str::from_utf8(&bytes[..end])
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                let Some(size) = size else { return found };
                bytes = &bytes[(end + 2 + size + 2).min(bytes.len())..];
                if size == 0 {
                    break;
                }
            }
        } else if let Some(length) = header("content-length").and_then(|l| l.parse().ok()) {
            bytes = &bytes[usize::min(length, bytes.len())..];
        } else {
            return found;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_reads_requests_as_hypers_server_does() {
    let cases = corpus();
    let (upstream, behind_junction) = Backend::start().await;
    let junction = junction(upstream).await;
    let (reference, alone) = Backend::start().await;
    // Every case at once: each waits for its connection to fall quiet, in parallel.
    let runs = cases.iter().enumerate().map(|(index, case)| {
        let request = with_prefix(&case.request, &format!("/r/c{index}"));
        let (behind_junction, alone) = (behind_junction.clone(), alone.clone());
        async move {
            let (through_junction, through_hyper) = tokio::join!(
                outcome(junction, &request, &behind_junction, index),
                outcome(reference, &request, &alone, index),
            );
            (through_junction, through_hyper)
        }
    });
    let outcomes = futures_util::future::join_all(runs).await;

    let mut wrong = Vec::new();
    for (case, (junction, hyper)) in cases.iter().zip(outcomes) {
        let name = &case.name;
        match &case.listed {
            None if junction != hyper => wrong.push(format!(
                "{name}: Junction `{junction}`, hyper `{hyper}`: fix it, or list it with why"
            )),
            Some((_, why)) if junction == hyper => wrong.push(format!(
                "{name}: listed as a disagreement ({why}), but both give `{junction}`"
            )),
            Some((expected, _)) if junction.to_string() != *expected => wrong.push(format!(
                "{name}: Junction gives `{junction}`, listed as `{expected}` (hyper `{hyper}`)"
            )),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_corpus_reads_and_names_each_case_once() {
    let cases = corpus();
    assert!(cases.len() > 50, "{} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "a name is used twice");
    assert_eq!(unescape(r"a\r\n\t\0\x7f\\"), b"a\r\n\t\0\x7f\\");
    assert_eq!(with_prefix(b"GET {p}/a {q}", "/r/c1"), b"GET /r/c1/a {q}");
}
