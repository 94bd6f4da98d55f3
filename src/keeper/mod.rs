//! The lock keeper of the `file` backend: a small process that holds a copy
//! of every lock fd the daemon won, so that a daemon killed with SIGKILL does
//! not let another node take over while our side effects (a VIP, a service)
//! still stand. dlmfs gives this by itself (the node keeps a dead holder's
//! lock cached until `cleanup` unlinks it); an OFD lock is dropped by the
//! kernel with its last fd, so here a second holder of the fd stands in.
//!
//! How: OFD locks belong to the open file description. The daemon sends the
//! keeper a duplicate of the lock fd (SCM_RIGHTS over a private
//! `SOCK_SEQPACKET` socketpair) and waits for its ack before the lock counts
//! as won. The lock then lives as long as either process keeps its fd, and
//! `F_OFD_SETLK F_UNLCK` by the daemon drops it for both. On a normal release
//! the daemon unlocks, then tells the keeper to close its copy (`drop`).
//!
//! When the socket reaches EOF (the daemon exited or died), the keeper runs
//! the release actions of every resource it still holds, retrying with
//! backoff until they succeed, clears the instance's applied record, and
//! only then closes that fd: another node can take over once our side
//! effects are gone. Holding nothing, it exits at once (the clean shutdown
//! path).
//!
//! - `protocol`: the messages and the SCM_RIGHTS plumbing;
//! - `client`: the daemon's side (start, hand over, watch, stop), which is
//!   the `file` backend's [`crate::lock::file::FdGuard`];
//! - `server`: the keeper process itself.

mod client;
mod protocol;
mod server;

pub use client::{Keeper, KeeperError, KeeperHandle, SUBCOMMAND};
pub use protocol::WireError;
pub use server::main;
