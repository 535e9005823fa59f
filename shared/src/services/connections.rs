//! Workspace data connections, managed by workspace admins. The configuration may hold
//! credentials, so it is sealed before it is stored and never returned.

use std::sync::Arc;

use crate::domain::model::{Caller, Connection, ConnectionConfig};
use crate::domain::policy;
use crate::ports::{Clock, ConnectionStore, SecretBox};

use super::ServiceError;

pub struct ConnectionService {
    pub connections: Arc<dyn ConnectionStore>,
    pub secrets: Arc<dyn SecretBox>,
    pub clock: Arc<dyn Clock>,
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("INVALID_CONNECTION", field, message)
}

/// Checks what can be checked without connecting: names and the shape of the config.
fn validate(name: &str, config: &ConnectionConfig) -> Result<(), ServiceError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(invalid(
            "name",
            "connection names are 1 to 64 letters, digits, '_' or '-'",
        ));
    }
    match config {
        ConnectionConfig::Sqlite { path } => {
            let relative = std::path::Path::new(path);
            let escapes = relative.is_absolute()
                || relative
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)));
            if path.is_empty() || escapes {
                return Err(invalid(
                    "path",
                    "a SQLite path is relative to the warehouse directory, without '..'",
                ));
            }
        }
        ConnectionConfig::Postgres { url, secret_arn } => match (url, secret_arn) {
            (Some(url), None) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(invalid("url", "a PostgreSQL URL starts with postgres://"));
                }
            }
            (None, Some(arn)) => {
                if !arn.starts_with("arn:") {
                    return Err(invalid("secretArn", "secretArn must be an ARN"));
                }
            }
            _ => return Err(invalid("url", "give exactly one of url and secretArn")),
        },
    }
    Ok(())
}

impl ConnectionService {
    pub async fn put(
        &self,
        caller: &Caller,
        name: &str,
        config: &ConnectionConfig,
    ) -> Result<Connection, ServiceError> {
        policy::require_admin(caller)?;
        validate(name, config)?;
        let plain = serde_json::to_vec(config)
            .map_err(|e| ServiceError::Backend(crate::ports::PortError::fatal(e)))?;
        let sealed = self.secrets.seal(&plain)?;
        let now = self.clock.now();
        let created_at = self
            .connections
            .get_connection(&caller.workspace_id, name)
            .await?
            .map_or(now, |c| c.created_at);
        let connection = Connection {
            workspace_id: caller.workspace_id.clone(),
            name: name.to_owned(),
            kind: config.kind(),
            sealed_config: sealed,
            updated_by: caller.user_id.clone(),
            created_at,
            updated_at: now,
        };
        self.connections.put_connection(&connection).await?;
        Ok(connection)
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<Connection>, ServiceError> {
        policy::require_admin(caller)?;
        Ok(self
            .connections
            .list_connections(&caller.workspace_id)
            .await?)
    }
}
