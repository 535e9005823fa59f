//! `ResultsStore` over `published_results`: one row per project holding the outputs of the
//! last run allowed to update what the published app shows. The "only if newer" rule is
//! the `WHERE` of an upsert, so two runs finishing together can never let the older win.

use async_trait::async_trait;

use super::codec::{from_json, to_json, ts};
use super::{SqliteStore, db_err, exec, query_opt};
use crate::domain::model::PublishedResults;
use crate::ports::{PortError, ResultsStore};

#[async_trait]
impl ResultsStore for SqliteStore {
    async fn put_results_if_newer(&self, results: &PublishedResults) -> Result<bool, PortError> {
        let (ws, project) = (results.workspace_id.clone(), results.project_id.clone());
        let as_of = ts(&results.as_of);
        let body = to_json(results)?;
        self.write(move |tx| {
            // An upsert whose DO UPDATE is filtered out changes no row, so the row count
            // says whether the results were stored. The composite foreign key turns a
            // project missing in this workspace into NotFound.
            let stored = exec(
                tx,
                "INSERT INTO published_results (workspace_id, project_id, as_of, body)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, project_id) DO UPDATE
                     SET as_of = excluded.as_of, body = excluded.body
                     WHERE published_results.as_of < excluded.as_of",
                (&ws, &project, &as_of, &body),
            )?;
            Ok(stored == 1)
        })
        .await
    }

    async fn get_results(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<PublishedResults>, PortError> {
        let (ws, project) = (workspace_id.to_owned(), project_id.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT body FROM published_results WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &project),
                |row| {
                    from_json(
                        &row.get::<_, String>(0).map_err(db_err)?,
                        "published results",
                    )
                },
            )
        })
        .await
    }
}
