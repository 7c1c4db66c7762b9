//! What the end-to-end tests share: a fresh database per test (SQLite or PostgreSQL), and the
//! `junction` binary run as a user runs it.

pub mod browser;
pub mod catalog;
pub mod database;
pub mod federation;
pub mod graphql_ws;
pub mod kafka;
pub mod media;
pub mod postgres;
pub mod scenarios;

pub mod process;
pub mod receiver;
pub mod redis;
pub mod upstream;

pub use database::TestDatabase;
pub use process::{Junction, cli};

/// A GET with a plain HTTP client (Junction's own clients bring their TLS setup; this one
/// only talks to loopback).
pub async fn http_get(url: String) -> reqwest::Result<reqwest::Response> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    });
    client.get(url).send().await
}

/// Runs each listed `async fn name(db: TestDatabase)` twice: on SQLite and on PostgreSQL.
/// The PostgreSQL half fails, loudly, when no server is configured.
#[macro_export]
macro_rules! on_both_databases {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$test($crate::support::TestDatabase::sqlite().await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$test($crate::support::TestDatabase::postgres().await).await
                }
            }
        )*
    };
}
