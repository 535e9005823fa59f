//! `ProjectStore`: one item collection per project (`WS#w#P#p`) holding the project, its
//! draft, its published versions and its members (plus, in `schedules.rs` and
//! `results.rs`, its schedule counters and published results). Multi-item changes (create
//! with draft and membership, publish, draft edit) are single `TransactWriteItems`, so no
//! reader ever sees half of them.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::DynamoStore;
use super::codec::{
    Item, Listing, Range, build_err, decode, encode, encode_value, key, n, s, sdk_err,
};
use super::run_path::PUBLISHED_CONNECTIONS;
use super::table::{
    BY_PARENT, BY_WORKSPACE, DATA, DRAFT_SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK, PK, PROJECT_SK,
    WORKSPACE_SK, at_then, idle_projects_of, member_sk, memberships_of, project_pk, projects_of,
    ts, version_sk, workspace_pk,
};
use crate::domain::model::{Member, Project, ProjectRole, ProjectVersion, VersionBody};
use crate::ports::{Page, PageRequest, PortError, ProjectStore};

/// Top-level copy of `publishedVersion` (0 = none): the condition of `publish`.
const PUBLISHED_VERSION: &str = "publishedVersion";
/// Top-level fixed-width copy of `lastActivityAt`: the condition of `touch_activity`.
const LAST_ACTIVITY: &str = "lastActivityTs";
/// The draft's revision, bumped by every edit: `publish` copies the draft it read only if
/// no edit came in between.
const REVISION: &str = "rev";

/// Attempts of `publish` racing other publishes or draft edits.
const PUBLISH_ATTEMPTS: u32 = 10;

fn project_item(p: &Project) -> Result<Item, PortError> {
    let mut item = key(project_pk(&p.workspace_id, &p.project_id), PROJECT_SK);
    item.insert(GSI1PK.to_owned(), s(projects_of(&p.workspace_id)));
    item.insert(GSI1SK.to_owned(), s(at_then(&p.created_at, &p.project_id)));
    if !p.archived {
        // Sparse: only projects that are not archived are candidates for auto-archive.
        item.insert(GSI2PK.to_owned(), s(idle_projects_of(&p.workspace_id)));
    }
    item.insert(
        GSI2SK.to_owned(),
        s(at_then(&p.last_activity_at, &p.project_id)),
    );
    item.insert(
        PUBLISHED_VERSION.to_owned(),
        n(p.published_version.unwrap_or(0)),
    );
    item.insert(LAST_ACTIVITY.to_owned(), s(ts(&p.last_activity_at)));
    item.insert(DATA.to_owned(), encode(p, "project")?);
    Ok(item)
}

/// A membership; it is listed under the user (GSI1) in the order of the project's
/// creation, as the project listing is.
fn member_item(
    workspace_id: &str,
    member: &Member,
    project_created_at: &DateTime<Utc>,
) -> Result<Item, PortError> {
    let mut item = key(
        project_pk(workspace_id, &member.project_id),
        member_sk(&member.user_id),
    );
    item.insert(
        GSI1PK.to_owned(),
        s(memberships_of(workspace_id, &member.user_id)),
    );
    item.insert(
        GSI1SK.to_owned(),
        s(at_then(project_created_at, &member.project_id)),
    );
    item.insert(DATA.to_owned(), encode(member, "member")?);
    Ok(item)
}

fn put(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, PortError> {
    let mut put = Put::builder().table_name(table).set_item(Some(item));
    if let Some(condition) = condition {
        put = put
            .condition_expression(condition)
            .expression_attribute_names("#pk", PK);
    }
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(build_err)?)
        .build())
}

fn exists_check(table: &str, key: Item) -> Result<TransactWriteItem, PortError> {
    Ok(TransactWriteItem::builder()
        .condition_check(
            ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key))
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(build_err)?,
        )
        .build())
}

