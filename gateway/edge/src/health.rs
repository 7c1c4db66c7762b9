//! `/health/live` (the process answers) and `/health/ready` (every probe passes).
//!
//! Probes are supplied by whoever assembles the process (the database probe in `junction
//! serve`), so the router itself stays independent of any store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// How long one probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One readiness check: a name and an async function returning why it is not ready.
#[derive(Clone)]
pub struct ReadinessProbe {
    name: &'static str,
    check: Arc<dyn Fn() -> ProbeFuture + Send + Sync>,
}

impl ReadinessProbe {
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            check: Arc::new(move || Box::pin(check())),
        }
    }
}

pub fn routes(probes: Vec<ReadinessProbe>) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "live"})) }),
        )
        .route("/health", get(|| async { Json(json!({"status": "live"})) }))
        .route("/health/ready", get(ready))
        .with_state(Arc::new(probes))
}

async fn ready(State(probes): State<Arc<Vec<ReadinessProbe>>>) -> (StatusCode, Json<Value>) {
    let mut all_ready = true;
    let mut checks = serde_json::Map::new();
    for probe in probes.iter() {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, (probe.check)())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")));
        let entry = match outcome {
            Ok(()) => json!({"status": "ready"}),
            Err(reason) => {
                all_ready = false;
                json!({"status": "not ready", "reason": reason})
            }
        };
        checks.insert(probe.name.to_owned(), entry);
    }
    let status = if all_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if all_ready { "ready" } else { "not ready" };
    (status, Json(json!({"status": word, "checks": checks})))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_ready(probes: Vec<ReadinessProbe>) -> (StatusCode, Value) {
        let response = routes(probes)
            .oneshot(Request::get("/health/ready").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn ready_when_every_probe_passes() {
        let (status, body) = get_ready(vec![ReadinessProbe::new("db", || async { Ok(()) })]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["checks"]["db"]["status"], "ready");
    }

    #[tokio::test]
    async fn one_failing_probe_makes_it_unavailable_with_the_reason() {
        let (status, body) = get_ready(vec![
            ReadinessProbe::new("db", || async { Ok(()) }),
            ReadinessProbe::new("migrations", || async { Err("2 pending".to_owned()) }),
        ])
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["migrations"]["reason"], "2 pending");
        assert_eq!(body["checks"]["db"]["status"], "ready");
    }
}
