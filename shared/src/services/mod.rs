//! Services: the use cases. Each takes the narrowest ports it needs and the domain's
//! decisions; the same code runs behind the local server and behind the Lambda functions.

mod access;
pub mod connections;
pub mod dispatch;
mod error;
pub mod events;
pub mod executor;
pub mod integrations;
pub mod maintenance;
pub mod notify;
pub mod projects;
pub mod reconcile;
pub mod runs;
pub mod schedules;
pub mod workspaces;

pub use access::ProjectAccess;
pub use error::ServiceError;
