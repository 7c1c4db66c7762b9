//! sea-orm entities, one file per table. Every tenant-owned row carries `tenant_id`.

pub mod api_key;
pub mod tenant;
