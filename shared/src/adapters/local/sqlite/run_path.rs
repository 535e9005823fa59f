//! `RunPathStore` for the embedded store: every step is a local call, so batching buys
//! nothing and the single-record methods are composed (`ComposedRunPath`). Conditions
//! still hold: the start and the end are the guarded `update_run`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::domain::model::{CachedResult, PublishedResults, Run, RunGuard};
use crate::ports::{
    ComposedRunPath, ExecutionInputs, FireContext, FireRequest, PortError, RunPathStore, RunStart,
};

impl SqliteStore {
    fn composed(&self) -> ComposedRunPath {
        ComposedRunPath::over(Arc::new(self.clone()))
    }
}

#[async_trait]
impl RunPathStore for SqliteStore {
    async fn load_fire(
        &self,
        request: &FireRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<FireContext>, PortError> {
        self.composed().load_fire(request, now).await
    }

    async fn load_execution(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
        connections: &[String],
    ) -> Result<ExecutionInputs, PortError> {
        self.composed()
            .load_execution(workspace_id, project_id, version, connections)
            .await
    }

    async fn start_pending_run(
        &self,
        workspace_id: &str,
        run_id: &str,
        start: RunStart,
    ) -> Result<Option<Run>, PortError> {
        self.composed()
            .start_pending_run(workspace_id, run_id, start)
            .await
    }

    async fn end_run(
        &self,
        run: &Run,
        expected: RunGuard,
        results: Option<&PublishedResults>,
        cache: &[CachedResult],
    ) -> Result<bool, PortError> {
        self.composed().end_run(run, expected, results, cache).await
    }
}
