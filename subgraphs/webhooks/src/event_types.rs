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
    if let Some(schema) = &input.schema
        && !schema.is_object()
    {
        return Err(WebhookError::BadInput(
            "an event type's schema must be a JSON Schema object".into(),
        ));
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
