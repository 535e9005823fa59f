//! The embedded deployment's adapters: one SQLite file for all state, an in-process timer
//! standing in for EventBridge Scheduler, an in-process queue and worker pool standing in
//! for SQS and the execute function, an in-process event bus and notifier standing in for
//! SNS and the notify function, and a key-file `SecretBox`.

pub mod clock;
pub mod events;
pub mod queue;
pub mod secret_box;
pub mod sqlite;
pub mod timer;
pub mod worker;
