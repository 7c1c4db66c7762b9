//! HTTP/1 message bodies (RFC 9112 section 6): how a body's end is known, and copying one
//! from a connection to the next hop while it streams, re-framed for that hop. A body of
//! known length keeps it; any other goes on chunked. Trailers are dropped.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pace::ClientClock;

/// How a client's body is waited for: at most `timeout` for each read, each wait noted on
/// `clock` (whose upstream is not to blame for it).
#[derive(Clone, Copy)]
pub struct Pace<'c> {
    pub clock: &'c ClientClock,
    pub timeout: Duration,
}

/// How a message's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (a bodiless request; a response to HEAD; 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// A response read until the upstream closes.
    UntilClose,
}

impl Framing {
    pub fn has_body(self) -> bool {
        !matches!(self, Self::Empty | Self::Length(0))
    }

    /// The header that frames this body on the next hop, if it needs one.
    pub fn header(self) -> Option<FramingHeader> {
        match self {
            Self::Empty => None,
            Self::Length(length) => Some(FramingHeader::Length(length)),
            Self::Chunked | Self::UntilClose => Some(FramingHeader::Chunked),
        }
    }
}

pub enum FramingHeader {
    Length(u64),
    Chunked,
}

impl FramingHeader {
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Length(length) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(*length).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Self::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the body: {0}")]
    Read(io::Error),
    #[error("writing the body: {0}")]
    Write(io::Error),
    #[error("the connection closed before the body ended")]
    Truncated,
    #[error("bad chunked encoding: {0}")]
    Chunked(&'static str),
    #[error("the body is over {0} bytes")]
    TooLarge(u64),
    #[error("no part of the body arrived within {0:?}")]
    Stalled(Duration),
}

impl BodyError {
    /// The fault is the reading side's (as opposed to the writing side's).
    pub fn is_source(&self) -> bool {
        !matches!(self, Self::Write(_))
    }
}

/// Reads taken at a time while a body streams; also the most a body buffers.
const READ_SIZE: usize = 64 * 1024;
/// The longest chunk-size line (with extensions) and the most trailer bytes taken.
pub(super) const MAX_CHUNK_LINE: usize = 4096;
pub(super) const MAX_TRAILERS: usize = 16 * 1024;
/// The most chunk-extension bytes in one body, as hyper's server allows: each line is
/// bounded, but a body of a million tiny chunks with 4 KiB extensions would not be.
pub(super) const MAX_EXTENSIONS: usize = 16 * 1024;

/// Copies the body framed as `framing` from `source` (its first bytes already in
/// `buffer`) to `sink`, after `out`'s bytes (a head, written with the body's first bytes in
/// one write). At most `limit` body bytes are taken; a `source` that is a client is read at
/// its `pace`. On return `buffer` holds what followed the body (a pipelined request).
pub async fn copy<R, W>(
    source: &mut R,
    buffer: &mut BytesMut,
    framing: Framing,
    sink: &mut W,
    out: &mut Vec<u8>,
    limit: Option<u64>,
    pace: Option<Pace<'_>>,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::Empty => flush(sink, out).await,
        Framing::Length(length) => {
            if let Some(limit) = limit.filter(|limit| length > *limit) {
                return Err(BodyError::TooLarge(limit));
            }
            let mut left = length;
            loop {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                out.extend_from_slice(&buffer[..take]);
                buffer.advance(take);
                left -= take as u64;
                flush(sink, out).await?;
                if left == 0 {
                    return Ok(());
                }
                fill(source, buffer, pace).await?;
            }
        }
        Framing::Chunked => {
            let mut decoder = ChunkDecoder::default();
            let mut taken = 0u64;
            loop {
                while let Some(piece) = decoder.next(buffer)? {
                    match piece {
                        Piece::Data(length) => {
                            taken += length as u64;
                            if let Some(limit) = limit.filter(|limit| taken > *limit) {
                                return Err(BodyError::TooLarge(limit));
                            }
                            write_chunk(out, &buffer[..length]);
                            buffer.advance(length);
                        }
                        Piece::End => {
                            out.extend_from_slice(b"0\r\n\r\n");
                            return flush(sink, out).await;
                        }
                    }
                }
                flush(sink, out).await?;
                fill(source, buffer, pace).await?;
            }
        }
        Framing::UntilClose => loop {
            if !buffer.is_empty() {
                write_chunk(out, buffer);
                buffer.clear();
            }
            flush(sink, out).await?;
            buffer.reserve(READ_SIZE);
            if source.read_buf(buffer).await.map_err(BodyError::Read)? == 0 {
                out.extend_from_slice(b"0\r\n\r\n");
                return flush(sink, out).await;
            }
        },
    }
}

