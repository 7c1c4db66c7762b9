//! How fast a client sends its request body, kept apart from how fast an upstream answers:
//! a client that stops sending is answered 408 once the route's `body_read_timeout` passes
//! without a byte, and the time the router spends waiting on the client never counts as the
//! upstream's (neither for the route's `timeout` nor for its passive health).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// When the client last gave the request something (its head, then each piece of its
/// body), or that the router is waiting for it to. Shared with hyper's client, whose
/// connection task reads the body on another thread, hence atomic.
#[derive(Debug)]
pub(super) struct ClientClock {
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last byte heard, or `WAITING`.
    heard: AtomicU64,
}

const WAITING: u64 = u64::MAX;

impl ClientClock {
    /// A clock for a request whose head arrived at `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            heard: AtomicU64::new(0),
        }
    }

    /// The router waits for the client's next bytes.
    pub fn waiting(&self) {
        self.heard.store(WAITING, Ordering::Relaxed);
    }

    /// The client sent something at `at`.
    pub fn heard(&self, at: Instant) {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let since = u64::try_from(since).unwrap_or(WAITING - 1).min(WAITING - 1);
        self.heard.store(since, Ordering::Relaxed);
    }

    /// When the client last sent something; `None` while the router waits for it.
    pub fn last_heard(&self) -> Option<Instant> {
        match self.heard.load(Ordering::Relaxed) {
            WAITING => None,
            since => Some(self.epoch + Duration::from_nanos(since)),
        }
    }
}

/// Why a client's body could not be read: not the upstream's doing.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientBodyError {
    #[error("no part of the request body arrived within {0:?}")]
    Stalled(Duration),
    #[error("the request body is malformed: {0}")]
    Malformed(String),
    #[error("the request body broke off: {0}")]
    Broken(String),
}

/// A client's request body on its way upstream through hyper's client: each wait for the
/// client is noted on its clock, and a wait over `timeout` ends the body with
/// [`ClientBodyError::Stalled`].
pub(super) struct ClientBody {
    inner: Body,
    clock: std::sync::Arc<ClientClock>,
    timeout: Duration,
    /// Armed when a wait begins (not when the last piece came: hyper's client may not ask
    /// for more for a while, when the upstream is slow to take it).
    timer: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
}

impl ClientBody {
    pub fn new(inner: Body, clock: std::sync::Arc<ClientClock>, timeout: Duration) -> Self {
        Self {
            inner,
            clock,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
        }
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                this.clock.heard(Instant::now());
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(classify(&error)))),
            Poll::Ready(None) => {
                this.clock.heard(Instant::now());
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    this.clock.waiting();
                    let due = tokio::time::Instant::now() + this.timeout;
                    this.timer.as_mut().reset(due);
                }
                let timeout = this.timeout;
                this.timer
                    .as_mut()
                    .poll(cx)
                    .map(|()| Some(Err(ClientBodyError::Stalled(timeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What went wrong with a body hyper's server was reading: its decoder refusing the
/// framing (an `InvalidInput`/`InvalidData` I/O error underneath), or the body ending early.
fn classify(error: &axum::Error) -> ClientBodyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            )
        {
            return ClientBodyError::Malformed(io.to_string());
        }
        source = cause.source();
    }
    ClientBodyError::Broken(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_tells_when_the_client_was_last_heard_or_that_it_is_awaited() {
        let epoch = Instant::now();
        let clock = ClientClock::new(epoch);
        assert_eq!(clock.last_heard(), Some(epoch));
        clock.waiting();
        assert_eq!(clock.last_heard(), None);
        let later = epoch + Duration::from_millis(1500);
        clock.heard(later);
        assert_eq!(clock.last_heard(), Some(later));
    }

    #[tokio::test]
    async fn a_body_waiting_longer_than_its_timeout_ends_stalled() {
        let (sender, body) = channel_body();
        let clock = std::sync::Arc::new(ClientClock::new(Instant::now()));
        let mut body = ClientBody::new(body, clock.clone(), Duration::from_millis(100));
        sender.send(Bytes::from_static(b"ab")).await.unwrap();
        let frame = http_body_util::BodyExt::frame(&mut body).await.unwrap();
        assert_eq!(frame.unwrap().into_data().unwrap(), "ab");
        assert!(clock.last_heard().is_some());
        // Nothing more: a tenth of a second later, the body ends in error.
        let next = http_body_util::BodyExt::frame(&mut body).await.unwrap();
        assert!(matches!(next, Err(ClientBodyError::Stalled(_))), "{next:?}");
        assert_eq!(clock.last_heard(), None, "it was waiting for the client");
    }

    /// A body fed through a channel, as a slow client feeds one.
    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let data = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(data), receiver))
        });
        (sender, Body::from_stream(stream))
    }
}
