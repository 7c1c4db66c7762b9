//! An open-loop load generator for latency at a fixed request rate (wrk only saturates):
//! requests leave on a fixed schedule whatever the answers do (each on its own task), so a
//! stall cannot hold back the requests after it and hide in the percentiles (no coordinated
//! omission). Latency runs from when a request left (tokio's timer is only millisecond-exact,
//! so counting from the due time would add up to a millisecond to every figure).
//! `benches/passthrough.sh` runs it.
//!
//!   paced_load URL RATE SECONDS [HEADER: VALUE]...
//!
//! Prints `requests=N errors=N p50_us=N p90_us=N p99_us=N max_us=N`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, rate, seconds, headers @ ..] = args.as_slice() else {
        eprintln!("usage: paced_load URL RATE SECONDS [HEADER: VALUE]...");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("RATE: requests per second");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let headers: Vec<(HeaderName, HeaderValue)> = headers
        .iter()
        .map(|h| {
            let (name, value) = h.split_once(':').expect("HEADER: VALUE");
            (
                name.trim().parse().expect("header name"),
                value.trim().parse().expect("header value"),
            )
        })
        .collect();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(connector);
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..total {
        let due = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let mut request = Request::get(url.as_str()).body(Body::empty()).unwrap();
        for (name, value) in &headers {
            request.headers_mut().insert(name, value.clone());
        }
        let (client, done) = (client.clone(), done_tx.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match client.request(request).await {
                Ok(response) => {
                    let success = response.status().is_success();
                    success && response.into_body().collect().await.is_ok()
                }
                Err(_) => false,
            };
            let _ = done.send((ok, sent.elapsed()));
        });
    }
    drop(done_tx);
    let (mut latencies, mut errors) = (Vec::with_capacity(total), 0);
    while let Some((ok, latency)) = done_rx.recv().await {
        if ok {
            latencies.push(latency.as_micros() as u64);
        } else {
            errors += 1;
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "requests={} errors={errors} p50_us={} p90_us={} p99_us={} max_us={}",
        latencies.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        latencies.last().copied().unwrap_or(0)
    );
}