/// Reads more of a body that must go on: the source closing here truncates it.
async fn fill<R: AsyncRead + Unpin>(
    source: &mut R,
    buffer: &mut BytesMut,
    pace: Option<Pace<'_>>,
) -> Result<(), BodyError> {
    buffer.reserve(READ_SIZE);
    let read = match pace {
        None => source.read_buf(buffer).await,
        Some(pace) => {
            pace.clock.waiting();
            let read = tokio::time::timeout(pace.timeout, source.read_buf(buffer)).await;
            let Ok(read) = read else {
                return Err(BodyError::Stalled(pace.timeout));
            };
            pace.clock.heard(Instant::now());
            read
        }
    };
    match read {
        Ok(0) => Err(BodyError::Truncated),
        Ok(_) => Ok(()),
        Err(error) => Err(BodyError::Read(error)),
    }
}

async fn flush<W: AsyncWrite + Unpin>(sink: &mut W, out: &mut Vec<u8>) -> Result<(), BodyError> {
    if !out.is_empty() {
        sink.write_all(out).await.map_err(BodyError::Write)?;
        out.clear();
    }
    Ok(())
}

fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// What the decoder found next in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece {
    /// The buffer's first this many bytes are body data.
    Data(usize),
    /// The body ended (the last chunk and trailers are consumed).
    End,
}

#[derive(Debug, Default)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Decodes `Transfer-Encoding: chunked` (RFC 9112 section 7.1) from the front of a buffer,
/// consuming the framing and leaving data for the caller to take. As strict as hyper's
/// server, and nginx: every line ends in CRLF; a size is hexadecimal digits alone (no sign,
/// prefix or leading space) that fit in 64 bits, optionally followed by white space and
/// `;` extensions, which hold no control bytes (hyper's takes any but CR and LF); trailers
/// are header fields.
#[derive(Debug, Default)]
pub(super) struct ChunkDecoder {
    state: ChunkState,
    /// How much of the line being read has been searched for its end: a line arriving a
    /// byte at a time is searched once, not once per byte.
    scanned: usize,
    /// Extension bytes so far.
    extensions: usize,
    /// Bytes searched for line ends, for the tests' bound on work.
    #[cfg(test)]
    pub(super) examined: usize,
}

impl ChunkDecoder {
    /// The next piece, or `None` when the buffer needs more bytes.
    pub(super) fn next(&mut self, buffer: &mut BytesMut) -> Result<Option<Piece>, BodyError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = self.take_line(buffer, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let (size, extension) = size_line(&line)?;
                    self.extensions += extension;
                    if self.extensions > MAX_EXTENSIONS {
                        return Err(BodyError::Chunked("the chunk extensions are too long"));
                    }
                    self.state = if size == 0 {
                        ChunkState::Trailers(0)
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buffer.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buffer.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Some(Piece::Data(take)));
                }
                ChunkState::DataEnd => {
                    match buffer.get(..2) {
                        Some(b"\r\n") => {}
                        // Wrong already, or the CR of a CRLF to come.
                        Some(_) => return Err(BodyError::Chunked("a chunk does not end in CRLF")),
                        None if buffer.first().is_none_or(|b| *b == b'\r') => return Ok(None),
                        None => return Err(BodyError::Chunked("a chunk does not end in CRLF")),
                    }
                    buffer.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers(seen) => {
                    let max = MAX_TRAILERS.saturating_sub(seen);
                    let Some(line) = self.take_line(buffer, max)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                        return Ok(Some(Piece::End));
                    }
                    if !is_field_line(&line) {
                        return Err(BodyError::Chunked("a trailer is not a header field"));
                    }
                    self.state = ChunkState::Trailers(seen + line.len() + 2);
                }
                ChunkState::Done => return Ok(Some(Piece::End)),
            }
        }
    }

    /// Takes one line off the buffer's front, without its CRLF; `None` until it is all
    /// there. A line over `max` bytes, or ending in a bare LF, is an error.
    fn take_line(
        &mut self,
        buffer: &mut BytesMut,
        max: usize,
    ) -> Result<Option<BytesMut>, BodyError> {
        // The line and its CRLF: nothing past them is searched.
        let window = buffer.len().min(max + 2);
        let from = self.scanned.min(window);
        let found = buffer[from..window].iter().position(|b| *b == b'\n');
        #[cfg(test)]
        {
            self.examined += found.map_or(window - from, |offset| offset + 1);
        }
        match found {
            Some(offset) => {
                let end = from + offset;
                self.scanned = 0;
                if end == 0 || buffer[end - 1] != b'\r' {
                    return Err(BodyError::Chunked("a line ends in a bare LF"));
                }
                let mut line = buffer.split_to(end + 1);
                line.truncate(end - 1);
                Ok(Some(line))
            }
            None if window == max + 2 => Err(BodyError::Chunked("a line is too long")),
            None => {
                self.scanned = window;
                Ok(None)
            }
        }
    }
}

