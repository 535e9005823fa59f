//! The data-connection adapters: SQLite files inside the server's warehouse directory and
//! PostgreSQL servers by URL. [`LocalConnectorFactory`] opens the right one for a
//! workspace connection's configuration.
//!
//! A SQLite connection's `path` is confined to the warehouse directory: it must be
//! relative, made only of plain components (no `..`, no root, no `.`), and once symlinks
//! are resolved it must still lie inside the (equally resolved) warehouse directory — so
//! no connection can reach the service's own state database or any other file.

pub mod postgres;
pub mod sqlite;

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use crate::domain::model::ConnectionConfig;
use crate::ports::sql::{ConnectorFactory, QueryError, SqlConnector};

pub use postgres::PostgresConnector;
pub use sqlite::SqliteConnector;

/// Opens connectors for the embedded deployment.
pub struct LocalConnectorFactory {
    /// The only directory SQLite connections may read from and write to.
    pub warehouse_dir: PathBuf,
}

impl LocalConnectorFactory {
    pub fn new(warehouse_dir: PathBuf) -> Self {
        LocalConnectorFactory { warehouse_dir }
    }

    /// The file a SQLite connection's `path` names, if it is an existing file strictly
    /// inside the warehouse directory. Errors name only the path as given, never the
    /// server's directories.
    pub fn resolve_sqlite_path(&self, path: &str) -> Result<PathBuf, QueryError> {
        let refuse = || {
            QueryError::Unavailable(format!(
                "SQLite path {path:?} must be a relative path inside the warehouse directory"
            ))
        };
        let relative = Path::new(path);
        if path.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(refuse());
        }
        let root = self.warehouse_dir.canonicalize().map_err(|_| {
            QueryError::Unavailable("the warehouse directory is not available".into())
        })?;
        let target = root.join(relative).canonicalize().map_err(|_| {
            QueryError::Unavailable(format!(
                "SQLite database {path:?} does not exist in the warehouse directory"
            ))
        })?;
        // Canonical paths have every symlink resolved, so a prefix check is exact.
        if !target.starts_with(&root) || target == root {
            return Err(refuse());
        }
        if !target.is_file() {
            return Err(QueryError::Unavailable(format!(
                "SQLite path {path:?} is not a database file"
            )));
        }
        Ok(target)
    }
}

#[async_trait]
impl ConnectorFactory for LocalConnectorFactory {
    async fn open(
        &self,
        config: &ConnectionConfig,
        workdir: &Path,
    ) -> Result<Box<dyn SqlConnector>, QueryError> {
        match config {
            ConnectionConfig::Sqlite { path } => {
                let database = self.resolve_sqlite_path(path)?;
                Ok(Box::new(SqliteConnector::open(&database, workdir).await?))
            }
            ConnectionConfig::Postgres { url: Some(url), .. } => {
                Ok(Box::new(PostgresConnector::connect(url).await?))
            }
            ConnectionConfig::Postgres {
                secret_arn: Some(_),
                ..
            } => Err(QueryError::Unavailable(
                "secretArn connections need the AWS deployment".into(),
            )),
            ConnectionConfig::Postgres { .. } => Err(QueryError::Unavailable(
                "the PostgreSQL connection has neither a url nor a secretArn".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::sql::BoundSql;
    use tokio_util::sync::CancellationToken;

    fn setup() -> (tempfile::TempDir, LocalConnectorFactory, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("warehouse");
        std::fs::create_dir_all(warehouse.join("sub")).unwrap();
        rusqlite::Connection::open(warehouse.join("demo.db"))
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (42);")
            .unwrap();
        rusqlite::Connection::open(warehouse.join("sub/inner.db"))
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        // A file outside the warehouse, standing in for the service's state database.
        rusqlite::Connection::open(dir.path().join("state.db"))
            .unwrap()
            .execute_batch("CREATE TABLE secrets (x)")
            .unwrap();
        let workdir = dir.path().join("run");
        std::fs::create_dir(&workdir).unwrap();
        let factory = LocalConnectorFactory::new(warehouse);
        (dir, factory, workdir)
    }

    #[tokio::test]
    async fn opens_sqlite_inside_the_warehouse() {
        let (_dir, factory, workdir) = setup();
        let config = ConnectionConfig::Sqlite {
            path: "demo.db".into(),
        };
        let conn = factory.open(&config, &workdir).await.unwrap();
        let out = conn
            .query(
                &BoundSql {
                    sql: "SELECT x FROM t".into(),
                    binds: vec![],
                },
                10,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(out.rows, vec![vec![serde_json::json!(42)]]);
        assert!(factory.resolve_sqlite_path("sub/inner.db").is_ok());
    }

    #[tokio::test]
    async fn path_escapes_are_refused() {
        let (dir, factory, workdir) = setup();
        let absolute = dir.path().join("state.db");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&absolute, factory.warehouse_dir.join("link.db")).unwrap();
            std::os::unix::fs::symlink(dir.path(), factory.warehouse_dir.join("up")).unwrap();
        }
        let absolute = absolute.to_str().unwrap().to_owned();
        let warehouse = factory.warehouse_dir.to_str().unwrap().to_owned();
        for path in [
            "",
            "../state.db",
            "sub/../../state.db",
            "./demo.db",
            absolute.as_str(),
            "link.db",
            "up/state.db",
            "sub",
            "missing.db",
        ] {
            let config = ConnectionConfig::Sqlite { path: path.into() };
            let e = factory.open(&config, &workdir).await.err();
            assert!(
                matches!(e, Some(QueryError::Unavailable(ref m)) if !m.contains(warehouse.as_str())),
                "{path:?}: {e:?}"
            );
        }
    }

    #[tokio::test]
    async fn secret_arn_needs_aws() {
        let (_dir, factory, workdir) = setup();
        let config = ConnectionConfig::Postgres {
            url: None,
            secret_arn: Some("arn:aws:secretsmanager:eu-west-1:1:secret:x".into()),
        };
        let e = factory.open(&config, &workdir).await.err();
        assert_eq!(
            e,
            Some(QueryError::Unavailable(
                "secretArn connections need the AWS deployment".into()
            ))
        );
    }

    #[tokio::test]
    async fn unreachable_postgres_is_unavailable_without_the_password() {
        let (_dir, factory, workdir) = setup();
        // Port 1 on loopback: nothing listens there, so the connect fails at once.
        let config = ConnectionConfig::Postgres {
            url: Some("postgres://app:hunter2-secret@127.0.0.1:1/wh".into()),
            secret_arn: None,
        };
        let e = factory.open(&config, &workdir).await.err();
        match e {
            Some(QueryError::Unavailable(m)) => assert!(!m.contains("hunter2"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
        let bad = ConnectionConfig::Postgres {
            url: Some("postgres://app:hunter2-secret@127.0.0.1:notaport/wh".into()),
            secret_arn: None,
        };
        match factory.open(&bad, &workdir).await.err() {
            Some(QueryError::Unavailable(m)) => assert!(!m.contains("hunter2"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
