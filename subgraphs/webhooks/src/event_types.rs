//! Event types: the catalog of what a tenant publishes.

use chrono::Utc;
use junction_schema::entities::event_type;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};

use crate::WebhookError;
use crate::error::check_event_type_name;

pub struct NewEventType {
    pub name: String,
    pub description: String,
    pub schema: Option<serde_json::Value>,
}

pub async fn create(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    input: NewEventType,
) -> Result<event_type::Model, WebhookError> {
    check_event_type_name(&input.name)?;
    if let Some(schema) = &input.schema {
        compile_schema(schema)?;
    }
    if find(db, tenant_id, &input.name).await?.is_some() {
        return Err(WebhookError::Conflict(format!(
            "event type {:?} already exists",
            input.name
        )));
    }
    let now = Utc::now();
    Ok(event_type::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(tenant_id.to_owned()),
        name: Set(input.name),
        description: Set(input.description),
        schema: Set(input.schema),
        deprecated: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?)
}

pub async fn find(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    name: &str,
) -> Result<Option<event_type::Model>, WebhookError> {
    Ok(event_type::Entity::find()
        .filter(event_type::Column::TenantId.eq(tenant_id))
        .filter(event_type::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// `None` leaves a field as it is; `schema: Some(None)` removes the schema.
#[derive(Clone, Debug, Default)]
pub struct EventTypePatch {
    pub description: Option<String>,
    pub schema: Option<Option<serde_json::Value>>,
    pub deprecated: Option<bool>,
}

pub async fn update(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    name: &str,
    patch: EventTypePatch,
) -> Result<event_type::Model, WebhookError> {
    let current = find(db, tenant_id, name)
        .await?
        .ok_or_else(|| WebhookError::NotFound(format!("no event type {name:?}")))?;
    let mut active: event_type::ActiveModel = current.into();
    if let Some(description) = patch.description {
        active.description = Set(description);
    }
    if let Some(schema) = patch.schema {
        if let Some(schema) = &schema {
            compile_schema(schema)?;
        }
        active.schema = Set(schema);
    }
    if let Some(deprecated) = patch.deprecated {
        active.deprecated = Set(deprecated);
    }
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// One page of event types in name order, after the name `after`.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    after: Option<&str>,
    limit: u64,
    include_deprecated: bool,
) -> Result<Vec<event_type::Model>, WebhookError> {
    use sea_orm::{QueryOrder, QuerySelect};
    let mut query = event_type::Entity::find().filter(event_type::Column::TenantId.eq(tenant_id));
    if let Some(after) = after {
        query = query.filter(event_type::Column::Name.gt(after));
    }
    if !include_deprecated {
        query = query.filter(event_type::Column::Deprecated.eq(false));
    }
    Ok(query
        .order_by_asc(event_type::Column::Name)
        .limit(limit)
        .all(db)
        .await?)
}

/// Compiles a JSON Schema; references are resolved only within the document (no network).
pub(crate) fn compile_schema(
    schema: &serde_json::Value,
) -> Result<jsonschema::Validator, WebhookError> {
    if !schema.is_object() {
        return Err(WebhookError::BadInput(
            "an event type's schema must be a JSON Schema object".into(),
        ));
    }
    jsonschema::validator_for(schema)
        .map_err(|e| WebhookError::BadInput(format!("invalid JSON Schema: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::compile_schema;

    #[test]
    fn schemas_validate_payloads() {
        let schema = json!({
            "type": "object",
            "required": ["invoice", "amount"],
            "properties": {"amount": {"type": "integer", "minimum": 0}}
        });
        let validator = compile_schema(&schema).unwrap();
        assert!(validator.is_valid(&json!({"invoice": "a", "amount": 1})));
        assert!(!validator.is_valid(&json!({"invoice": "a"})));
        assert!(!validator.is_valid(&json!({"invoice": "a", "amount": -1})));
        assert!(compile_schema(&json!({"type": 12})).is_err());
        assert!(compile_schema(&json!("string")).is_err());
    }
}
