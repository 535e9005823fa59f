//! The embedded deployment's adapters: one SQLite file for all state, an in-process timer
//! standing in for EventBridge Scheduler and an in-process queue standing in for SQS.

pub mod clock;
pub mod queue;
pub mod sqlite;
pub mod timer;
