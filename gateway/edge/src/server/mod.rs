//! Serving an address until shutdown, letting in-flight requests finish within a grace
//! period. Each connection starts on the site's [`FastPath`] when it has one (the REST
//! routes' HTTP/1 path); the first request that path does not take hands the connection to
//! hyper's server and the axum app.

pub mod head;
mod rewind;
mod stop;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::BytesMut;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use self::rewind::Rewind;
use self::stop::Stop;
pub use self::stop::StopWatch;

/// How a connection left a fast path.
pub enum Served {
    /// It is done: the client left or asked to close, or the server is stopping.
    Closed,
    /// The general server takes it from here, starting with these bytes already read.
    HandOff(BytesMut),
}

/// A server of its own for some requests, reading the connection before hyper does (the REST
/// routes' HTTP/1 path: fewer copies and allocations than the general server).
pub trait FastPath: Send + Sync + 'static {
    /// Serves requests on `stream` while each is one of its own, taking the current site's
    /// fast path from `current` before each request (a reload replaces it between two).
    fn serve<'a>(
        current: &'a (dyn Fn() -> Option<Arc<Self>> + Send + Sync),
        stream: &'a mut TcpStream,
        peer: SocketAddr,
        stop: &'a StopWatch,
        header_read_timeout: Duration,
    ) -> impl Future<Output = Served> + Send + 'a;
}

/// The fast path of a site that has none.
pub enum NoFastPath {}

impl FastPath for NoFastPath {
    async fn serve<'a>(
        _: &'a (dyn Fn() -> Option<Arc<Self>> + Send + Sync),
        _: &'a mut TcpStream,
        _: SocketAddr,
        _: &'a StopWatch,
        _: Duration,
    ) -> Served {
        Served::HandOff(BytesMut::new())
    }
}

/// What one address serves: the axum app, and the fast path taking what it can first.
pub struct Site<F: FastPath = NoFastPath> {
    pub app: Router,
    pub fast_path: Option<Arc<F>>,
    /// How long a connection may wait for a request head, idle or partly sent.
    pub header_read_timeout: Duration,
}

impl<F: FastPath> Clone for Site<F> {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
            fast_path: self.fast_path.clone(),
            header_read_timeout: self.header_read_timeout,
        }
    }
}

/// The site being served. A reload replaces it: each request takes the site current when
/// it arrives and finishes on it.
pub struct CurrentSite<F: FastPath = NoFastPath>(Arc<RwLock<Site<F>>>);

impl<F: FastPath> Clone for CurrentSite<F> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<F: FastPath> CurrentSite<F> {
    pub fn new(site: Site<F>) -> Self {
        Self(Arc::new(RwLock::new(site)))
    }

    pub fn replace(&self, site: Site<F>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = site;
    }

    fn app(&self) -> Router {
        self.0.read().unwrap_or_else(|p| p.into_inner()).app.clone()
    }

    fn fast_path(&self) -> Option<Arc<F>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .fast_path
            .clone()
    }

    fn header_read_timeout(&self) -> Duration {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .header_read_timeout
    }
}

impl<F: FastPath> From<Site<F>> for CurrentSite<F> {
    fn from(site: Site<F>) -> Self {
        Self::new(site)
    }
}

impl From<Router> for CurrentSite {
    fn from(app: Router) -> Self {
        Self::new(Site {
            app,
            fast_path: None,
            header_read_timeout: crate::layers::HttpConfig::default().header_read_timeout,
        })
    }
}

/// Serves `site` until `shutdown` resolves, then stops accepting connections and waits for
/// in-flight requests, for at most `grace`.
pub async fn serve<F: FastPath>(
    listener: TcpListener,
    site: impl Into<CurrentSite<F>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    let site = site.into();
    let mut stop = Stop::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    pause_after(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses often go out in several writes (head, then streamed chunks); with
        // Nagle's algorithm on, each small write after the first waits for the client's
        // delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
        }
        if let Some(watch) = stop.watch() {
            tokio::spawn(connection(stream, peer, site.clone(), watch));
        }
    }
    drop(listener);
    stop.stop();
    tokio::select! {
        () = stop.finished() => Ok(()),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "shutdown grace period elapsed; dropping remaining connections");
            Ok(())
        }
    }
}

/// Accepting failed: a connection reset while queued is nothing; running out of file
/// descriptors or memory is waited out rather than spun on.
async fn pause_after(error: &io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn connection<F: FastPath>(
    mut stream: TcpStream,
    peer: SocketAddr,
    site: CurrentSite<F>,
    stop: StopWatch,
) {
    let header_read_timeout = site.header_read_timeout();
    let mut read = BytesMut::new();
    if site.fast_path().is_some() {
        let current = || site.fast_path();
        match F::serve(&current, &mut stream, peer, &stop, header_read_timeout).await {
            Served::Closed => return,
            Served::HandOff(bytes) => read = bytes,
        }
    }
    let io = TokioIo::new(Rewind {
        read: read.freeze(),
        stream,
    });
    // The peer address reaches handlers: REST routes forward it and rate-limit by it.
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        // The head rules the fast path applies, applied here too: which server reads a
        // request must not change its answer.
        let headers = request.headers().iter();
        let refused = head::check(
            request.version(),
            headers.map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
        )
        .err()
        .map(|refusal| refusal.response(request.headers().get(crate::layers::REQUEST_ID)));
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        match refused {
            Some(refusal) => Either::Left(std::future::ready(Ok(refusal))),
            None => Either::Right(site.app().oneshot(request)),
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = stop.stopped(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::{Notify, oneshot};

    use super::*;

    /// A router whose one route signals when it starts, then takes `delay`.
    async fn slow_server(
        delay: Duration,
        grace: Duration,
    ) -> (
        std::net::SocketAddr,
        Arc<Notify>,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let started = Arc::new(Notify::new());
        let notify = Arc::clone(&started);
        let app = Router::new().route(
            "/slow",
            get(move || async move {
                notify.notify_one();
                tokio::time::sleep(delay).await;
                "done"
            }),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            grace,
        ));
        (address, started, stop, server)
    }

    async fn get_slow(address: std::net::SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        response
    }

    #[tokio::test]
    async fn in_flight_requests_finish_after_shutdown_begins() {
        let (address, started, stop, server) =
            slow_server(Duration::from_millis(300), Duration::from_secs(30)).await;
        let request = tokio::spawn(get_slow(address));
        started.notified().await;
        stop.send(()).unwrap();
        let response = request.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        server.await.unwrap().unwrap();
        // New connections are refused once the server is down.
        assert!(TcpStream::connect(address).await.is_err());
    }

    #[tokio::test]
    async fn requests_outliving_the_grace_period_are_cut() {
        let (address, started, stop, server) =
            slow_server(Duration::from_secs(3600), Duration::from_millis(50)).await;
        let request = tokio::spawn(get_slow(address));
        started.notified().await;
        stop.send(()).unwrap();
        // The server returns although the hour-long request never finished.
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returned after the grace period")
            .unwrap()
            .unwrap();
        request.abort();
    }
}
