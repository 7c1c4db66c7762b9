//! sea-orm entities, one file per table. Every tenant-owned row carries `tenant_id`.

pub mod api_key;
pub mod connection;
pub mod connection_stream;
pub mod connector_record;
pub mod delivery;
pub mod delivery_attempt;
pub mod endpoint;
pub mod endpoint_secret;
pub mod event_type;
pub mod message;
pub mod outbox;
pub mod replay_job;
pub mod sync_run;
pub mod tenant;
