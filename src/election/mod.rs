//! Leader election for one resource: the pure state machine, the async
//! runner that carries out its commands, and the status it publishes.
//!
//! - pure: `machine` (events in, one command out), `deferral` (preferred
//!   nodes), `failback` (when a master hands over to a returning preferred
//!   node, `preempt_delay`), `health` (check results to a verdict),
//!   `failures` (fail counts: when repeated acquire failures keep a node
//!   out);
//! - the runner: `runner` (the select loop, a handler per arm), `op` (the
//!   one outstanding operation), `jobs` (lock attempts and action steps
//!   handed off), `hold` (a master's watch), `candidacy` (the candidate
//!   lock task and probes), `checker` (the health check's task), `reload`
//!   (settings applied in place), `fail_counts` (failed acquires counted,
//!   the node taken out and back in), `alerts` (the `[[notify]]` programs,
//!   run for each state change on a task of their own);
//! - off the runtime, shared by all runners: `wait` and `poller` (a
//!   standby's wait, in the kernel or on the polling schedule; `attempt`,
//!   the try both use), `check` (the masters' lock checks);
//! - `status`: what the runners publish.
//!
//! `Status` itself lives in `crate::state`, below both the election and
//! its observers (metrics); it is re-exported here for the callers that
//! name it `election::Status`.

mod alerts;
mod attempt;
mod candidacy;
pub mod check;
mod checker;
pub mod deferral;
mod fail_counts;
pub mod failback;
pub mod failures;
pub mod health;
mod hold;
mod jobs;
pub mod machine;
mod op;
mod poller;
mod reload;
pub mod runner;
pub mod status;
pub mod wait;

pub use crate::state::Status;
pub use machine::{Command, Event, Machine};
pub use status::{Board, ResourceStatus};
