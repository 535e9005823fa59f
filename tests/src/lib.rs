//! Integration tests of scheduled-runs that need more than one crate's view: the store
//! contract suite lives here as a library so every backend's test file runs the very same
//! behaviours (see `contract`), and the harness that drives the embedded deployment
//! through its real router (see `harness`).

pub mod contract;
pub mod harness;
