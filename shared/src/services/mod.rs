//! Services: the use cases. Each takes the narrowest ports it needs and the domain's
//! decisions; the same code runs behind the local server and behind the Lambda functions.

mod access;
pub mod dispatch;
mod error;
pub mod projects;
pub mod schedules;
pub mod workspaces;

pub use access::ProjectAccess;
pub use error::ServiceError;
