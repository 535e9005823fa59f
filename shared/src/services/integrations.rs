//! The workspace's notification integrations, managed by its admins: Slack channels (their
//! incoming-webhook URLs are secrets) and the secret that signs webhook deliveries. Both
//! are sealed (`SecretBox`) before they are stored and never returned: the signing secret
//! is shown once, in the answer to its rotation.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::model::{Caller, Plan, SlackIntegration, WebhookSigningSecret};
use crate::domain::notifications::{self, Problem};
use crate::domain::policy::{self, Denied};
use crate::domain::ssrf::{self, UrlPolicy};
use crate::ports::{Clock, IntegrationStore, PortError, SecretBox, WorkspaceStore};

use super::ServiceError;

/// At most this many Slack channels per workspace.
pub const MAX_SLACK_CHANNELS: usize = 100;

/// What the API shows of a workspace's integrations: never a URL or the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationsView {
    pub slack_channel_ids: Vec<String>,
    pub slack_updated_at: Option<DateTime<Utc>>,
    pub webhook_secret_rotated_at: Option<DateTime<Utc>>,
}

pub struct IntegrationService {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub integrations: Arc<dyn IntegrationStore>,
    pub secrets: Arc<dyn SecretBox>,
    pub clock: Arc<dyn Clock>,
    /// The SSRF guard's policy for the Slack webhook URLs.
    pub url_policy: UrlPolicy,
}

impl IntegrationService {
    pub async fn get(&self, caller: &Caller) -> Result<IntegrationsView, ServiceError> {
        policy::require_admin(caller)?;
        let i = self
            .integrations
            .get_integrations(&caller.workspace_id)
            .await?;
        Ok(IntegrationsView {
            slack_channel_ids: i
                .slack
                .as_ref()
                .map(|s| s.channel_ids.clone())
                .unwrap_or_default(),
            slack_updated_at: i.slack.map(|s| s.updated_at),
            webhook_secret_rotated_at: i.webhook_secret.map(|s| s.rotated_at),
        })
    }

    /// Replaces the workspace's Slack channels (`{channelId: incomingWebhookUrl}`); an
    /// empty map removes them all.
    pub async fn put_slack(
        &self,
        caller: &Caller,
        channels: &BTreeMap<String, String>,
    ) -> Result<IntegrationsView, ServiceError> {
        policy::require_admin(caller)?;
        let workspace = self
            .workspaces
            .get_workspace(&caller.workspace_id)
            .await?
            .ok_or(ServiceError::NotFound {
                code: "WORKSPACE_NOT_FOUND",
                what: "workspace",
            })?;
        if workspace.plan == Plan::Professional && !channels.is_empty() {
            return Err(Denied::PlanLimit {
                message: "Slack notifications need the TEAM or ENTERPRISE plan".into(),
            }
            .into());
        }
        if channels.len() > MAX_SLACK_CHANNELS {
            return Err(ServiceError::invalid(
                Problem::Invalid.code(),
                "channels",
                format!("at most {MAX_SLACK_CHANNELS} channels"),
            ));
        }
        for (id, url) in channels {
            if !notifications::is_channel_id(id) {
                return Err(ServiceError::invalid(
                    Problem::Invalid.code(),
                    format!("channels.{id}"),
                    "a channel id is 1 to 80 letters, digits, '-' or '_'",
                ));
            }
            if let Err(e) = ssrf::check_url(url, self.url_policy) {
                return Err(ServiceError::invalid(
                    Problem::InvalidWebhookUrl.code(),
                    format!("channels.{id}"),
                    e.0,
                ));
            }
        }
        let plain =
            serde_json::to_vec(channels).map_err(|e| ServiceError::Backend(PortError::fatal(e)))?;
        let slack = SlackIntegration {
            channel_ids: channels.keys().cloned().collect(),
            sealed_webhook_urls: self.secrets.seal(&plain)?,
            updated_by: caller.user_id.clone(),
            updated_at: self.clock.now(),
        };
        self.integrations
            .put_slack_integration(&caller.workspace_id, &slack)
            .await?;
        tracing::info!(workspace_id = %caller.workspace_id, channels = slack.channel_ids.len(),
            "Slack integration updated");
        self.get(caller).await
    }

    /// Creates a new signing secret, replacing the old one, and returns it: the only time
    /// it is ever shown.
    pub async fn rotate_webhook_secret(&self, caller: &Caller) -> Result<String, ServiceError> {
        policy::require_admin(caller)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ServiceError::Backend(PortError::fatal(format!("no randomness: {e}"))))?;
        let secret = format!(
            "whsec_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let sealed = WebhookSigningSecret {
            sealed_secret: self.secrets.seal(secret.as_bytes())?,
            rotated_by: caller.user_id.clone(),
            rotated_at: self.clock.now(),
        };
        self.integrations
            .put_webhook_secret(&caller.workspace_id, &sealed)
            .await?;
        tracing::info!(workspace_id = %caller.workspace_id, "webhook signing secret rotated");
        Ok(secret)
    }
}
