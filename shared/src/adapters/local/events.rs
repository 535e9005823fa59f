//! The embedded deployment's run-event bus, standing in for the SNS topic: every finished
//! run is broadcast to whoever subscribed in-process (the notifier, tests). With no
//! subscriber an event simply has no listener, as on a topic without subscriptions.
//! `run_notifier` is the local stand-in for the notify function.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::ports::{EventPublisher, PortError, RunEvent, RunEventOutbox};
use crate::services::notify::NotifyService;

/// Events a slow subscriber may fall behind by before it misses some.
const CAPACITY: usize = 4_096;

#[derive(Clone, Debug)]
pub struct LocalEventBus {
    tx: broadcast::Sender<RunEvent>,
}

impl Default for LocalEventBus {
    fn default() -> Self {
        LocalEventBus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl LocalEventBus {
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl EventPublisher for LocalEventBus {
    async fn publish(&self, event: &RunEvent) -> Result<(), PortError> {
        // An error only means nobody is subscribed.
        let _ = self.tx.send(event.clone());
        Ok(())
    }
}

/// Handles run events from the bus until it closes, at most `concurrency` at a time, each
/// on a task of its own (a slow delivery never holds up the next event). A run's outbox flag
/// is cleared only once its event was handled: the bus is not durable, so an event that was
/// missed (the notifier fell behind) or whose handling failed stays pending and the
/// sweeper publishes it again.
pub async fn run_notifier(
    mut events: tokio::sync::broadcast::Receiver<RunEvent>,
    notify: std::sync::Arc<NotifyService>,
    outbox: std::sync::Arc<dyn RunEventOutbox>,
    concurrency: usize,
) {
    use tokio::sync::broadcast::error::RecvError;
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the notifier fell behind; the sweeper publishes the missed run events again"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (notify, outbox) = (notify.clone(), outbox.clone());
        tokio::spawn(async move {
            match notify.handle(&event).await {
                Ok(_) => {
                    if let Err(e) = outbox
                        .mark_event_published(&event.workspace_id, &event.run_id)
                        .await
                    {
                        tracing::warn!(run_id = %event.run_id, error = %e,
                            "run event handled but still marked pending; it may be handled again");
                    }
                }
                Err(e) => {
                    tracing::warn!(run_id = %event.run_id, error = %e,
                        "run event not handled; the sweeper will publish it again");
                }
            }
            drop(permit);
        });
    }
}
