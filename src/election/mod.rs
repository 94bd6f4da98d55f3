//! Leader election for one resource: the pure state machine, the async
//! runner that carries out its commands, and the status it publishes.

mod attempt;
mod candidacy;
pub mod check;
mod checker;
pub mod deferral;
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
