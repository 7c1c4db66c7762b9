//! Which endpoints a published message goes to: the tenant's enabled endpoints whose event
//! types and channels match it. Everything that publishes (the webhooks subgraph's
//! `publishEvent`, connector syncs) picks endpoints here and stores through [`crate::outbox`],
//! so a message reaches the same endpoints whoever published it.

use junction_schema::entities::endpoint;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

/// The strings of a JSON array column (event types, channels); anything else is empty.
pub fn json_strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What publishing needs to know of an enabled endpoint: its id and what it subscribes to.
#[derive(Clone, Debug, PartialEq, sea_orm::FromQueryResult)]
pub struct Subscriber {
    pub id: String,
    pub event_types: serde_json::Value,
    pub channels: serde_json::Value,
}

impl Subscriber {
    /// Whether the endpoint wants a message of `event_type` on `channels`.
    pub fn wants(&self, event_type: &str, channels: &[String]) -> bool {
        let types = json_strings(&self.event_types);
        let wanted_channels = json_strings(&self.channels);
        (types.is_empty() || types.iter().any(|t| t == event_type))
            && (wanted_channels.is_empty() || wanted_channels.iter().any(|c| channels.contains(c)))
    }
}

/// The tenant's enabled endpoints, as publishing sees them (three columns, not the row).
pub async fn subscribers(
    db: &impl ConnectionTrait,
    tenant_id: &str,
) -> Result<Vec<Subscriber>, sea_orm::DbErr> {
    endpoint::Entity::find()
        .select_only()
        .column(endpoint::Column::Id)
        .column(endpoint::Column::EventTypes)
        .column(endpoint::Column::Channels)
        .filter(endpoint::Column::TenantId.eq(tenant_id))
        .filter(endpoint::Column::Enabled.eq(true))
        .into_model::<Subscriber>()
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Subscriber;

    fn subscriber(event_types: serde_json::Value, channels: serde_json::Value) -> Subscriber {
        Subscriber {
            id: "ep".into(),
            event_types,
            channels,
        }
    }

    /// Empty lists mean everything; otherwise the event type must be listed and, when the
    /// endpoint names channels, the message must be on one of them.
    #[test]
    fn subscribers_want_their_event_types_on_their_channels() {
        let channels = |names: &[&str]| names.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let everything = subscriber(json!([]), json!([]));
        assert!(everything.wants("invoice.paid", &[]));
        assert!(everything.wants("invoice.paid", &channels(&["eu"])));

        let invoices = subscriber(json!(["invoice.paid"]), json!([]));
        assert!(invoices.wants("invoice.paid", &channels(&["eu"])));
        assert!(!invoices.wants("invoice.voided", &[]));

        let eu_invoices = subscriber(json!(["invoice.paid"]), json!(["eu"]));
        assert!(eu_invoices.wants("invoice.paid", &channels(&["us", "eu"])));
        assert!(!eu_invoices.wants("invoice.paid", &channels(&["us"])));
        assert!(!eu_invoices.wants("invoice.paid", &[]));
    }
}
