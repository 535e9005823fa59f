//! What a Lambda function builds before it can handle an event (the SDK configuration and
//! clients, the sealing key read from Secrets Manager, the services over them), built on
//! the first invocation instead of before the runtime's first poll.
//!
//! A cold start is measured from `exec` to the first `GET …/invocation/next`. Built before
//! that poll, the preparation (TLS roots, client construction, one Secrets Manager round
//! trip) delays the poll by a few milliseconds; built in a background task beside the poll,
//! it still competes with it for the one CPU a small function has (BENCHMARKS.md,
//! requirement 1). On the first invocation it costs the same once and nothing before.
//! Settings are still read and checked before the runtime starts, so a misconfigured
//! function fails at start-up with the variable's name.
//!
//! A preparation that fails is not cached: the invocation that needed it reports the
//! error (Lambda retries or redelivers the event) and the next one tries again, so a
//! transient failure at start-up does not poison the execution environment.

use futures_util::future::BoxFuture;
use std::future::Future;
use tokio::sync::OnceCell;

type Prepare<T, E> = dyn Fn() -> BoxFuture<'static, Result<T, E>> + Send + Sync;

/// A value prepared once per execution environment, when it is first needed.
pub struct Deferred<T, E> {
    cell: OnceCell<T>,
    prepare: Box<Prepare<T, E>>,
}

impl<T, E> Deferred<T, E> {
    /// `prepare` runs on the first `get`, and again only after an attempt failed.
    pub fn new<F, Fut>(prepare: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        Deferred {
            cell: OnceCell::new(),
            prepare: Box::new(move || Box::pin(prepare())),
        }
    }

    /// The prepared value, waiting for a preparation in progress or starting one.
    pub async fn get(&self) -> Result<&T, E> {
        self.cell.get_or_try_init(|| (self.prepare)()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn prepares_once_for_every_caller() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let deferred = Deferred::new(move || {
            let counter = Arc::clone(&counter);
            async move {
                tokio::task::yield_now().await;
                Ok::<_, String>(counter.fetch_add(1, Ordering::SeqCst))
            }
        });
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "nothing before it is needed"
        );
        let (a, b) = tokio::join!(deferred.get(), deferred.get());
        assert_eq!((a, b), (Ok(&0), Ok(&0)));
        assert_eq!(deferred.get().await, Ok(&0));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_preparation_is_retried_by_the_next_caller() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&attempts);
        let deferred = Deferred::new(move || {
            let counter = Arc::clone(&counter);
            async move {
                match counter.fetch_add(1, Ordering::SeqCst) {
                    0 => Err("secret unreachable".to_owned()),
                    n => Ok(n),
                }
            }
        });
        assert_eq!(deferred.get().await, Err("secret unreachable".to_owned()));
        assert_eq!(deferred.get().await, Ok(&1));
        assert_eq!(deferred.get().await, Ok(&1));
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }
}
