//! What every request head must be before anything routes it (RFC 9112): exactly one
//! valid `Host` (none only in HTTP/1.0, as nginx allows), and no transfer coding but
//! `chunked`. Both servers ask this of each request, the REST routes' HTTP/1 fast path and
//! hyper's, so the answer does not depend on which one reads a connection.

use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Version};
use axum::response::Response;

use crate::layers::REQUEST_ID;
use crate::problem;

/// Why a request head is refused, and with which status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// RFC 9112 section 3.2: HTTP/1.1 requires `Host`.
    MissingHost,
    /// RFC 9112 section 3.2: more than one `Host` line; which one names the site would be
    /// anyone's guess (the router's and an upstream's could differ).
    DuplicateHost,
    /// A `Host` that is no `host[:port]` (RFC 3986 section 3.2).
    InvalidHost,
    /// RFC 9112 section 6.1: a coding other than `chunked` (or `chunked` twice); nginx
    /// answers 501 as well, rather than forward a body whose coding it cannot read.
    UnknownCoding,
    /// `chunked` twice, or an empty `Transfer-Encoding`.
    MalformedCoding,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Self::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Self::MissingHost => "an HTTP/1.1 request needs a `Host` header",
            Self::DuplicateHost => "a request has one `Host` header, not several",
            Self::InvalidHost => "the `Host` header is not a host name with an optional port",
            Self::UnknownCoding => "no transfer coding but `chunked` is implemented",
            Self::MalformedCoding => "`Transfer-Encoding` must name `chunked` once",
        }
    }

    /// The problem document answering it; the connection closes after it (a body the
    /// head framed, if any, is left unread).
    pub fn response(self, request_id: Option<&HeaderValue>) -> Response {
        let new_id = request_id
            .is_none()
            .then(crate::layers::new_request_id)
            .flatten();
        let request_id = request_id.or(new_id.as_ref());
        let mut response = problem::response(self.status(), self.detail(), request_id);
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Some(id) = request_id {
            headers.insert(REQUEST_ID, id.clone());
        }
        response
    }
}

/// The refusal for a request head of `version` with `headers` (names in any case), if it
/// breaks a rule above.
pub fn check<'h>(
    version: Version,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<(), Refusal> {
    let mut hosts = 0;
    let mut codings = Codings::default();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if hosts > 1 {
                return Err(Refusal::DuplicateHost);
            }
            if !is_valid_host(value) {
                return Err(Refusal::InvalidHost);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            codings.add(value);
        }
    }
    if hosts == 0 && version != Version::HTTP_10 {
        return Err(Refusal::MissingHost);
    }
    codings.check()
}

/// The transfer codings of a request, over all its `Transfer-Encoding` lines.
#[derive(Default)]
struct Codings {
    present: bool,
    chunked: usize,
    unknown: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        // Empty list elements are allowed and mean nothing (RFC 9110 section 5.6.1).
        for coding in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
            } else if !coding.is_empty() {
                self.unknown = true;
            }
        }
    }

    fn check(&self) -> Result<(), Refusal> {
        match self {
            Self { present: false, .. } => Ok(()),
            Self { unknown: true, .. } => Err(Refusal::UnknownCoding),
            Self { chunked: 1, .. } => Ok(()),
            _ => Err(Refusal::MalformedCoding),
        }
    }
}

/// `host [":" port]` with the host a bracketed IP literal or a registered name / IPv4
/// address of RFC 3986's characters, the port digits.
fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => {
            let Some(end) = literal.iter().position(|b| *b == b']') else {
                return false;
            };
            let address = &literal[..end];
            if address.is_empty()
                || !address
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            {
                return false;
            }
            (&b"x"[..], &literal[end + 1..])
        }
        None => match value.iter().position(|b| *b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        },
    };
    let port_ok = match port.strip_prefix(b":") {
        Some(digits) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        None => port.is_empty(),
    };
    port_ok && !host.is_empty() && is_reg_name(host)
}

/// RFC 3986 `reg-name`: unreserved characters, sub-delimiters and percent-encodings.
fn is_reg_name(host: &[u8]) -> bool {
    let mut rest = host;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = match byte {
            b'%' => match tail {
                [a, b, after @ ..] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => after,
                _ => return false,
            },
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => tail,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => tail,
            _ => return false,
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(version: Version, headers: &[(&str, &str)]) -> Result<(), Refusal> {
        check(
            version,
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }

    #[test]
    fn http_11_needs_one_host_and_http_10_may_have_none() {
        let v11 = Version::HTTP_11;
        assert_eq!(checked(v11, &[("Host", "api.example.com")]), Ok(()));
        assert_eq!(checked(v11, &[]), Err(Refusal::MissingHost));
        assert_eq!(checked(Version::HTTP_10, &[]), Ok(()));
        for version in [v11, Version::HTTP_10] {
            assert_eq!(
                checked(version, &[("host", "a.test"), ("HOST", "b.test")]),
                Err(Refusal::DuplicateHost),
            );
            assert_eq!(
                checked(version, &[("host", "a.test"), ("host", "a.test")]),
                Err(Refusal::DuplicateHost),
                "even the same one twice"
            );
        }
    }

    #[test]
    fn a_host_is_a_name_or_address_with_an_optional_port() {
        for good in [
            "api.example.com",
            "api.example.com:8080",
            "127.0.0.1:4000",
            "[::1]",
            "[::1]:4000",
            "[2001:db8::7]:443",
            "xn--bcher-kva.example",
            "under_score.test",
            "a%2Db.test",
            "host:",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "a\\b",
            "user@host",
            "host:80x",
            "host:123456",
            "[::1",
            "[]",
            "[::1]x",
            "::1",
            "a:1:2",
            "%zz",
            "a%2",
            "é.test",
            "[fe80::1%25eth0]",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn chunked_alone_is_the_one_transfer_coding() {
        let with = |codings: &[&str]| {
            let mut headers = vec![("host", "x")];
            headers.extend(codings.iter().map(|c| ("Transfer-Encoding", *c)));
            checked(Version::HTTP_11, &headers)
        };
        assert_eq!(with(&[]), Ok(()));
        assert_eq!(with(&["chunked"]), Ok(()));
        assert_eq!(with(&["Chunked"]), Ok(()));
        assert_eq!(with(&[" chunked , "]), Ok(()));
        for unknown in [
            &["gzip, chunked"][..],
            &["gzip"],
            &["chunked", "gzip"],
            &["identity"],
        ] {
            assert_eq!(with(unknown), Err(Refusal::UnknownCoding), "{unknown:?}");
        }
        for malformed in [&["chunked, chunked"][..], &["chunked", "chunked"], &[""]] {
            assert_eq!(
                with(malformed),
                Err(Refusal::MalformedCoding),
                "{malformed:?}"
            );
        }
        assert_eq!(Refusal::UnknownCoding.status(), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(Refusal::MalformedCoding.status(), StatusCode::BAD_REQUEST);
    }
}
