//! The daemon: one instance per runtime dir, one runner per resource
//! (`supervisor`: signals, reload, sd_notify, the control socket's
//! requests, the way out; `watchdog`: when to feed systemd's), what comes
//! before it (`startup`, with its [`StartError`]), what a previous run
//! left (`orphans`), and `cleanup`.
//!
//! This file is the folder's face only: the children import each other,
//! never it.

mod cleanup;
mod doubt;
mod orphans;
mod publish;
mod startup;
mod supervisor;
mod watchdog;

pub use cleanup::cleanup;
pub use startup::{StartError, catch_signals_early, run, signals};
