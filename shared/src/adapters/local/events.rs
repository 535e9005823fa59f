//! The embedded deployment's run-event bus, standing in for the SNS topic: every finished
//! run is broadcast to whoever subscribed in-process (the notify service, tests). With no
//! subscriber an event simply has no listener, as on a topic without subscriptions.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::ports::{EventPublisher, PortError, RunEvent};

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
