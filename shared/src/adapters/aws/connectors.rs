//! Data connections as the Lambda executor opens them: PostgreSQL by URL, or by the ARN of
//! a Secrets Manager secret whose value is the URL (so credentials never enter the table at
//! all). SQLite files exist only in the embedded deployment.

use std::path::Path;

use async_trait::async_trait;

pub use aws_sdk_secretsmanager as sdk;

use crate::adapters::sql::postgres::PostgresConnector;
use crate::domain::model::ConnectionConfig;
use crate::ports::{ConnectorFactory, QueryError, SqlConnector};

pub struct AwsConnectorFactory {
    secrets: aws_sdk_secretsmanager::Client,
}

impl AwsConnectorFactory {
    pub fn new(secrets: aws_sdk_secretsmanager::Client) -> Self {
        AwsConnectorFactory { secrets }
    }

    async fn secret_url(&self, arn: &str) -> Result<String, QueryError> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %aws_sdk_secretsmanager::error::DisplayErrorContext(&e),
                    "reading a connection secret failed");
                QueryError::Unavailable("the connection's secret could not be read".into())
            })?;
        out.secret_string()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| QueryError::Unavailable("the connection's secret is empty".into()))
    }
}

#[async_trait]
impl ConnectorFactory for AwsConnectorFactory {
    async fn open(
        &self,
        config: &ConnectionConfig,
        _workdir: &Path,
    ) -> Result<Box<dyn SqlConnector>, QueryError> {
        match config {
            ConnectionConfig::Sqlite { .. } => Err(QueryError::Unavailable(
                "SQLITE connections are available in the embedded deployment only".into(),
            )),
            ConnectionConfig::Postgres {
                url: Some(url),
                secret_arn: None,
            } => Ok(Box::new(PostgresConnector::connect(url).await?)),
            ConnectionConfig::Postgres {
                url: None,
                secret_arn: Some(arn),
            } => {
                let url = self.secret_url(arn).await?;
                Ok(Box::new(PostgresConnector::connect(&url).await?))
            }
            ConnectionConfig::Postgres { .. } => Err(QueryError::Unavailable(
                "a PostgreSQL connection needs exactly one of url and secretArn".into(),
            )),
        }
    }
}
