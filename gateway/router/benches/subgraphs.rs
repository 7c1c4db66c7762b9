//! The classic four subgraphs (accounts, products, inventory, reviews) for the router
//! benchmark, on fixed loopback ports until killed. They are the ones the federation tests use.
//!
//!   cargo bench -p junction-router --bench subgraphs -- 4201   # ports 4201..4204
//!
//! `GET /requests` on the port after the last subgraph's (4205) answers how many requests the
//! four have served, so the benchmark counts each router's subgraph fetches per operation.

#[path = "../../../tests/e2e/support/federation.rs"]
#[allow(dead_code)] // the tests use more of it than the benchmark
mod federation;

#[tokio::main]
async fn main() {
    let first: u16 = std::env::args()
        .skip(1)
        .find(|a| a.parse::<u16>().is_ok())
        .and_then(|a| a.parse().ok())
        .unwrap_or(4201);
    let subgraphs = federation::Subgraphs::start_on_ports(first).await;
    println!("accounts={}", subgraphs.accounts.url);
    println!("products={}", subgraphs.products.url);
    println!("inventory={}", subgraphs.inventory.url);
    println!("reviews={}", subgraphs.reviews.url);
    let subgraphs = std::sync::Arc::new(subgraphs);
    let counter = axum::Router::new().route(
        "/requests",
        axum::routing::get(move || {
            let subgraphs = std::sync::Arc::clone(&subgraphs);
            async move { subgraphs.total_requests().to_string() }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", first + 4))
        .await
        .expect("the request counter's port");
    axum::serve(listener, counter)
        .await
        .expect("serve the request counter");
}
