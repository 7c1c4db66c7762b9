//! Property tests of the fast path's parsers, a bounded fuzz run in every test run: request
//! heads and chunked bodies, from generated near-valid messages mutated at random and from
//! plain random bytes. Each parse must not panic, must agree with a reference (httparse and
//! the rules below, written plainly, for heads; a one-shot decoder of RFC 9112 section 7.1,
//! for chunked bodies, however the bytes are split into reads), and must do work linear in
//! its input.

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::body::{BodyError, ChunkDecoder, MAX_CHUNK_LINE, MAX_TRAILERS, Piece};
use super::wire::{Parse, RawRequest};
use junction_edge::server::head;

/// Cases per property: seconds in all, in every run of the suite.
const CASES: u32 = 3000;

fn config() -> Config {
    Config {
        cases: CASES,
        // Nothing is written next to the sources; a failure prints its input instead.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Bytes edited at random: each edit inserts, removes or replaces one byte, or cuts the
/// input short.
fn mutated(base: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edit = (0..4u8, any::<prop::sample::Index>(), any::<u8>());
    (base, prop::collection::vec(edit, 0..4)).prop_map(|(mut bytes, edits)| {
        for (kind, at, byte) in edits {
            let at = at.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 if at < bytes.len() => bytes[at] = byte,
                3 => bytes.truncate(at),
                _ => {}
            }
        }
        bytes
    })
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> + Clone {
    prop::sample::select(options)
}

// --- request heads ----------------------------------------------------------------------

/// A request head put together from likely and unlikely pieces.
fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let method = pick(&["GET", "POST", "PUT", "get", "HEAD", "G T", ""]);
    let target = pick(&[
        "/r/a",
        "/r/a?x=1",
        "/",
        "*",
        "http://x/r",
        "/r/a b",
        "/r/%2e%2e",
        "/r/\u{e9}",
    ]);
    let version = pick(&[
        "HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "http/1.1", "HTTP/2.0", "",
    ]);
    let name = pick(&[
        "Host",
        "host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "Expect",
        "X-A",
        "Bad Name",
        "",
    ]);
    let value = pick(&[
        "x",
        "a.test:80",
        "chunked",
        "Chunked",
        "gzip, chunked",
        "chunked, chunked",
        "5",
        "5, 5",
        "+5",
        "0",
        "18446744073709551616",
        " close ",
        "keep-alive, close",
        "upgrade",
        "100-continue",
        "a\u{0}b",
        "",
    ]);
    let line_end = pick(&["\r\n", "\n"]);
    let header = (name, value, line_end.clone()).prop_map(|(n, v, e)| format!("{n}: {v}{e}"));
    (
        method,
        target,
        version,
        prop::collection::vec(header, 0..6),
        line_end,
    )
        .prop_map(|(method, target, version, headers, end)| {
            format!("{method} {target} {version}{end}{}{end}", headers.concat()).into_bytes()
        })
}

/// How the fast path must frame a request with these headers, written out plainly:
/// `chunked` alone, or one length every `Content-Length` line agrees on (digits only),
/// else none (the general server decides).
fn reference_framing(headers: &[httparse::Header<'_>]) -> Option<super::body::Framing> {
    use super::body::Framing;
    let named = |name: &str| -> Vec<&[u8]> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let codings = named("transfer-encoding");
    let lengths = named("content-length");
    if !codings.is_empty() {
        let only_chunked =
            codings.len() == 1 && codings[0].trim_ascii().eq_ignore_ascii_case(b"chunked");
        return (only_chunked && lengths.is_empty()).then_some(Framing::Chunked);
    }
    let mut length = None;
    for value in lengths {
        let value = value.trim_ascii();
        let digits = !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit);
        let parsed: u64 = std::str::from_utf8(value)
            .ok()
            .filter(|_| digits)?
            .parse()
            .ok()?;
        if length.is_some_and(|l| l != parsed) {
            return None;
        }
        length = Some(parsed);
    }
    Some(length.map_or(Framing::Empty, Framing::Length))
}

/// The fast path's parse agrees with httparse and with the rules written plainly.
fn check_head(input: &[u8]) -> Result<(), TestCaseError> {
    let ours = RawRequest::parse(input);
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut reference = httparse::Request::new(&mut slots);
    let parsed = reference.parse(input);
    match (ours, parsed) {
        (Parse::Partial, Ok(httparse::Status::Partial)) => Ok(()),
        (Parse::Partial, other) => Err(TestCaseError::fail(format!("partial, httparse {other:?}"))),
        (_, Ok(httparse::Status::Partial)) => Err(TestCaseError::fail("httparse wants more")),
        (Parse::Elsewhere, Err(_)) => Ok(()),
        (_, Err(error)) => Err(TestCaseError::fail(format!("httparse refused: {error}"))),
        (ours, Ok(httparse::Status::Complete(length))) => {
            let version = match reference.version {
                Some(1) => axum::http::Version::HTTP_11,
                _ => axum::http::Version::HTTP_10,
            };
            let headers = || {
                reference
                    .headers
                    .iter()
                    .map(|h| (h.name.as_bytes(), h.value))
            };
            let refusal = (reference.version == Some(1))
                .then(|| head::check(version, headers()).err())
                .flatten();
            match ours {
                Parse::Refused(found) => {
                    prop_assert_eq!(Some(found), refusal);
                    Ok(())
                }
                Parse::Elsewhere => {
                    prop_assert_eq!(refusal, None, "a head both servers refuse is refused here");
                    let framing = reference_framing(reference.headers);
                    let target = reference.path.unwrap_or_default();
                    let has = |name: &str| {
                        reference
                            .headers
                            .iter()
                            .any(|h| h.name.eq_ignore_ascii_case(name))
                    };
                    let expect = reference
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("expect"));
                    let taken = reference.version == Some(1)
                        && target.starts_with('/')
                        && !has("upgrade")
                        && framing.is_some()
                        && expect.is_none_or(|e| e.value.eq_ignore_ascii_case(b"100-continue"));
                    prop_assert!(!taken, "the fast path passed on a request it takes");
                    Ok(())
                }
                Parse::Complete(raw) => {
                    prop_assert_eq!(raw.length, length);
                    prop_assert_eq!(refusal, None);
                    prop_assert_eq!(reference.version, Some(1));
                    prop_assert_eq!(raw.method(input), reference.method.unwrap().as_bytes());
                    let target = reference.path.unwrap();
                    prop_assert!(target.starts_with('/'));
                    prop_assert_eq!(raw.path(input), target.split('?').next().unwrap());
                    let host = reference
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("host"))
                        .map(|h| h.value);
                    prop_assert_eq!(raw.header(input, "host"), host);
                    prop_assert_eq!(Some(raw.framing()), reference_framing(reference.headers));
                    Ok(())
                }
                Parse::Partial => unreachable!("matched above"),
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_heads_parse_as_httparse_and_the_rules_say(input in mutated(request_head())) {
        check_head(&input)?;
    }

    #[test]
    fn random_bytes_never_pass_for_a_request_they_are_not(input in prop::collection::vec(any::<u8>(), 0..256)) {
        check_head(&input)?;
    }
}

// --- chunked bodies -----------------------------------------------------------------------

/// A chunked body put together from likely and unlikely pieces, then whatever follows it.
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let size = pick(&[
        "5",
        "05",
        "A",
        "a",
        "0",
        "+5",
        " 5",
        "5 ",
        "-1",
        "0x5",
        "10000000000000005",
        "",
    ]);
    let extension = pick(&["", ";x", ";n=\"v\"", " ;x", ";a\rb", ";a\u{0}b", ";a\nb"]);
    let end = pick(&["\r\n", "\n", "\r", ""]);
    let data = pick(&["hello", "hel", "hello!", "0123456789", ""]);
    let chunk = (size, extension, end.clone(), data, end)
        .prop_map(|(s, x, e1, d, e2)| format!("{s}{x}{e1}{d}{e2}"));
    let trailer = pick(&[
        "",
        "X-T: 1\r\n",
        "X-T: 1\n",
        "no colon\r\n",
        " folded\r\n",
        "X-T: a\u{0}\r\n",
    ]);
    (
        prop::collection::vec(chunk, 0..4),
        pick(&["0\r\n", "0\n", "000;x\r\n", ""]),
        prop::collection::vec(trailer, 0..3),
        pick(&["\r\n", "\n", ""]),
        pick(&["", "GET / HTTP/1.1\r\n"]),
    )
        .prop_map(|(chunks, last, trailers, end, after)| {
            format!("{}{last}{}{end}{after}", chunks.concat(), trailers.concat()).into_bytes()
        })
}

/// What RFC 9112 section 7.1 makes of `input`, read in one go: the body's data and the
/// bytes it took, or that it is malformed, or that it needs more.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Body { data: Vec<u8>, length: usize },
    Malformed,
    Incomplete,
}

