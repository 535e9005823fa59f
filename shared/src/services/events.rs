//! Announcing finished runs. Every terminal write (completed, errored, killed, skipped,
//! timed out) is followed by one run event on the `EventPublisher`; a publisher that is
//! briefly unavailable is retried a few times before the failure is logged with the run.

use std::time::Duration;

use crate::domain::model::Run;
use crate::ports::{EventPublisher, RunEvent};

const ATTEMPTS: u32 = 3;

pub(crate) async fn announce(events: &dyn EventPublisher, run: &Run) {
    let event = RunEvent::of(run);
    for attempt in 1..=ATTEMPTS {
        match events.publish(&event).await {
            Ok(()) => return,
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(run_id = %run.run_id, schedule_id = ?run.schedule_id, attempt,
                    error = %e, "publishing the run event failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => {
                tracing::error!(run_id = %run.run_id, schedule_id = ?run.schedule_id,
                    error = %e, "the run event could not be published");
            }
        }
    }
}
