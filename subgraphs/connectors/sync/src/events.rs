//! The event a created or changed record becomes: `connector.<connector>.<stream>.created` or
//! `.updated`, on the connection's channel, stored by the outbox with the record itself.

use chrono::{DateTime, SubsecRound, Utc};
use junction_schema::entities::message;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Created,
    Updated,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
        }
    }
}

/// `connector.<connector>.<stream>.<change>`, each part in the characters event type names
/// take (lower-case letters, digits, `_`, `-`): anything else becomes `_`.
pub(crate) fn event_type(connector: &str, stream: &str, change: Change) -> String {
    format!(
        "connector.{}.{}.{}",
        name_part(connector),
        name_part(stream),
        change.as_str()
    )
}

fn name_part(name: &str) -> String {
    let part: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '_',
        })
        .collect();
    if part.is_empty() { "_".into() } else { part }
}

/// Where one record's event comes from.
pub(crate) struct Origin<'a> {
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    pub connector: &'a str,
    pub stream: &'a str,
}

/// The message for `record` (keyed `key`), stamped `now`. Its channel is the connection's id,
/// so an endpoint can follow one connection.
pub(crate) fn message(
    origin: &Origin<'_>,
    change: Change,
    key: &str,
    record: &Value,
    now: DateTime<Utc>,
) -> message::Model {
    let event_type = event_type(origin.connector, origin.stream, change);
    let payload = json!({
        "connection_id": origin.connection_id,
        "connector": origin.connector,
        "stream": origin.stream,
        "key": key,
        "record": record,
    });
    let encoded = serde_json::to_vec(&payload).unwrap_or_default();
    message::Model {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: origin.tenant_id.to_owned(),
        payload_hash: junction_queue::outbox::payload_hash(&event_type, &encoded),
        event_type,
        payload,
        channels: json!([origin.connection_id]),
        idempotency_key: None,
        traceparent: None,
        // As the database keeps it (microseconds).
        created_at: now.trunc_subsecs(6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_valid_names_whatever_the_stream_is_called() {
        assert_eq!(
            event_type("stripe", "charges", Change::Created),
            "connector.stripe.charges.created"
        );
        assert_eq!(
            event_type("test-source", "Line Items.v2", Change::Updated),
            "connector.test-source.line_items_v2.updated"
        );
    }
}
