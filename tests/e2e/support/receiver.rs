//! A real HTTP server on loopback standing in for a customer's webhook endpoint: it records
//! every request and answers from a script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// A status with a `Retry-After` of this many seconds.
    RetryAfter(u16, u64),

    /// Never answers (until the connection is dropped).
    Hang,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    then: Option<Answer>,
    requests: Vec<Request>,
}

#[derive(Clone)]
pub struct Receiver {
    pub address: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// Answers `answers` in order, then `then` forever.
    pub async fn start(answers: &[Answer], then: Answer) -> Self {
        let script = Arc::new(Mutex::new(Script {
            answers: answers.iter().copied().collect(),
            then: Some(then),
            requests: Vec::new(),
        }));
        let app = Router::new()
            .route("/hook", post(receive_response))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, script }
    }

    pub async fn ok() -> Self {
        Self::start(&[], Answer::Status(200)).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// From now on, answer `answer` to everything.
    pub fn answer_from_now_on(&self, answer: Answer) {
        let mut script = self.script.lock().unwrap();
        script.answers.clear();
        script.then = Some(answer);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.script.lock().unwrap().requests.clone()
    }

    /// The `webhook-id` of every request, in arrival order.
    pub fn webhook_ids(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.header("webhook-id"))
            .collect()
    }

    /// Waits until at least `count` requests arrived, or panics after `limit`.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} requests within {limit:?}, got {}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive_response(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let answer = {
        let mut script = script.lock().unwrap();
        script.requests.push(Request {
            headers,
            body,
            at: Instant::now(),
        });
        let then = script.then.unwrap_or(Answer::Status(200));
        script.answers.pop_front().unwrap_or(then)
    };
    match answer {
        Answer::RetryAfter(code, seconds) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", seconds.to_string())],
        )
            .into_response(),
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}
/// Verifies a Standard Webhooks `v1` signature from the specification alone.
pub fn verify_v1(secret: &str, request: &Request) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, Mac};
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let signed = format!(
        "{}.{}.{}",
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        String::from_utf8_lossy(&request.body)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    request
        .header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}
