//! `WorkspaceStore`: the workspace item (`WS#w` / `WORKSPACE`, listed oldest first in the
//! `WORKSPACES` partition of GSI1) and user items (`WS#w` / `USER#u`).

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValue;

use super::DynamoStore;
use super::codec::{Item, Listing, decode, encode, encode_value, key, s, sdk_err};
use super::table::{
    BY_PARENT, DATA, GSI1PK, GSI1SK, PK, WORKSPACE_SK, WORKSPACES, at_then, user_sk, workspace_pk,
};
use crate::domain::model::{Plan, User, Workspace};
use crate::ports::{Page, PageRequest, PortError, WorkspaceStore};

impl DynamoStore {
    /// Sets one field of the workspace record; `NotFound` when there is no workspace.
    async fn set_workspace_field(
        &self,
        workspace_id: &str,
        field: &'static str,
        value: aws_sdk_dynamodb::types::AttributeValue,
    ) -> Result<Workspace, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(workspace_pk(workspace_id), WORKSPACE_SK)))
            .update_expression("SET #d.#f = :v")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#f", field)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":v", value)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => decode(out.attributes.unwrap_or_default(), "workspace"),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(PortError::NotFound)
            }
            Err(e) => Err(sdk_err("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl WorkspaceStore for DynamoStore {
    async fn create_workspace(&self, workspace: &Workspace) -> Result<(), PortError> {
        let pk = workspace_pk(&workspace.workspace_id);
        let mut item: Item = key(pk, WORKSPACE_SK);
        item.insert(GSI1PK.to_owned(), s(WORKSPACES));
        item.insert(
            GSI1SK.to_owned(),
            s(at_then(&workspace.created_at, &workspace.workspace_id)),
        );
        item.insert(DATA.to_owned(), encode(workspace, "workspace")?);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(PortError::AlreadyExists)
            }
            Err(e) => Err(sdk_err("PutItem", e)),
        }
    }

    async fn get_workspace(&self, workspace_id: &str) -> Result<Option<Workspace>, PortError> {
        self.get_item(key(workspace_pk(workspace_id), WORKSPACE_SK))
            .await?
            .map(|item| decode(item, "workspace"))
            .transpose()
    }

    async fn set_plan(&self, workspace_id: &str, plan: Plan) -> Result<Workspace, PortError> {
        self.set_workspace_field(workspace_id, "plan", encode_value(&plan, "plan")?)
            .await
    }

    async fn set_auto_archive(
        &self,
        workspace_id: &str,
        after_days: Option<u32>,
    ) -> Result<Workspace, PortError> {
        // `None` is stored as NULL, which decodes back to `None`.
        self.set_workspace_field(
            workspace_id,
            "autoArchiveAfterDays",
            encode_value(&after_days, "auto-archive rule")?,
        )
        .await
    }

    async fn upsert_user(&self, user: &User) -> Result<(), PortError> {
        let mut item = key(workspace_pk(&user.workspace_id), user_sk(&user.user_id));
        item.insert(DATA.to_owned(), encode(user, "user")?);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_err("PutItem", e))?;
        Ok(())
    }

    async fn get_user(&self, workspace_id: &str, user_id: &str) -> Result<Option<User>, PortError> {
        self.get_item(key(workspace_pk(workspace_id), user_sk(user_id)))
            .await?
            .map(|item| decode(item, "user"))
            .transpose()
    }

    async fn list_workspaces(&self, page: &PageRequest) -> Result<Page<Workspace>, PortError> {
        // Workspaces are few and created rarely: one index partition holds them all.
        let listing = Listing::new("workspaces", BY_PARENT, WORKSPACES.to_owned());
        let (items, next_cursor) = self.page(&listing, page).await?;
        let items = items
            .into_iter()
            .map(|item| decode(item, "workspace"))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }
}
