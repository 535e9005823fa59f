//! Implementations of the ports. `local` is the embedded deployment (SQLite, in-process
//! timer and queue); the AWS adapters live beside it. Only the binaries choose between them.

pub mod aws;
pub mod local;
pub mod sql;