fn numeric(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

#[async_trait]
impl ProjectStore for DynamoStore {
    async fn create_project(&self, project: &Project) -> Result<(), PortError> {
        let ws = project.workspace_id.as_str();
        let pk = project_pk(ws, &project.project_id);
        let mut draft = key(pk, DRAFT_SK);
        draft.insert(DATA.to_owned(), encode(&VersionBody::default(), "draft")?);
        draft.insert(REVISION.to_owned(), n(0));
        let creator = Member {
            project_id: project.project_id.clone(),
            user_id: project.created_by.clone(),
            role: ProjectRole::FullAccess,
        };
        let items = vec![
            put(
                &self.table,
                project_item(project)?,
                Some("attribute_not_exists(#pk)"),
            )?,
            put(&self.table, draft, None)?,
            put(
                &self.table,
                member_item(ws, &creator, &project.created_at)?,
                None,
            )?,
            exists_check(&self.table, key(workspace_pk(ws), WORKSPACE_SK))?,
        ];
        match self.transact("TransactWriteItems", items).await? {
            Ok(()) => Ok(()),
            Err(failed) if failed.first() == Some(&true) => Err(PortError::AlreadyExists),
            Err(_) => Err(PortError::NotFound),
        }
    }

    async fn get_project(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<Project>, PortError> {
        self.get_item(key(project_pk(workspace_id, project_id), PROJECT_SK))
            .await?
            .map(|item| decode(item, "project"))
            .transpose()
    }

    async fn list_projects(
        &self,
        workspace_id: &str,
        member: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Project>, PortError> {
        let Some(user) = member else {
            let listing = Listing::new("projects", BY_PARENT, projects_of(workspace_id));
            let (items, next_cursor) = self.page(&listing, page).await?;
            let items = items
                .into_iter()
                .map(|item| decode(item, "project"))
                .collect::<Result<_, _>>()?;
            return Ok(Page { items, next_cursor });
        };
        // The user's memberships in project order, then the projects themselves in one
        // batch read (memberships do not copy project fields, which change).
        let listing = Listing::new(
            "member-projects",
            BY_PARENT,
            memberships_of(workspace_id, user),
        );
        let (memberships, next_cursor) = self.page(&listing, page).await?;
        let ids: Vec<String> = memberships
            .into_iter()
            .map(|item| decode::<Member>(item, "member").map(|m| m.project_id))
            .collect::<Result<_, _>>()?;
        let keys = ids
            .iter()
            .map(|id| key(project_pk(workspace_id, id), PROJECT_SK))
            .collect();
        let mut found: HashMap<String, Project> = HashMap::new();
        for item in self.batch_get(keys).await? {
            let project: Project = decode(item, "project")?;
            found.insert(project.project_id.clone(), project);
        }
        let items = ids.iter().filter_map(|id| found.remove(id)).collect();
        Ok(Page { items, next_cursor })
    }

    async fn get_member_role(
        &self,
        workspace_id: &str,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<ProjectRole>, PortError> {
        let item = self
            .get_item(key(
                project_pk(workspace_id, project_id),
                member_sk(user_id),
            ))
            .await?;
        Ok(item
            .map(|item| decode::<Member>(item, "member"))
            .transpose()?
            .map(|m| m.role))
    }

    async fn put_member(&self, workspace_id: &str, member: &Member) -> Result<(), PortError> {
        // The project's creation instant orders the user's memberships; a project missing
        // in this workspace is NotFound. Projects are never deleted, so no race remains.
        let project = self
            .get_project(workspace_id, &member.project_id)
            .await?
            .ok_or(PortError::NotFound)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(member_item(
                workspace_id,
                member,
                &project.created_at,
            )?))
            .send()
            .await
            .map_err(|e| sdk_err("PutItem", e))?;
        Ok(())
    }

    async fn remove_member(
        &self,
        workspace_id: &str,
        project_id: &str,
        user_id: &str,
    ) -> Result<(), PortError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(
                project_pk(workspace_id, project_id),
                member_sk(user_id),
            )))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(PortError::NotFound)
            }
            Err(e) => Err(sdk_err("DeleteItem", e)),
        }
    }

    async fn get_draft(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<VersionBody>, PortError> {
        self.get_item(key(project_pk(workspace_id, project_id), DRAFT_SK))
            .await?
            .map(|item| decode(item, "draft"))
            .transpose()
    }

    async fn put_draft(
        &self,
        workspace_id: &str,
        project_id: &str,
        body: &VersionBody,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let pk = project_pk(workspace_id, project_id);
        let draft = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone(), DRAFT_SK)))
            .update_expression("SET #d = :body ADD #rev :one")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#rev", REVISION)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":body", encode(body, "draft")?)
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_err)?;
        // A draft edit is a change of the project, visible in its `updatedAt`.
        let project = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, PROJECT_SK)))
            .update_expression("SET #d.#updated = :at")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#updated", "updatedAt")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":at", encode_value(&at, "instant")?)
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().update(draft).build(),
            TransactWriteItem::builder().update(project).build(),
        ];
        match self.transact("TransactWriteItems", items).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(PortError::NotFound),
        }
    }

    async fn publish(
        &self,
        workspace_id: &str,
        project_id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<ProjectVersion, PortError> {
        let pk = project_pk(workspace_id, project_id);
        for _ in 0..PUBLISH_ATTEMPTS {
            let project = self
                .get_project(workspace_id, project_id)
                .await?
                .ok_or(PortError::NotFound)?;
            let draft_item = self
                .get_item(key(pk.clone(), DRAFT_SK))
                .await?
                .ok_or(PortError::NotFound)?;
            let revision = numeric(&draft_item, REVISION).unwrap_or(0);
            // Decoded before copying, so a corrupt draft is never published.
            let body: VersionBody = decode(draft_item, "draft")?;
            let previous = project.published_version.unwrap_or(0);
            let version = ProjectVersion {
                project_id: project_id.to_owned(),
                version: previous + 1,
                body,
                published_at: at,
                published_by: by.to_owned(),
            };
            let mut version_item = key(pk.clone(), version_sk(version.version));
            version_item.insert(DATA.to_owned(), encode(&version, "version")?);

            // The version number is taken only if nobody published meanwhile, and the
            // copy is the current draft only if nobody edited it meanwhile; otherwise the
            // transaction is refused and publishing starts over from fresh reads.
            let bump = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), PROJECT_SK)))
                .update_expression(
                    "SET #d.#published = :v, #d.#updated = :at, #published = :v, #conns = :conns",
                )
                .condition_expression("#published = :previous")
                .expression_attribute_names("#d", DATA)
                .expression_attribute_names("#published", PUBLISHED_VERSION)
                .expression_attribute_names("#updated", "updatedAt")
                // Dispatch hands these to the executor, which reads them with the version.
                .expression_attribute_names("#conns", PUBLISHED_CONNECTIONS)
                .expression_attribute_values(
                    ":conns",
                    AttributeValue::L(version.body.connection_names().into_iter().map(s).collect()),
                )
                .expression_attribute_values(":v", n(version.version))
                .expression_attribute_values(":previous", n(previous))
                .expression_attribute_values(":at", encode_value(&at, "instant")?)
                .build()
                .map_err(build_err)?;
            let unchanged_draft = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), DRAFT_SK)))
                .condition_expression("#rev = :rev")
                .expression_attribute_names("#rev", REVISION)
                .expression_attribute_values(":rev", n(revision))
                .build()
                .map_err(build_err)?;
            let items = vec![
                put(&self.table, version_item, Some("attribute_not_exists(#pk)"))?,
                TransactWriteItem::builder().update(bump).build(),
                TransactWriteItem::builder()
                    .condition_check(unchanged_draft)
                    .build(),
            ];
            if self.transact("TransactWriteItems", items).await?.is_ok() {
                return Ok(version);
            }
        }
        Err(PortError::unavailable(
            "dynamodb publish: kept racing concurrent changes of the project",
        ))
    }

    async fn get_version(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
    ) -> Result<Option<ProjectVersion>, PortError> {
        self.get_item(key(
            project_pk(workspace_id, project_id),
            version_sk(version),
        ))
        .await?
        .map(|item| decode(item, "version"))
        .transpose()
    }

    async fn set_archived(
        &self,
        workspace_id: &str,
        project_id: &str,
        archived: bool,
        at: DateTime<Utc>,
    ) -> Result<Project, PortError> {
        // Archiving takes the project out of the sparse idle index; unarchiving puts it
        // back (its activity sort key is kept up to date either way).
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(project_pk(workspace_id, project_id), PROJECT_SK)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#archived", "archived")
            .expression_attribute_names("#updated", "updatedAt")
            .expression_attribute_names("#idle", GSI2PK)
            .expression_attribute_values(":archived", AttributeValue::Bool(archived))
            .expression_attribute_values(":at", encode_value(&at, "instant")?)
            .return_values(ReturnValue::AllNew);
        update = if archived {
            update.update_expression("SET #d.#archived = :archived, #d.#updated = :at REMOVE #idle")
        } else {
            update
                .update_expression("SET #d.#archived = :archived, #d.#updated = :at, #idle = :idle")
                .expression_attribute_values(":idle", s(idle_projects_of(workspace_id)))
        };
        match update.send().await {
            Ok(out) => decode(out.attributes.unwrap_or_default(), "project"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(PortError::NotFound)
            }
            Err(e) => Err(sdk_err("UpdateItem", e)),
        }
    }

    async fn touch_activity(
        &self,
        workspace_id: &str,
        project_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let project_key = key(project_pk(workspace_id, project_id), PROJECT_SK);
        // Only forward: activity reported late (a slow request finishing after a newer
        // one) must not move the project back towards auto-archive.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(project_key.clone()))
            .update_expression("SET #d.#activity = :at, #last = :ts, #idle_sk = :idle_sk")
            .condition_expression("attribute_exists(#pk) AND #last < :ts")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#activity", "lastActivityAt")
            .expression_attribute_names("#last", LAST_ACTIVITY)
            .expression_attribute_names("#idle_sk", GSI2SK)
            .expression_attribute_values(":at", encode_value(&at, "instant")?)
            .expression_attribute_values(":ts", s(ts(&at)))
            .expression_attribute_values(":idle_sk", s(at_then(&at, project_id)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                    failed,
                )) => {
                    // Refused: either the project is missing or its activity is newer.
                    let exists = match failed.item() {
                        Some(_) => true,
                        None => self.get_item(project_key).await?.is_some(),
                    };
                    if exists { Ok(()) } else { Err(PortError::NotFound) }
                }
                _ => Err(sdk_err("UpdateItem", e)),
            },
        }
    }

    async fn list_inactive_projects(
        &self,
        workspace_id: &str,
        before: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Project>, PortError> {
        let mut listing = Listing::new(
            "idle-projects",
            BY_WORKSPACE,
            idle_projects_of(workspace_id),
        );
        // `{activity}#{id}` < `{before}` exactly when the activity is before `before`.
        listing.range = Range::Below(ts(&before));
        let (items, next_cursor) = self.page(&listing, page).await?;
        let items = items
            .into_iter()
            .map(|item| decode(item, "project"))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }
}
