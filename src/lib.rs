//! dlm-electd: leader election and failover on a cluster lock manager.
//! See docs/ARCHITECTURE.md for how the modules fit together.

pub mod action;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod drain;
pub mod election;
pub mod exit;
pub mod fdlimit;
pub mod fdstore;
pub mod instance;
pub mod keeper;
pub mod links;
pub mod lock;
pub mod logging;
pub mod membership;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod preflight;
pub mod quorum;
pub mod state;
pub mod systemd;
#[cfg(test)]
pub(crate) mod testing;
pub mod workload;
