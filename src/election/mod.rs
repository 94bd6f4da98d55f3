//! Leader election for one resource: the pure state machine and the async
//! runner that carries out its commands.

pub mod machine;
pub mod runner;

pub use machine::{Command, Event, Machine, Status};
