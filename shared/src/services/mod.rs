//! Services: the use cases. Each takes the narrowest ports it needs and the domain's
//! decisions; the same code runs behind the local server and behind the Lambda functions.

mod access;
pub mod connections;
pub mod dispatch;
mod error;
mod events;
pub mod executor;
pub mod maintenance;
pub mod projects;
pub mod reconcile;
pub mod runs;
pub mod schedules;
pub mod workspaces;

pub use access::ProjectAccess;
pub use error::ServiceError;