/// The reference decoder: chunk = 1*HEXDIG *(SP / HTAB) [ ";" extension without control
/// bytes ] CRLF data CRLF; last chunk of size 0; trailer lines `name ":" value` ended by
/// CRLF; then CRLF. Sizes fit in 64 bits; lines and trailers within the decoder's limits.
fn reference_decode(input: &[u8]) -> Decoded {
    let mut at = 0;
    let mut data = Vec::new();
    let line = |at: usize, max: usize| -> Result<Option<(&[u8], usize)>, ()> {
        let window = &input[at..input.len().min(at + max + 2)];
        match window.iter().position(|b| *b == b'\n') {
            Some(end) if end > 0 && window[end - 1] == b'\r' => {
                Ok(Some((&window[..end - 1], at + end + 1)))
            }
            Some(_) => Err(()),
            None if window.len() >= max + 2 => Err(()),
            None => Ok(None),
        }
    };
    let control = |b: &u8| b.is_ascii_control() && *b != b'\t';
    let mut extensions = 0usize;
    loop {
        let (size_line, next) = match line(at, MAX_CHUNK_LINE) {
            Err(()) => return Decoded::Malformed,
            Ok(None) => return Decoded::Incomplete,
            Ok(Some(found)) => found,
        };
        let digits = size_line
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            return Decoded::Malformed;
        }
        let Some(size) = size_line[..digits].iter().try_fold(0u64, |size, digit| {
            let value = (*digit as char).to_digit(16)?;
            size.checked_mul(16)?.checked_add(u64::from(value))
        }) else {
            return Decoded::Malformed;
        };
        let rest = &size_line[digits..];
        let rest = &rest[rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count()..];
        match rest.split_first() {
            None => {}
            Some((b';', extension)) if !extension.iter().any(control) => {
                extensions += extension.len()
            }
            Some(_) => return Decoded::Malformed,
        }
        if extensions > super::body::MAX_EXTENSIONS {
            return Decoded::Malformed;
        }
        at = next;
        if size == 0 {
            break;
        }
        let Ok(size) = usize::try_from(size) else {
            return Decoded::Incomplete;
        };
        if input.len() < at + size {
            return Decoded::Incomplete;
        }
        data.extend_from_slice(&input[at..at + size]);
        at += size;
        match input.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return Decoded::Malformed,
            None if input[at..].iter().all(|b| *b == b'\r') => return Decoded::Incomplete,
            None => return Decoded::Malformed,
        }
    }
    let mut trailers = 0;
    loop {
        let (trailer, next) = match line(at, MAX_TRAILERS.saturating_sub(trailers)) {
            Err(()) => return Decoded::Malformed,
            Ok(None) => return Decoded::Incomplete,
            Ok(Some(found)) => found,
        };
        if trailer.is_empty() {
            return Decoded::Body { data, length: next };
        }
        let name = trailer.iter().take_while(|b| is_tchar(**b)).count();
        if name == 0 || trailer.get(name) != Some(&b':') || trailer[name + 1..].iter().any(control)
        {
            return Decoded::Malformed;
        }
        trailers += trailer.len() + 2;
        at = next;
    }
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `input` through the decoder in reads of the given sizes (the rest at once after them):
/// what it makes of it, and the bytes it looked at.
fn decode_in_reads(input: &[u8], reads: &[usize]) -> (Decoded, usize) {
    let mut decoder = ChunkDecoder::default();
    let mut buffer = BytesMut::new();
    let mut fed = 0;
    let mut data = Vec::new();
    let mut reads = reads.iter().copied().chain(std::iter::repeat(usize::MAX));
    loop {
        let step = reads.next().unwrap_or(usize::MAX).max(1);
        let take = step.min(input.len() - fed);
        buffer.extend_from_slice(&input[fed..fed + take]);
        fed += take;
        loop {
            match decoder.next(&mut buffer) {
                Ok(Some(Piece::Data(length))) => {
                    data.extend_from_slice(&buffer.split_to(length));
                }
                Ok(Some(Piece::End)) => {
                    let length = fed - buffer.len();
                    return (Decoded::Body { data, length }, decoder.examined);
                }
                Ok(None) => break,
                Err(BodyError::Chunked(_)) => return (Decoded::Malformed, decoder.examined),
                Err(other) => panic!("the decoder reads no connection: {other}"),
            }
        }
        // Waiting for more, it holds at most one line's worth.
        assert!(
            buffer.len() <= MAX_TRAILERS + 2,
            "{} bytes held",
            buffer.len()
        );
        if fed == input.len() {
            return (Decoded::Incomplete, decoder.examined);
        }
    }
}

