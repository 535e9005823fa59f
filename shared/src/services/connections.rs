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

/// Where a workspace's connection secrets live: `secretArn` must name a Secrets Manager
/// secret `scheduled-runs/<workspaceId>/…`. The execute function may read every secret
/// under `scheduled-runs/` (template.yaml), so without this rule an admin of one workspace
/// could point a connection at another workspace's database credentials.
pub fn connection_secret_prefix(workspace_id: &str) -> String {
    format!("scheduled-runs/{workspace_id}/")
}

/// True when `arn` is a Secrets Manager secret ARN whose name is under the workspace's
/// prefix (`arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`).
fn is_workspace_secret(arn: &str, workspace_id: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let [arn_tag, partition, service, region, account, kind, name] = parts[..] else {
        return false;
    };
    let prefix = connection_secret_prefix(workspace_id);
    arn_tag == "arn"
        && !partition.is_empty()
        && service == "secretsmanager"
        && !region.is_empty()
        && !account.is_empty()
        && kind == "secret"
        && name.len() > prefix.len()
        && name.starts_with(&prefix)
        && !name.contains('*')
}

/// Checks what can be checked without connecting: names and the shape of the config.
fn validate(workspace_id: &str, name: &str, config: &ConnectionConfig) -> Result<(), ServiceError> {
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
                if !is_workspace_secret(arn, workspace_id) {
                    return Err(invalid(
                        "secretArn",
                        format!(
                            "secretArn must be the ARN of a Secrets Manager secret named {}…",
                            connection_secret_prefix(workspace_id)
                        ),
                    ));
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
        validate(&caller.workspace_id, name, config)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:";

    #[test]
    fn secret_arns_must_be_under_the_workspaces_own_prefix() {
        let config = |arn: &str| ConnectionConfig::Postgres {
            url: None,
            secret_arn: Some(arn.to_owned()),
        };
        let own = format!("{ARN}scheduled-runs/w1/warehouse-AbCdEf");
        assert!(validate("w1", "pg", &config(&own)).is_ok());
        for refused in [
            // Another workspace's secret, also one whose id starts like ours.
            format!("{ARN}scheduled-runs/w2/warehouse-AbCdEf"),
            format!("{ARN}scheduled-runs/w10/warehouse-AbCdEf"),
            // Any other secret of the account (the stack's sealing key, say).
            format!("{ARN}SealingKey-AbCdEf"),
            format!("{ARN}scheduled-runs/w1/"),
            format!("{ARN}scheduled-runs/w1/*"),
            "arn:aws:ssm:eu-west-1:123456789012:parameter/scheduled-runs/w1/x".to_owned(),
            "scheduled-runs/w1/warehouse".to_owned(),
        ] {
            let err = validate("w1", "pg", &config(&refused)).expect_err(&refused);
            assert!(
                matches!(&err, ServiceError::Invalid { field, .. } if field.as_deref() == Some("secretArn")),
                "{refused}: {err:?}"
            );
        }
    }
}
