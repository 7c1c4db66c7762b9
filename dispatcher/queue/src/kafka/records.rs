//! How a task travels as a Kafka record: keyed by endpoint id (one endpoint's tasks stay in
//! order on one partition), the task as JSON, and headers any tool can read without parsing
//! the value: `traceparent`, tenant, message and delivery ids, and when a retry is due.

use chrono::{DateTime, TimeZone, Utc};
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};

use crate::Task;

pub const TRACEPARENT: &str = "traceparent";
pub const TENANT: &str = "junction-tenant";
pub const MESSAGE: &str = "junction-message";
pub const DELIVERY: &str = "junction-delivery";
/// Milliseconds since the epoch: the retry is not attempted before.
pub const DUE_AT: &str = "junction-due-at";
/// Milliseconds since the epoch: when the record entered its retry tier.
pub const QUEUED_AT: &str = "junction-queued-at";
/// Why a delivery was dead-lettered.
pub const REASON: &str = "junction-reason";

/// A task read back from a record, with what its headers said.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub task: Task,
    pub traceparent: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
}

pub fn encode(task: &Task) -> Vec<u8> {
    serde_json::to_vec(task).unwrap_or_default()
}

/// The headers every record of `task` carries.
pub fn headers(task: &Task, traceparent: Option<&str>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(4)
        .insert(header(TENANT, &task.tenant_id))
        .insert(header(MESSAGE, &task.message_id))
        .insert(header(DELIVERY, &task.delivery_id));
    if let Some(traceparent) = traceparent {
        headers = headers.insert(header(TRACEPARENT, traceparent));
    }
    headers
}

pub fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

pub fn millis(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

fn header_text<'m>(message: &'m BorrowedMessage<'_>, key: &str) -> Option<&'m str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn header_time(message: &BorrowedMessage<'_>, key: &str) -> Option<DateTime<Utc>> {
    let millis: i64 = header_text(message, key)?.parse().ok()?;
    Utc.timestamp_millis_opt(millis).single()
}

/// The task in `message`, or why it is not one.
pub fn decode(message: &BorrowedMessage<'_>) -> Result<Decoded, String> {
    let payload = message.payload().ok_or("a record without a value")?;
    let task: Task = serde_json::from_slice(payload).map_err(|e| format!("not a task: {e}"))?;
    Ok(Decoded {
        traceparent: header_text(message, TRACEPARENT).map(str::to_owned),
        due_at: header_time(message, DUE_AT),
        queued_at: header_time(message, QUEUED_AT),
        task,
    })
}
