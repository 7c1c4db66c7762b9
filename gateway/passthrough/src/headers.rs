//! The header rules of REST routes: which headers describe one connection and never go
//! on (RFC 9110 section 7.6.1), what a header name means to forwarding, and a route's
//! rename/remove/add rules; written to a map or straight onto the wire.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use junction_schema::identity::{IDENTITY_HEADER, IDENTITY_SIGNATURE_HEADER};

use super::config::HeaderRules;

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Header rules with names and values parsed once.
#[derive(Debug, Default)]
pub(super) struct HeaderTransform {
    rename: Vec<(HeaderName, HeaderName)>,
    remove: Vec<HeaderName>,
    pub(super) add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderTransform {
    pub(super) fn new(rules: &HeaderRules) -> Result<Self, String> {
        let name = |n: &String| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))
        };
        Ok(Self {
            rename: rules
                .rename
                .iter()
                .map(|(from, to)| Ok((name(from)?, name(to)?)))
                .collect::<Result<_, String>>()?,
            remove: rules.remove.iter().map(name).collect::<Result<_, _>>()?,
            add: rules
                .add
                .iter()
                .map(|(n, v)| {
                    Ok((
                        name(n)?,
                        HeaderValue::from_str(v).map_err(|_| format!("bad value for {n}"))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        })
    }

    /// The name a header named `name` goes on under, or `None` when it is removed or
    /// replaced by an added one.
    pub(super) fn name_for<'n>(&'n self, name: &'n [u8]) -> Option<&'n [u8]> {
        let named = |other: &HeaderName| other.as_str().as_bytes().eq_ignore_ascii_case(name);
        let name = self
            .rename
            .iter()
            .find(|(from, _)| named(from))
            .map_or(name, |(_, to)| to.as_str().as_bytes());
        let named = |other: &HeaderName| other.as_str().as_bytes().eq_ignore_ascii_case(name);
        let dropped = self.remove.iter().any(named) || self.add.iter().any(|(n, _)| named(n));
        (!dropped).then_some(name)
    }

    /// A message's headers as the next hop gets them, put into `sink`: the hop-by-hop
    /// ones dropped, with those its `Connection` header names (RFC 9110 section 7.6.1);
    /// for a switch to `upgrade`, the two headers that say so put back; then these rules.
    pub(super) fn pass_on<'h, I>(
        &self,
        headers: impl Fn() -> I,
        upgrade: Option<&[u8]>,
        sink: &mut impl HeaderSink,
    ) where
        I: Iterator<Item = (&'h [u8], &'h [u8])>,
    {
        let connection_named: Vec<&[u8]> = headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, value)| connection_options(value))
            .collect();
        let mut emit = |name: &[u8], value: &[u8]| {
            if let Some(name) = self.name_for(name) {
                sink.header(name, value);
            }
        };
        for (name, value) in headers() {
            let hop = classify(name) == Kind::HopByHop
                || connection_named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name));
            if !hop {
                emit(name, value);
            }
        }
        if let Some(protocol) = upgrade {
            emit(header::CONNECTION.as_ref(), b"upgrade");
            emit(header::UPGRADE.as_ref(), protocol);
        }
        for (name, value) in &self.add {
            sink.header(name.as_ref(), value.as_bytes());
        }
    }
}

/// Where forwarded headers go: a map for hyper's client, or straight onto the wire.
pub(super) trait HeaderSink {
    fn header(&mut self, name: &[u8], value: &[u8]);
}

impl HeaderSink for HeaderMap {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        // Names and values come from a parsed message or from validated configuration.
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            self.append(name, value);
        }
    }
}

/// What a header name means to forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Describes one connection (or asks to switch its protocol): never forwarded.
    HopByHop,
    ForwardedFor,
    ForwardedProto,
    ForwardedHost,
    /// `Forwarded` (RFC 7239).
    Forwarded,
    /// The router's signed identity: only the router sets it.
    Identity,
    Host,
    ContentLength,
    Expect,
    Other,
}

