//! Indexes on `created_at` for the questions asked by time window: delivery stats ("since a
//! day ago") and the retention cleanup ("older than 30 days"). Without them both read every
//! row of their tables, which grow by thousands a second.
//!
//! On PostgreSQL they are BRIN indexes: rows arrive in `created_at` order, so a summary per
//! block range finds a window nearly as well as a B-tree would, and an insert on the delivery
//! path rarely touches it, where a B-tree takes an entry for every row. SQLite has no BRIN;
//! it gets B-trees.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 3] = ["messages", "deliveries", "delivery_attempts"];

fn index_name(table: &str) -> String {
    format!("idx_{table}_created_at")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let method = match manager.get_database_backend() {
            DbBackend::Postgres => " USING brin",
            _ => "",
        };
        for table in TABLES {
            db.execute_unprepared(&format!(
                "CREATE INDEX {} ON {table}{method} (created_at)",
                index_name(table)
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in TABLES {
            db.execute_unprepared(&format!("DROP INDEX {}", index_name(table)))
                .await?;
        }
        Ok(())
    }
}
