//! Integration tests of scheduled-runs that need more than one crate's view. The store
//! contract suite lives here as a library so every backend's test file runs the very same
//! behaviours (see `contract`); `duplicates` does the same for concurrent duplicate
//! deliveries on the at-least-once edges; `harness` drives the embedded deployment end to
//! end; `peers` are the protocol peers notifications are delivered to; `fault_proxy`
//! injects AWS faults between the SDK clients and the emulators.

pub mod contract;
pub mod duplicates;
pub mod fault_proxy;
pub mod harness;
pub mod lambda_runtime_stub;
pub mod peers;