fn check_chunks(input: &[u8], reads: &[usize]) -> Result<(), TestCaseError> {
    let expected = reference_decode(input);
    let (decoded, examined) = decode_in_reads(input, reads);
    prop_assert_eq!(&decoded, &expected, "reads {:?}", reads);
    // Each byte is searched once at most, however it arrives.
    prop_assert!(
        examined <= input.len(),
        "{} bytes examined for {}",
        examined,
        input.len()
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn chunked_bodies_decode_as_the_rfc_says_however_they_arrive(
        input in mutated(chunked_body()),
        reads in prop::collection::vec(1..16usize, 0..64),
    ) {
        check_chunks(&input, &reads)?;
    }

    #[test]
    fn random_bytes_are_no_chunked_body_by_accident(
        input in prop::collection::vec(any::<u8>(), 0..256),
        reads in prop::collection::vec(1..16usize, 0..32),
    ) {
        check_chunks(&input, &reads)?;
    }
}

#[test]
fn a_long_line_sent_a_byte_at_a_time_costs_linear_work() {
    let mut input = b"5;".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE - 10));
    input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let (decoded, examined) = decode_in_reads(&input, &vec![1; input.len()]);
    assert_eq!(
        decoded,
        Decoded::Body {
            data: b"hello".to_vec(),
            length: input.len()
        }
    );
    assert!(examined <= input.len(), "{examined} bytes examined");
}
