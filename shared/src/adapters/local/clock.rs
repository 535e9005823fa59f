//! A clock that only moves when told to, for tests and simulated-time soaks of the local
//! scheduler, retention and auto-archive.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

use crate::ports::Clock;

/// Simulated time: `now()` is whatever was last set; sleepers wake when it passes their
/// deadline.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: watch::Sender::new(start),
        }
    }

    /// Moves time to `t` (never backwards).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_if_modified(|now| {
            if t > *now {
                *now = t;
                true
            } else {
                false
            }
        });
    }

    pub fn advance(&self, by: Duration) {
        let t = *self.now.borrow() + by;
        self.set(t);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let mut rx = self.now.subscribe();
        loop {
            if *rx.borrow_and_update() >= deadline {
                return;
            }
            if rx.changed().await.is_err() {
                // The clock is gone; nothing will ever wake us, so stop waiting.
                return;
            }
        }
    }
}
