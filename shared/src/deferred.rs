//! What a Lambda function builds before it can handle an event (the SDK configuration and
//! clients, the sealing key read from Secrets Manager, the services over them), started
//! beside the runtime's first poll instead of before it.
//!
//! A cold start is measured from `exec` to the first `GET …/invocation/next`. Built before
//! that poll, the preparation (TLS roots, client construction, one Secrets Manager round
//! trip) is paid in full before the runtime even asks for the event; started in the
//! background, it overlaps the poll and the event's delivery, and the first invocation
//! waits only for what is left of it. Settings are still read and checked before the
//! runtime starts, so a misconfigured function fails at start-up with the variable's name.
//!
//! A preparation that fails is not cached: the invocation that needed it reports the
//! error (Lambda retries or redelivers the event) and the next one tries again, so a
//! transient failure at start-up does not poison the execution environment.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

type Prepare<T, E> = dyn Fn() -> BoxFuture<'static, Result<T, E>> + Send + Sync;

/// A value prepared once per execution environment, in the background from the start.
pub struct Deferred<T, E> {
    cell: OnceCell<T>,
    prepare: Box<Prepare<T, E>>,
}

impl<T, E> Deferred<T, E>
where
    T: Send + Sync + 'static,
    E: std::fmt::Display + Send + 'static,
{
    /// Starts preparing the value on the runtime now (call it inside the runtime, before
    /// `run`); `prepare` runs again only when an attempt failed.
    pub fn start<F, Fut>(prepare: F) -> Arc<Self>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let deferred = Arc::new(Deferred {
            cell: OnceCell::new(),
            prepare: Box::new(move || Box::pin(prepare())),
        });
        let background = Arc::clone(&deferred);
        tokio::spawn(async move {
            if let Err(e) = background.get().await {
                // The invocation waiting for it tries again and reports its own error.
                tracing::warn!(error = %e, "preparing the function failed; retried on the next invocation");
            }
        });
        deferred
    }

    /// The prepared value, waiting for a preparation in progress or starting a new one.
    pub async fn get(&self) -> Result<&T, E> {
        self.cell.get_or_try_init(|| (self.prepare)()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn prepares_once_for_every_caller() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let deferred = Deferred::start(move || {
            let counter = Arc::clone(&counter);
            async move {
                tokio::task::yield_now().await;
                Ok::<_, String>(counter.fetch_add(1, Ordering::SeqCst))
            }
        });
        let (a, b) = tokio::join!(deferred.get(), deferred.get());
        assert_eq!((a, b), (Ok(&0), Ok(&0)));
        assert_eq!(deferred.get().await, Ok(&0));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_preparation_is_retried_by_the_next_caller() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&attempts);
        let deferred = Deferred::start(move || {
            let counter = Arc::clone(&counter);
            async move {
                match counter.fetch_add(1, Ordering::SeqCst) {
                    0 => Err("secret unreachable".to_owned()),
                    n => Ok(n),
                }
            }
        });
        // The background attempt fails (or this call's does, whichever runs first); the
        // next call prepares again and succeeds, and the value then stays.
        let first = deferred.get().await;
        let value = match first {
            Err(e) => {
                assert_eq!(e, "secret unreachable");
                deferred.get().await
            }
            ok => ok,
        };
        assert_eq!(value, Ok(&1));
        assert_eq!(deferred.get().await, Ok(&1));
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }
}
