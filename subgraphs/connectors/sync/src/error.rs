//! What the engine's API answers when it cannot do what was asked. The subgraph maps each
//! variant to one error code; `Database` is the only one whose text stays in the logs.

use junction_connector_sdk::ConnectorError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The request is wrong (unknown connector or stream, a schedule under 30 s, a
    /// configuration the connector's schema refuses).
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state (cancelling a finished run).
    #[error("{0}")]
    Conflict(String),
    /// The connector refused: its own classified message (a `check` that failed).
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}
