//! Serving an axum app until shutdown, letting in-flight requests finish within a grace period.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

/// Serves `app` until `shutdown` resolves, then stops accepting connections and waits for
/// in-flight requests, for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
    // Responses often go out in several writes (headers, then streamed chunks); with Nagle's
    // algorithm on, each small write after the first waits for the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
        }
    });
    // The peer address reaches handlers: REST routes forward it and rate-limit by it.
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = begun_tx.send(());
    })
    .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        _ = async {
            if begun_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(?grace, "shutdown grace period elapsed; dropping remaining connections");
            Ok(())
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
