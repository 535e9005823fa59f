//! The embedded deployment's executor pool, standing in for the SQS-triggered execute
//! function: it takes run messages off the in-process queue and hands each to the executor
//! service, a bounded number at a time. A failed delivery is not retried here: the run stays
//! in the store and the sweeper queues it again, as SQS redelivery would.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::queue::LocalRunReceiver;
use crate::services::executor::ExecutorService;

/// Executes queued runs until the queue closes.
pub async fn run_workers(
    mut receiver: LocalRunReceiver,
    executor: Arc<ExecutorService>,
    concurrency: usize,
) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    while let Some(message) = receiver.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let executor = executor.clone();
        tokio::spawn(async move {
            if let Err(e) = executor.execute(&message).await {
                tracing::warn!(run_id = %message.run_id, schedule_id = ?message.schedule_id,
                    error = %e, "run execution failed; the sweeper will retry it");
            }
            drop(permit);
        });
    }
}