/// A header name's kind, found by its length first: most names cost one comparison or
/// none.
pub(super) fn classify(name: &[u8]) -> Kind {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    match name.len() {
        2 if is("te") => Kind::HopByHop,
        4 if is("host") => Kind::Host,
        6 if is("expect") => Kind::Expect,
        7 if is("trailer") || is("upgrade") => Kind::HopByHop,
        9 if is("forwarded") => Kind::Forwarded,
        10 if is("connection") || is("keep-alive") => Kind::HopByHop,
        14 if is("content-length") => Kind::ContentLength,
        // RFC 9113 section 3.2.1: it belongs to the connection asking for `h2c`.
        14 if is("http2-settings") => Kind::HopByHop,
        15 if is("x-forwarded-for") => Kind::ForwardedFor,
        16 if is("x-forwarded-host") => Kind::ForwardedHost,
        16 if is("proxy-connection") => Kind::HopByHop,
        17 if is("transfer-encoding") => Kind::HopByHop,
        17 if is("x-forwarded-proto") => Kind::ForwardedProto,
        18 if is("proxy-authenticate") => Kind::HopByHop,
        19 if is("proxy-authorization") => Kind::HopByHop,
        n if n == IDENTITY_HEADER.len() && is(IDENTITY_HEADER) => Kind::Identity,
        n if n == IDENTITY_SIGNATURE_HEADER.len() && is(IDENTITY_SIGNATURE_HEADER) => {
            Kind::Identity
        }
        _ => Kind::Other,
    }
}

/// The comma-separated options of a `Connection` value.
pub(super) fn connection_options(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|option| !option.is_empty())
}

pub(super) fn connection_names(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| connection_options(v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sent` through `transform` into a map.
    fn passed_on(
        transform: &HeaderTransform,
        sent: &[(&str, &str)],
        upgrade: Option<&str>,
    ) -> HeaderMap {
        let mut map = HeaderMap::new();
        let sent = || sent.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        transform.pass_on(sent, upgrade.map(str::as_bytes), &mut map);
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let none = HeaderTransform::default();
        let map = passed_on(
            &none,
            &[
                ("connection", "keep-alive, X-Session"),
                ("x-session", "abc"),
                ("keep-alive", "timeout=5"),
                ("transfer-encoding", "chunked"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic x"),
                ("upgrade", "websocket"),
                ("content-type", "text/plain"),
                ("authorization", "Bearer t"),
            ],
            None,
        );
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["authorization", "content-type"]);

        let switching = passed_on(
            &none,
            &[("connection", "Upgrade, x-hop"), ("x-hop", "1")],
            Some("websocket"),
        );
        assert_eq!(switching["connection"], "upgrade");
        assert_eq!(switching["upgrade"], "websocket");
        assert!(!switching.contains_key("x-hop"));
    }

    #[test]
    fn header_rules_rename_then_remove_then_add() {
        let rules = HeaderRules {
            add: [
                ("x-api-version".into(), "2".into()),
                ("x-new".into(), "set".into()),
            ]
            .into_iter()
            .collect(),
            remove: vec!["x-debug".into()],
            rename: [("x-old".into(), "x-renamed".into())].into_iter().collect(),
        };
        let transform = HeaderTransform::new(&rules).unwrap();
        let map = passed_on(
            &transform,
            &[
                ("x-old", "a"),
                ("x-old", "b"),
                ("x-debug", "1"),
                ("x-api-version", "1"),
            ],
            None,
        );
        let renamed: Vec<&str> = map
            .get_all("x-renamed")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(renamed, vec!["a", "b"]);
        assert!(!map.contains_key("x-old") && !map.contains_key("x-debug"));
        assert_eq!(map["x-api-version"], "2");
        assert_eq!(map["x-new"], "set");

        // Name by name, as headers stream.
        assert_eq!(transform.name_for(b"X-Old"), Some(&b"x-renamed"[..]));
        assert_eq!(transform.name_for(b"x-debug"), None);
        assert_eq!(
            transform.name_for(b"X-Api-Version"),
            None,
            "replaced by the added value"
        );
        assert_eq!(
            transform.name_for(b"Content-Type"),
            Some(&b"Content-Type"[..])
        );
    }

    #[test]
    fn header_names_are_classified_in_any_case() {
        // RFC 9110 section 7.6.1's list, the one asking to switch protocols, and h2c's
        // settings (RFC 9113 section 3.2.1).
        for hop in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
        ] {
            assert_eq!(classify(hop.as_bytes()), Kind::HopByHop, "{hop}");
            let upper = hop.to_ascii_uppercase();
            assert_eq!(classify(upper.as_bytes()), Kind::HopByHop, "{upper}");
        }
        for (name, kind) in [
            (IDENTITY_HEADER, Kind::Identity),
            (IDENTITY_SIGNATURE_HEADER, Kind::Identity),
            ("X-Forwarded-For", Kind::ForwardedFor),
            ("x-forwarded-proto", Kind::ForwardedProto),
            ("X-Forwarded-Host", Kind::ForwardedHost),
            ("Forwarded", Kind::Forwarded),
            ("HOST", Kind::Host),
            ("content-length", Kind::ContentLength),
            ("Expect", Kind::Expect),
            ("x-request-id", Kind::Other),
            ("accept", Kind::Other),
            ("hostname", Kind::Other),
        ] {
            assert_eq!(classify(name.as_bytes()), kind, "{name}");
        }
    }
}
