//! Kept-alive connections to one upstream, reused last-in first-out (the warmest first).
//! An idle connection the upstream has closed is noticed when taken, from readiness the
//! runtime already holds: no system call in the common case. The pool is split in shards,
//! one per worker thread in turn, so that threads do not contend for one lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Idle connections kept per upstream, per shard.
const MAX_IDLE: usize = 64;
const SHARDS: usize = 4;
/// What a new connection's buffer holds: a response head, usually with its body.
const HEAD_BUFFER: usize = 8 * 1024;
/// An idle connection older than this is closed rather than reused: upstreams commonly
/// close theirs after 60 to 75 seconds, and a request must not race that.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// One connection to an upstream, with what has been read from it and not yet used.
pub struct Connection {
    pub stream: TcpStream,
    pub buffer: BytesMut,
    /// It has carried a request before.
    pub reused: bool,
}

#[derive(Default)]
pub struct Pool {
    shards: [Mutex<Vec<(Connection, Instant)>>; SHARDS],
}

/// This thread's shard.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// The most recently used idle connection still open at `now`, if any: this thread's
    /// shard first, then the others'.
    pub fn take(&self, now: Instant) -> Option<Connection> {
        let first = shard();
        (0..SHARDS).find_map(|offset| {
            let shard = &self.shards[(first + offset) % SHARDS];
            let mut idle = shard.lock().unwrap_or_else(|p| p.into_inner());
            while let Some((mut connection, since)) = idle.pop() {
                if now.duration_since(since) < IDLE_TIMEOUT && is_open(&connection.stream) {
                    connection.reused = true;
                    return Some(connection);
                }
            }
            None
        })
    }

    /// Keeps a connection whose last response was read whole, idle since `since`.
    pub fn put(&self, mut connection: Connection, since: Instant) {
        if !connection.buffer.is_empty() {
            // Bytes past the response: the upstream is not speaking HTTP/1.1 properly.
            return;
        }
        // A large body grew it: an idle connection keeps only what a head needs.
        if connection.buffer.capacity() > 4 * HEAD_BUFFER {
            connection.buffer = BytesMut::with_capacity(HEAD_BUFFER);
        }
        let shard = &self.shards[shard()];
        let mut idle = shard.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((connection, since));
        }
    }
}

/// Opens a connection to `address` (`host:port`).
pub async fn connect(address: &str, timeout: Duration) -> std::io::Result<Connection> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting took over {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(Connection {
        stream,
        buffer: BytesMut::with_capacity(HEAD_BUFFER),
        reused: false,
    })
}

/// An idle connection is open while nothing arrived on it: the runtime clears readiness on
/// every short read, so a readable idle connection got a FIN, a reset or stray bytes.
fn is_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
        Poll::Ready(Err(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn idle_connections_are_reused_until_the_upstream_closes_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let pool = Pool::default();
        let connection = connect(&address, Duration::from_secs(5)).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        assert!(!connection.reused);
        pool.put(connection, Instant::now());
        let mut connection = pool
            .take(Instant::now())
            .expect("an idle connection is reused");
        assert!(connection.reused);
        // Still the same connection: what it sends arrives at the accepted end.
        connection.stream.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        pool.put(connection, Instant::now());

        // The upstream closes its end while the connection is idle.
        drop(accepted);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            pool.take(Instant::now()).is_none(),
            "a closed connection is not handed out"
        );
    }

    #[tokio::test]
    async fn a_connection_with_unread_bytes_is_not_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let pool = Pool::default();
        let mut connection = connect(&address, Duration::from_secs(5)).await.unwrap();
        connection.buffer.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        pool.put(connection, Instant::now());
        assert!(pool.take(Instant::now()).is_none());
    }

    #[tokio::test]
    async fn nobody_listening_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(connect(&address, Duration::from_secs(5)).await.is_err());
    }
}