/// A chunk-size line: the size, and how many extension bytes follow it. `1*HEXDIG`, then
/// optional white space (hyper's server allows it, as do others), then `;` and extensions.
fn size_line(line: &[u8]) -> Result<(u64, usize), BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(BodyError::Chunked("a chunk size is missing"));
    }
    let size = line[..digits]
        .iter()
        .try_fold(0u64, |size, digit| {
            let value = (*digit as char).to_digit(16)?;
            size.checked_mul(16)?.checked_add(u64::from(value))
        })
        .ok_or(BodyError::Chunked("a chunk size is too large"))?;
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count()..];
    match rest.split_first() {
        None => Ok((size, 0)),
        Some((b';', extension)) if !extension.iter().any(|b| is_control(*b)) => {
            Ok((size, extension.len()))
        }
        Some((b';', _)) => Err(BodyError::Chunked("a chunk extension has a control byte")),
        Some(_) => Err(BodyError::Chunked("a chunk size is not hexadecimal")),
    }
}

/// `name ":" value`: a token, then a value without control bytes (but tabs).
fn is_field_line(line: &[u8]) -> bool {
    let name = line.iter().take_while(|b| is_tchar(**b)).count();
    name > 0 && line.get(name) == Some(&b':') && !line[name + 1..].iter().any(|b| is_control(*b))
}

/// A control byte, bar the tab white space allows (RFC 9110 section 5.5).
fn is_control(byte: u8) -> bool {
    byte.is_ascii_control() && byte != b'\t'
}

