//! The common crate of scheduled-runs: the pure domain, the ports it needs from the outside
//! world, the services (use cases) built on those ports, the adapters that implement them
//! (embedded/local and AWS), and the HTTP router both deployments serve.

pub mod adapters;
pub mod aws_deployment;
pub mod deferred;
pub mod demo;
pub mod domain;
pub mod embedded;
pub mod http;
pub mod ports;
pub mod services;
