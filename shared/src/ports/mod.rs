//! Ports: the small traits the services need from the outside world. Adapters in
//! `adapters::local` (embedded SQLite, in-process timer, queue and event bus),
//! `adapters::aws` (DynamoDB, EventBridge Scheduler, SQS, SNS, SES) and `adapters::notify`
//! (SMTP, Slack, webhooks) implement them; nothing above this layer knows which one is in
//! use.

mod clock;
mod error;
mod messaging;
mod notify;
mod run_path;
mod secrets;
pub mod sql;
mod store;

pub use clock::{Clock, SystemClock};
pub use error::{LimitKind, PortError};
pub use messaging::{
    EventPublisher, RunEvent, RunMessage, RunQueue, TriggerBackend, TriggerListing, TriggerState,
};
pub use notify::{Deliverer, DeliveryError, DeliveryTarget, Secret};
pub use run_path::{
    ComposedRunPath, DispatchPath, ExecutionInputs, ExecutionPath, FireContext, FireRequest,
    RunPathStore, RunStart, put_cache_entries, started_run,
};
pub use secrets::SecretBox;
pub use sql::{
    BoundSql, ConnectorFactory, Dialect, QueryError, QueryOutput, SqlConnector, SqlValue,
};
pub use store::{
    ConnectionStore, DeliveryClaim, DeliveryStore, IntegrationStore, Page, PageRequest,
    ProjectStore, RateLimitStore, ResultsStore, RunCreated, RunEventOutbox, RunFilter, RunStore,
    ScheduleFilter, ScheduleLimits, ScheduleStore, ScheduleTrigger, SqlCacheStore, WorkspaceStore,
};
