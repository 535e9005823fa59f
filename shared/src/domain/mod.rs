//! The pure core: types and decisions with no I/O. Everything here is a plain function over
//! plain values, so it is tested exhaustively without any adapter.

pub mod cadence;
pub mod cells;
pub mod cron;
pub mod fire_times;
pub mod inputs;
pub mod model;
pub mod notifications;
pub mod policy;
pub mod ssrf;
pub mod template;
pub mod zone;
