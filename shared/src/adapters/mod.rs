//! Implementations of the ports. `local` is the embedded deployment (SQLite, in-process
//! timer, queue and event bus); the AWS adapters live beside it; `notify` holds the
//! notification channels both deployments use. Only the binaries choose between them.

pub mod aws;
pub mod local;
pub mod notify;
pub mod sql;
pub mod tls;
