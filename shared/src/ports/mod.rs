//! Ports: the small traits the services need from the outside world. Adapters in
//! `adapters::local` (embedded SQLite, in-process timer and queue) and `adapters::aws`
//! (DynamoDB, EventBridge Scheduler, SQS, SNS) implement them; nothing above this layer
//! knows which one is in use.

mod clock;
mod error;
mod messaging;
mod store;

pub use clock::{Clock, SystemClock};
pub use error::{LimitKind, PortError};
pub use messaging::{RunMessage, RunQueue, TriggerBackend};
pub use store::{
    Page, PageRequest, ProjectStore, RunCreated, RunStore, ScheduleFilter, ScheduleLimits,
    ScheduleStore, WorkspaceStore,
};
