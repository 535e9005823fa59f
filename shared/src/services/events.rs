//! Announcing finished runs, and the outbox that makes sure every announcement happens.
//!
//! Every terminal write (completed, errored, killed, skipped, timed out) sets the run's
//! `event_pending` in that same conditional write and is followed by one run event on the
//! `EventPublisher`; a publisher that is briefly unavailable is retried a few times before
//! the failure is logged with the run. The flag is cleared once the event is safely handed
//! over: by the consumer once it handled the event — the notifier on the in-process bus,
//! the notify function in AWS — or by `OutboxPublisher` for a durable publisher whose
//! acceptance is enough (no deployment wires one today). Whatever is
//! still pending is published again by `EventOutbox::republish_pending`, which the sweeper
//! loop runs. Subscribers therefore see every event at least once; the notify service's
//! per-delivery claims make repeats harmless.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::model::Run;
use crate::ports::{Clock, EventPublisher, PageRequest, PortError, RunEvent, RunEventOutbox};

use super::ServiceError;

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
                    error = %e, "the run event could not be published; the outbox keeps it");
            }
        }
    }
}

/// A durable publisher (SNS) with the outbox: once the inner publisher accepted an event,
/// the run's `event_pending` is cleared.
pub struct OutboxPublisher {
    pub inner: Arc<dyn EventPublisher>,
    pub outbox: Arc<dyn RunEventOutbox>,
}

#[async_trait]
impl EventPublisher for OutboxPublisher {
    async fn publish(&self, event: &RunEvent) -> Result<(), PortError> {
        self.inner.publish(event).await?;
        // The event is out; failing to clear the flag only means it goes out again.
        if let Err(e) = self
            .outbox
            .mark_event_published(&event.workspace_id, &event.run_id)
            .await
        {
            tracing::warn!(run_id = %event.run_id, error = %e,
                "run event published but still marked pending; it will be published again");
        }
        Ok(())
    }
}

/// The sweeper's part of the outbox: publishes the events of runs that ended a while ago
/// and are still marked pending.
pub struct EventOutbox {
    pub outbox: Arc<dyn RunEventOutbox>,
    pub publisher: Arc<dyn EventPublisher>,
    pub clock: Arc<dyn Clock>,
    /// How long after its run ended an event counts as lost rather than on its way.
    pub republish_after: chrono::Duration,
}

impl EventOutbox {
    /// Publishes every pending event of a run that ended more than `republish_after` ago;
    /// returns how many it published. Stops at the first failure (the publisher is down;
    /// the next sweep tries again).
    pub async fn republish_pending(&self) -> Result<u32, ServiceError> {
        let ended_before = self.clock.now() - self.republish_after;
        let mut published = 0;
        let mut page = PageRequest::first(200);
        loop {
            let batch = self.outbox.list_pending_events(&page).await?;
            for run in batch.items {
                let due =
                    run.status.is_terminal() && run.end_time.is_none_or(|t| t <= ended_before);
                if !due {
                    continue;
                }
                if let Err(e) = self.publisher.publish(&RunEvent::of(&run)).await {
                    tracing::warn!(run_id = %run.run_id, error = %e, "pending run event not published");
                    return Ok(published);
                }
                tracing::info!(run_id = %run.run_id, schedule_id = ?run.schedule_id,
                    "pending run event published again");
                published += 1;
            }
            match batch.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Ok(published),
            }
        }
    }
}
