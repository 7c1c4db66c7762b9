//! Subgraphs over HTTP: one keep-alive pool, a timeout per subgraph, the caller's identity
//! signed into every request for that request alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use junction_federation::supergraph::Graph;
use junction_schema::Identity;
use junction_schema::identity::{Audience, Binding, IdentitySigner};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::metrics::FetchOutcome;

use super::{Downstream, Forwarded, RequestContext, SubgraphError, SubgraphExecutor};

/// Talks to subgraphs: one keep-alive pool, a timeout per request, and the caller's identity
/// signed into every request.
#[derive(Clone)]
pub struct SubgraphClient {
    http: reqwest::Client,
    signer: Option<IdentitySigner>,
    /// By subgraph URL, for subgraphs with a timeout of their own.
    timeouts: HashMap<String, Duration>,
}

impl SubgraphClient {
    pub fn new(timeout: Duration, signer: Option<IdentitySigner>) -> Result<Self, String> {
        Ok(Self {
            http: junction_edge::clients::plain_client(timeout)?,
            signer,
            timeouts: HashMap::new(),
        })
    }

    /// Timeouts of their own for the subgraphs at these URLs.
    pub fn with_timeouts(mut self, timeouts: HashMap<String, Duration>) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// What every request to a subgraph carries: the caller's identity (and nothing a
    /// client claimed) signed for `request` to the subgraph `graph`, and the trace context.
    pub(crate) fn downstream_headers(
        &self,
        identity: Option<&Identity>,
        forwarded: &Forwarded,
        graph: &str,
        request: Downstream<'_>,
    ) -> HeaderMap {
        // A fresh map: no header a client sent is passed on.
        let mut headers = HeaderMap::new();
        if let (Some(signer), Some(identity)) = (&self.signer, identity) {
            let audience = Audience::subgraph(graph);
            let binding = Binding {
                audience: &audience,
                method: Some(request.method),
                target: Some(request.target),
                body: Some(Binding::digest(request.body)),
                request_id: forwarded.request_id.as_ref().and_then(|v| v.to_str().ok()),
            };
            signer.apply(identity, &binding, &mut headers);
        }
        for (name, value) in [
            ("traceparent", &forwarded.traceparent),
            (junction_edge::layers::REQUEST_ID, &forwarded.request_id),
        ] {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
        headers
    }

    async fn post(
        &self,
        graph: &Graph,
        body: String,
        request: &RequestContext<'_>,
    ) -> Result<Value, SubgraphError> {
        let url = reqwest::Url::parse(&graph.url).map_err(|_| SubgraphError::BadUrl)?;
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let mut headers = self.downstream_headers(
            request.identity,
            request.forwarded,
            &graph.name,
            Downstream {
                method: "POST",
                target: &target,
                body: body.as_bytes(),
            },
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut post = self.http.post(url);
        if let Some(timeout) = self.timeouts.get(&graph.url) {
            post = post.timeout(*timeout);
        }
        let response = post.headers(headers).body(body).send().await.map_err(|e| {
            if e.is_timeout() {
                SubgraphError::TimedOut
            } else {
                SubgraphError::Unreachable
            }
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|_| SubgraphError::CutShort)?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| SubgraphError::NotGraphQL(status.as_u16()))?;
        if !value.is_object() {
            return Err(SubgraphError::NotGraphQL(status.as_u16()));
        }
        Ok(value)
    }
}

impl SubgraphExecutor for SubgraphClient {
    fn execute<'a>(
        &'a self,
        graph: &'a Graph,
        body: String,
        request: &'a RequestContext<'a>,
    ) -> BoxFuture<'a, Result<Value, SubgraphError>> {
        async move {
            let started = Instant::now();
            let answer = self.post(graph, body, request).await;
            let outcome = match &answer {
                Ok(value) => match value.get("errors") {
                    Some(Value::Array(errors)) if !errors.is_empty() => FetchOutcome::Errors,
                    _ => FetchOutcome::Ok,
                },
                Err(SubgraphError::TimedOut) => FetchOutcome::TimedOut,
                Err(SubgraphError::Unreachable) => FetchOutcome::Unreachable,
                Err(_) => FetchOutcome::Invalid,
            };
            crate::metrics::global().subgraph_fetch(&graph.name, outcome, started.elapsed());
            answer
        }
        .boxed()
    }
}

/// Asks a running subgraph for its SDL (`{ _service { sdl } }`).
pub async fn fetch_sdl(url: &str, timeout: std::time::Duration) -> Result<String, String> {
    let client = junction_edge::clients::plain_client(timeout)?;
    let response = client
        .post(url)
        .json(&serde_json::json!({"query": "{ _service { sdl } }"}))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: not a GraphQL answer: {e}"))?;
    body.pointer("/data/_service/sdl")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            format!("{url}: no _service {{ sdl }} in the answer: is it a federation subgraph?")
        })
}
