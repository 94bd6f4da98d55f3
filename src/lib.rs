//! dlm-electd: leader election and failover on a cluster lock manager.
//! See DESIGN.md in the project's shared docs for the architecture.

pub mod action;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod election;
pub mod lock;
pub mod logging;
pub mod notify;
