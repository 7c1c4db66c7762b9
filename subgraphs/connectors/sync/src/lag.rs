//! Sync lag, per connection and stream: how far behind the source the stored records are.
//! For a stream with a cursor that reads as a time, now minus the newest cursor value stored
//! (committed with its checkpoint); otherwise now minus the end of the stream's last complete
//! read (full refresh).

use std::time::Duration;

use chrono::{DateTime, Utc};
use junction_schema::entities::connection_stream;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::{SyncError, connections};

/// One stream's lag.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamLag {
    pub stream: String,
    /// The newest cursor value stored, as the source wrote it.
    pub cursor: Option<serde_json::Value>,
    pub last_synced_at: Option<DateTime<Utc>>,
    /// `None` until something was synced.
    pub lag: Option<Duration>,
}

/// The lag of each stream of the connection that has synced something, by stream name.
pub async fn of_connection(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    connection_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<StreamLag>, SyncError> {
    connections::get(db, tenant_id, connection_id).await?;
    let rows = connection_stream::Entity::find()
        .filter(connection_stream::Column::ConnectionId.eq(connection_id))
        .order_by_asc(connection_stream::Column::Stream)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| lag(row, now)).collect())
}

fn lag(row: connection_stream::Model, now: DateTime<Utc>) -> StreamLag {
    let since = row.cursor_at.or(row.last_synced_at);
    StreamLag {
        stream: row.stream,
        cursor: row.cursor,
        last_synced_at: row.last_synced_at,
        // A cursor in the future (a clock ahead of ours) is no lag, not a negative one.
        lag: since.map(|at| (now - at).to_std().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cursor_at: Option<i64>, last_synced_at: Option<i64>) -> connection_stream::Model {
        let at = |s| DateTime::from_timestamp(s, 0);
        connection_stream::Model {
            connection_id: "c".into(),
            stream: "items".into(),
            tenant_id: "t".into(),
            state: None,
            cursor: None,
            cursor_at: cursor_at.and_then(at),
            last_synced_at: last_synced_at.and_then(at),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn the_cursor_wins_then_the_last_complete_read() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        assert_eq!(
            lag(row(Some(900), Some(990)), now).lag,
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            lag(row(None, Some(990)), now).lag,
            Some(Duration::from_secs(10))
        );
        assert_eq!(lag(row(None, None), now).lag, None);
        assert_eq!(lag(row(Some(2_000), None), now).lag, Some(Duration::ZERO));
    }
}
