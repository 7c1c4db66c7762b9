//! What a customer's endpoint receives: the JSON body of every webhook delivery, and the
//! delivery events the dispatcher publishes for live subscriptions and dashboards.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The webhook body, per Standard Webhooks: `{type, timestamp, data}`, plus Junction's ids.
/// It is the same on every attempt of a delivery, so receivers may deduplicate on
/// `webhook-id` (the delivery id) and compare bodies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event was published.
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
    pub message_id: String,
    /// Equal to the `webhook-id` header.
    pub delivery_id: String,
}

impl Envelope {
    /// The JSON body of an envelope with these parts, written from borrowed values: a
    /// message's payload goes to each of its endpoints without a copy of its own.
    pub fn encode(
        event_type: &str,
        timestamp: DateTime<Utc>,
        data: &serde_json::Value,
        message_id: &str,
        delivery_id: &str,
    ) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&EnvelopeRef {
            event_type,
            timestamp,
            data,
            message_id,
            delivery_id,
        })
    }
}

/// `Envelope`, borrowed; the same fields in the same order.
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: DateTime<Utc>,
    data: &'a serde_json::Value,
    message_id: &'a str,
    delivery_id: &'a str,
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Failed for good (retries exhausted, or the endpoint is gone or disabled).
    DeadLettered,
}

/// Published after every recorded attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    pub attempt_id: String,
    pub delivery_id: String,
    pub tenant_id: String,
    pub message_id: String,
    pub endpoint_id: String,
    pub attempt: i32,
    pub outcome: AttemptOutcome,
    pub status_code: Option<i32>,
    pub error_kind: Option<String>,
    pub duration_ms: i64,
    pub response_excerpt: Option<String>,
    pub trace_id: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

impl DeliveryEvent {
    /// The attempt as it was recorded.
    pub fn to_attempt(&self) -> crate::entities::delivery_attempt::Model {
        crate::entities::delivery_attempt::Model {
            id: self.attempt_id.clone(),
            tenant_id: self.tenant_id.clone(),
            delivery_id: self.delivery_id.clone(),
            message_id: self.message_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            attempt: self.attempt,
            status_code: self.status_code,
            duration_ms: self.duration_ms,
            response_excerpt: self.response_excerpt.clone(),
            error_kind: self.error_kind.clone(),
            trace_id: self.trace_id.clone(),
            created_at: self.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_envelope_reads_back_as_the_same_envelope() {
        let envelope = Envelope {
            event_type: "invoice.paid".into(),
            timestamp: Utc::now(),
            data: serde_json::json!({"invoice": "in_1", "lines": [1, 2], "note": null}),
            message_id: "m".into(),
            delivery_id: "d".into(),
        };
        let bytes = Envelope::encode(
            &envelope.event_type,
            envelope.timestamp,
            &envelope.data,
            &envelope.message_id,
            &envelope.delivery_id,
        )
        .unwrap();
        assert_eq!(bytes, serde_json::to_vec(&envelope).unwrap());
        assert_eq!(
            serde_json::from_slice::<Envelope>(&bytes).unwrap(),
            envelope
        );
    }
}