/// RFC 9110 section 5.6.2.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies `input` as framed by `framing`, fed in reads of `step` bytes.
    async fn relay(
        input: &[u8],
        framing: Framing,
        step: usize,
        limit: Option<u64>,
    ) -> (Result<(), BodyError>, Vec<u8>, BytesMut) {
        let mut reads = Trickle { rest: input, step };
        let mut buffer = BytesMut::new();
        let mut sink = Vec::new();
        let mut out = b"HEAD\r\n".to_vec();
        let result = copy(
            &mut reads,
            &mut buffer,
            framing,
            &mut sink,
            &mut out,
            limit,
            None,
        )
        .await;
        (result, sink, buffer)
    }

    /// A reader giving its bytes `step` at a time, as a slow peer would.
    struct Trickle<'a> {
        rest: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let n = self.step.min(self.rest.len()).min(buf.remaining());
            buf.put_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_body_of_known_length_is_copied_after_the_head_and_what_follows_stays() {
        for step in [1, 3, 100] {
            let (result, sink, rest) = relay(
                b"hello worldGET / HTTP/1.1",
                Framing::Length(11),
                step,
                None,
            )
            .await;
            result.unwrap();
            assert_eq!(sink, b"HEAD\r\nhello world", "step {step}");
            // What was read past the body is the next request's start.
            assert!(b"GET / HTTP/1.1".starts_with(&rest), "step {step}");
        }
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_and_chunked_again_without_trailers() {
        let input = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 7, 200] {
            let (result, sink, rest) = relay(input, Framing::Chunked, step, None).await;
            result.unwrap();
            let body = String::from_utf8(sink).unwrap();
            // Re-chunked as it arrived: the data is whole and the framing valid.
            assert!(
                body.starts_with("HEAD\r\n") && body.ends_with("0\r\n\r\n"),
                "{body}"
            );
            let data: String = decode_all(body.trim_start_matches("HEAD\r\n").as_bytes());
            assert_eq!(data, "hello world", "step {step}");
            assert!(b"NEXT".starts_with(&rest), "step {step}");
        }
    }

    fn decode_all(mut framed: &[u8]) -> String {
        let mut data = Vec::new();
        loop {
            let line_end = framed.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&framed[..line_end]).unwrap(), 16)
                .unwrap();
            framed = &framed[line_end + 2..];
            if size == 0 {
                return String::from_utf8(data).unwrap();
            }
            data.extend_from_slice(&framed[..size]);
            framed = &framed[size + 2..];
        }
    }

    #[tokio::test]
    async fn a_body_read_until_close_goes_on_chunked() {
        let (result, sink, _) = relay(b"all of it", Framing::UntilClose, 4, None).await;
        result.unwrap();
        let body = String::from_utf8(sink).unwrap();
        assert_eq!(
            decode_all(body.trim_start_matches("HEAD\r\n").as_bytes()),
            "all of it"
        );
    }

    #[tokio::test]
    async fn bad_or_cut_bodies_are_errors_naming_why() {
        let (result, ..) = relay(b"short", Framing::Length(10), 2, None).await;
        assert!(matches!(result, Err(BodyError::Truncated)), "{result:?}");
        let (result, ..) = relay(b"zz\r\nhello\r\n0\r\n\r\n", Framing::Chunked, 64, None).await;
        assert!(matches!(result, Err(BodyError::Chunked(_))), "{result:?}");
        let (result, ..) = relay(b"5\r\nhelloXX0\r\n\r\n", Framing::Chunked, 64, None).await;
        assert!(matches!(result, Err(BodyError::Chunked(_))), "{result:?}");
        let (result, ..) = relay(b"5\r\nhel", Framing::Chunked, 64, None).await;
        assert!(matches!(result, Err(BodyError::Truncated)), "{result:?}");
        let endless_size = vec![b'1'; MAX_CHUNK_LINE + 10];
        let (result, ..) = relay(&endless_size, Framing::Chunked, 512, None).await;
        assert!(matches!(result, Err(BodyError::Chunked(_))), "{result:?}");
        let (result, ..) = relay(b"10000000000000000\r\n", Framing::Chunked, 64, None).await;
        assert!(matches!(result, Err(BodyError::Chunked(_))), "{result:?}");
    }

    /// Each is a 400 from hyper's server or nginx; a decoder taking any of them would read
    /// a body another hop reads differently.
    #[tokio::test]
    async fn chunk_framing_is_read_as_strictly_as_hypers_server_reads_it() {
        for bad in [
            &b"+5\r\nhello\r\n0\r\n\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"-1\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000005\r\nhello\r\n0\r\n\r\n",
            b";x\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhel\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
            b"5\r\nhello\r\n0\r\n folded: x\r\n\r\n",
            b"5\r\nhello\r\n0\r\nx-t: 1\nx-u: 2\r\n\r\n",
        ] {
            for step in [1, 3, 64] {
                let (result, ..) = relay(bad, Framing::Chunked, step, None).await;
                assert!(
                    matches!(result, Err(BodyError::Chunked(_))),
                    "{:?} in steps of {step}: {result:?}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
        for good in [
            &b"5 \t;x\r\nhello\r\n0\r\n\r\n"[..],
            b"5;name=\"v a\";y\r\nhello\r\n0 \r\n\r\n",
            b"0000000000000000005\r\nhello\r\n000\r\n\r\n",
            b"5\r\nhello\r\n0\r\nx-sum: 1\r\nx-other:\t2\r\n\r\n",
        ] {
            let (result, sink, _) = relay(good, Framing::Chunked, 2, None).await;
            result.unwrap();
            let body = String::from_utf8(sink).unwrap();
            assert_eq!(
                decode_all(body.trim_start_matches("HEAD\r\n").as_bytes()),
                "hello"
            );
        }
    }

    #[tokio::test]
    async fn a_client_sending_nothing_for_its_timeout_stalls_and_its_waits_are_noted() {
        let (mut client, mut router) = tokio::io::duplex(64);
        client.write_all(b"hel").await.unwrap();
        let clock = ClientClock::new(Instant::now());
        let pace = Pace {
            clock: &clock,
            timeout: Duration::from_millis(100),
        };
        let (mut buffer, mut sink, mut out) = (BytesMut::new(), Vec::new(), Vec::new());
        let copied = copy(
            &mut router,
            &mut buffer,
            Framing::Length(5),
            &mut sink,
            &mut out,
            None,
            Some(pace),
        )
        .await;
        assert!(matches!(copied, Err(BodyError::Stalled(_))), "{copied:?}");
        assert!(copied.unwrap_err().is_source(), "the client's fault");
        assert_eq!(sink, b"hel", "what came went on");
        assert_eq!(clock.last_heard(), None, "it was waiting for the client");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_by_length_or_as_they_stream() {
        let (result, sink, _) = relay(b"0123456789", Framing::Length(10), 4, Some(5)).await;
        assert!(matches!(result, Err(BodyError::TooLarge(5))), "{result:?}");
        assert!(sink.is_empty(), "nothing was sent on");
        let chunked = b"4\r\n0123\r\n4\r\n4567\r\n0\r\n\r\n";
        let (result, ..) = relay(chunked, Framing::Chunked, 64, Some(6)).await;
        assert!(matches!(result, Err(BodyError::TooLarge(6))), "{result:?}");
        let (result, ..) = relay(chunked, Framing::Chunked, 64, Some(8)).await;
        result.unwrap();
    }
}
