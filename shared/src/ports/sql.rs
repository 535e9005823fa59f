//! The data-connection port: run one SQL statement with bind parameters against a
//! workspace's warehouse. Adapters exist for SQLite files and PostgreSQL servers; the
//! executor neither knows nor cares which one a cell uses.

use std::path::Path;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::domain::model::ConnectionConfig;

/// A value sent to the database as a bind parameter, never as SQL text.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// How a database spells its positional placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `?1`, `?2`, …
    Sqlite,
    /// `$1`, `$2`, …
    Postgres,
}

/// SQL text with placeholders and the values bound to them, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundSql {
    pub sql: String,
    pub binds: Vec<SqlValue>,
}

/// What a query returned: every column, the first `max_rows` rows, and the full count.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryOutput {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The run was cancelled while the query ran; the query was interrupted.
    #[error("the query was cancelled")]
    Cancelled,
    /// The database refused or failed the statement. The message is the database's own
    /// and never contains the connection's credentials.
    #[error("{0}")]
    Failed(String),
    /// The database could not be reached or the connection is misconfigured.
    #[error("{0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SqlConnector: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Runs one statement. Cancelling `cancel` interrupts it and yields `Cancelled`.
    async fn query(
        &self,
        sql: &BoundSql,
        max_rows: usize,
        cancel: &CancellationToken,
    ) -> Result<QueryOutput, QueryError>;
}

/// Opens connectors for one run. `workdir` is the run's private working directory: a
/// connector that needs it creates it, and the executor removes it when the run ends.
#[async_trait]
pub trait ConnectorFactory: Send + Sync {
    async fn open(
        &self,
        config: &ConnectionConfig,
        workdir: &Path,
    ) -> Result<Box<dyn SqlConnector>, QueryError>;
}
