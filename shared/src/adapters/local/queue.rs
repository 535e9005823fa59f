//! The in-process run queue of the embedded deployment, standing in for SQS: dispatch
//! sends, the executor receives. Unbounded because dispatch must never block on a slow
//! executor. The run records in the store are the durable state; the queue only carries
//! which run to start next.

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::ports::{PortError, RunMessage, RunQueue};

#[derive(Clone, Debug)]
pub struct LocalRunQueue {
    tx: mpsc::UnboundedSender<RunMessage>,
}

/// The receiving end, held by whoever executes runs.
#[derive(Debug)]
pub struct LocalRunReceiver {
    rx: mpsc::UnboundedReceiver<RunMessage>,
}

impl LocalRunQueue {
    pub fn new() -> (LocalRunQueue, LocalRunReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LocalRunQueue { tx }, LocalRunReceiver { rx })
    }
}

impl LocalRunReceiver {
    /// The next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<RunMessage> {
        self.rx.recv().await
    }

    /// A message if one is waiting.
    pub fn try_recv(&mut self) -> Option<RunMessage> {
        self.rx.try_recv().ok()
    }
}

#[async_trait]
impl RunQueue for LocalRunQueue {
    async fn enqueue(&self, message: RunMessage) -> Result<(), PortError> {
        self.tx
            .send(message)
            .map_err(|_| PortError::fatal("the local run queue is closed"))
    }
}
