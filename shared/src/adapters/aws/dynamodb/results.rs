//! `ResultsStore`: one item per project (`WS#w#P#p` / `RESULTS`) holding the outputs of
//! the last run allowed to update what the published app shows. "Only if newer" is the
//! `ConditionExpression` of the put, so two runs finishing together can never let the
//! older win, and no read precedes the write.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::DynamoStore;
use super::codec::{Item, build_err, decode, encode, key, s, sdk_err};
use super::table::{DATA, PK, RESULTS_SK, project_pk, ts};
use crate::domain::model::PublishedResults;
use crate::ports::{PortError, ResultsStore};

/// Top-level fixed-width copy of `asOf`: the condition of the put.
const AS_OF: &str = "asOf";

/// The put of `results` only if they are newer (as a transaction item).
pub(super) fn newer_results_put(
    table: &str,
    results: &PublishedResults,
) -> Result<TransactWriteItem, PortError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(results_item(results)?))
        .condition_expression("attribute_not_exists(#pk) OR #as_of < :as_of")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#as_of", AS_OF)
        .expression_attribute_values(":as_of", s(ts(&results.as_of)))
        .build()
        .map_err(build_err)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn results_item(results: &PublishedResults) -> Result<Item, PortError> {
    let mut item = key(
        project_pk(&results.workspace_id, &results.project_id),
        RESULTS_SK,
    );
    item.insert(AS_OF.to_owned(), s(ts(&results.as_of)));
    item.insert(DATA.to_owned(), encode(results, "published results")?);
    Ok(item)
}

#[async_trait]
impl ResultsStore for DynamoStore {
    async fn put_results_if_newer(&self, results: &PublishedResults) -> Result<bool, PortError> {
        // No existence check of the project: projects are never deleted, and results are
        // only offered by a run of the project (see docs/dynamodb.md, Decisions).
        let item = results_item(results)?;
        let as_of = ts(&results.as_of);
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #as_of < :as_of")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#as_of", AS_OF)
            .expression_attribute_values(":as_of", s(as_of))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err("PutItem", e)),
        }
    }

    async fn get_results(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<PublishedResults>, PortError> {
        self.get_item(key(project_pk(workspace_id, project_id), RESULTS_SK))
            .await?
            .map(|item| decode(item, "published results"))
            .transpose()
    }
}
