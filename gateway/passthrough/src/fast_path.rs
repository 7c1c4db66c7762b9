//! The REST routes as the server's fast path: each connection starts on the HTTP/1 path
//! ([`crate::http1`]) and is handed to hyper at the first request it does not take.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use junction_edge::server::{FastPath, Served, StopWatch};
use tokio::net::TcpStream;

use crate::Passthrough;

impl FastPath for Passthrough {
    async fn serve<'a>(
        current: &'a (dyn Fn() -> Option<Arc<Self>> + Send + Sync),
        stream: &'a mut TcpStream,
        peer: SocketAddr,
        stop: &'a StopWatch,
        header_read_timeout: Duration,
    ) -> Served {
        crate::http1::serve(stream, peer, current, stop, header_read_timeout).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use junction_edge::server::{Site, serve};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{Notify, oneshot};

    use crate::{Passthrough, RouteConfig};

    /// An upstream whose one route signals when it starts, then takes `delay`.
    async fn slow_upstream(delay: Duration) -> (std::net::SocketAddr, Arc<Notify>) {
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
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, started)
    }

    /// REST routes on the fast path: when the server stops, an idle keep-alive connection
    /// closes at once, and a request in flight finishes with `Connection: close`.
    #[tokio::test]
    async fn a_stop_closes_idle_rest_connections_and_lets_requests_finish() {
        let (upstream, started) = slow_upstream(Duration::from_millis(300)).await;
        let route: RouteConfig = toml::from_str(&format!(
            "name = \"slow\"\npath = \"/r\"\nrewrite = \"/\"\nupstreams = [\"http://{upstream}\"]"
        ))
        .unwrap();
        let routes = Passthrough::new(&[route], None, Default::default()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let site = Site {
            app: Router::new(),
            fast_path: Some(Arc::new(routes)),
            header_read_timeout: Duration::from_secs(30),
        };
        let server = tokio::spawn(serve(
            listener,
            site,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(30),
        ));

        // An idle keep-alive connection, after one request.
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET /r/missing HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 1024];
        let n = idle.read(&mut answer).await.unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 404"),
            "{:?}",
            String::from_utf8_lossy(&answer[..n])
        );

        let mut busy = TcpStream::connect(address).await.unwrap();
        busy.write_all(b"GET /r/slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        started.notified().await;
        stop.send(()).unwrap();
        let mut response = String::new();
        busy.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("connection: close"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        assert_eq!(
            idle.read(&mut answer).await.unwrap(),
            0,
            "the idle connection closed"
        );
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returned")
            .unwrap()
            .unwrap();
    }
}
